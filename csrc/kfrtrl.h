// One KF-RTRL step (Mujika, Meier & Steger 2018) per batch element, for the
// leaky RNN, with the influence kept as u ⊗ A (u over v = [x | h_prev | 1],
// C = I + H + 1 columns; A an H × H factor). The glue computes W_hh A by
// BLAS (at::matmul); the kernels do the rest in fused passes:
//   J A = (1-α) A + α D (W_hh A),   D = diag φ'(a)
// rank 1 (reduce):
//   ρ0 = √((‖J A‖+ε)/(‖u‖+ε)),  ρ1 = √((‖α D‖+ε)/(‖v‖+ε))
//   u ← s0 ρ0 u + s1 ρ1 v,   A ← s0 J A / ρ0 + s1 α D / ρ1
// rank r ≥ 2 (terms): the r + 1 unreduced terms, u_out = [u_0..u_{r-1} | v]
// and A_out = [J A_0..J A_{r-1} | α D]; the optimal rank-r reduction (QR and
// SVD, Benzing et al. 2019) stays in ATen (localgrad.reference.online_rnn.ok_reduce).
#pragma once

#include <cstdint>

namespace localgrad::kfrtrl {

struct StepParams {
  void* u_out = nullptr;       // rank 1: (batch, 1, C); else (batch, r+1, C)
  void* a_out = nullptr;       // rank 1: (batch, 1, H, H); else (batch, r+1, H, H)
  const void* u = nullptr;     // (batch, r, C)
  const void* a = nullptr;     // (batch, r, H, H)
  const void* wa = nullptr;    // (batch, r, H, H), W_hh A
  const void* signs = nullptr; // (batch, r+1), ±1 (read at rank 1 only)
  const void* x = nullptr;     // (batch, I)
  const void* h_prev = nullptr;  // (batch, H)
  const void* dphi = nullptr;  // (batch, H)
  void* partials = nullptr;    // CUDA only, rank 1: (batch, tiles, 4) squared-norm shares
  int64_t tiles = 1;           // CUDA only, rank 1: blocks per sample
  int64_t batch = 0;
  int64_t rank = 1;
  int64_t hidden = 0;
  int64_t input = 0;
  double alpha = 1.0;
  double eps = 1e-7;
};

}  // namespace localgrad::kfrtrl
