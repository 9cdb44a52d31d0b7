// Target propagation's feedback training (Lee et al. 2015 DTP; Ernoult et
// al. 2022 L-DRL; localgrad/reference/target_prop.py map_feedback_gradients):
// the contract between the shared driver (target_prop_glue.cpp), which runs
// every product with ATen, and the elementwise/reduction kernels of each
// backend. Torch-free.
//
// Map g_l (l >= 2), linear in h: g(h) = V (q * h) + c, q = s_l'(a_l) (gated) or
// 1. Rows r = s B + i of the S B noise rows belong to batch row i = r mod B.
//   noisy:   x = h_{l-1}[i] + eps[r]                       (S B, n)
//   gate:    a = x W^T + b (the glue's product), in place:
//            dtp  a <- q[i] * s_l(a)                       (u)
//            ldrl a <- q[i] * (s_l(a) - h_l[i]),  p = q[i] * eta[r]
//   reduce:  per column j over a chunk of rows: with `sub`, a <- a - sub first;
//            sums[chunk, j] = sum_r a[r, j], squares[chunk, j] = sum_r a[r, j]^2
//            (the glue adds the chunks: a fixed order, so the result does not
//            depend on the thread count).
#pragma once

#include <cstdint>

#include "activation.h"
#include "predictive_coding.h"  // activate<kAct>

namespace localgrad::target_prop {

// The op's variant codes (localgrad/ops/target_prop.py); append, never renumber.
enum class Variant : int64_t { Dtp = 0, Ldrl = 1 };
constexpr int64_t kNumVariants = 2;

// Rows per reduction chunk (the partial sums' first dimension).
constexpr int64_t kReduceRows = 64;

struct NoisyParams {
  const void* h = nullptr;    // (batch, n) dense
  const void* eps = nullptr;  // (rows, n) dense
  void* x = nullptr;          // (rows, n) dense
  int64_t rows = 0, batch = 0, width = 0;
};

struct GateParams {
  void* a = nullptr;             // (rows, m) dense, in place
  const void* gate = nullptr;    // (batch, m) dense, or null (gate 1)
  const void* h_out = nullptr;   // (batch, m) dense (ldrl)
  const void* eta = nullptr;     // (rows, m) dense (ldrl)
  void* p = nullptr;             // (rows, m) dense (ldrl)
  int64_t rows = 0, batch = 0, width = 0;
  Activation kind = Activation::Identity;
  double slope = 0.0;
  Variant variant = Variant::Dtp;
};

struct ReduceParams {
  void* a = nullptr;           // (rows, n) dense; written when sub is set
  const void* sub = nullptr;   // (rows, n) dense, or null
  void* sums = nullptr;        // (chunks, n) dense
  void* squares = nullptr;     // (chunks, n) dense
  int64_t rows = 0, width = 0, chunks = 0;
};

// s_l(a) as the reference computes it: predictive coding's activations, whose
// ReLU keeps a NaN pre-activation NaN (torch.relu(nan) is nan), so a poisoned
// input shows in the gradient where the reference shows it.
template <Activation kAct, typename T>
LOCALGRAD_HD T forward_activation(T a, T slope) {
  return predictive_coding::activate<kAct>(a, slope);
}

inline int64_t reduce_chunks(int64_t rows) { return (rows + kReduceRows - 1) / kReduceRows; }

}  // namespace localgrad::target_prop
