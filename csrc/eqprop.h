// Equilibrium Propagation (Scellier & Bengio 2017; Ernoult et al. 2019): the
// contract between the torch glue and the relaxation kernels. Torch-free.
//
// Layers s_0 = x (clamped), s_1..s_L; W_i: (n_{i+1}, n_i) maps s_i to s_{i+1}.
// One step sets every updated layer k to
//   s_k <- sigma(W_{k-1} s_{k-1} + b_{k-1} + W_k^T s_{k+1}  [- beta dl/ds_L at k = L])
// synchronously (all from the previous state) or asynchronously (even layers,
// then odd layers from the fresh even ones). A row whose units all moved by
// less than tol in a step is frozen; `ran` counts each row's steps.
#pragma once

#include <cstdint>

#include "activation.h"  // LOCALGRAD_HD

namespace localgrad::eqprop {

// The integer values are part of the op schema (localgrad/reference/eqprop.py
// mirrors them); append, never renumber.
enum class Sigma : int64_t { HardSigmoid = 0, Sigmoid = 1, Tanh = 2 };
enum class Nudge : int64_t { Free = 0, Mse = 1, CrossEntropy = 2, Clamp = 3 };
constexpr int64_t kNumSigmas = 3;
constexpr int64_t kNumNudges = 4;

// Layers per call; kernel arguments are passed by value (4 KiB limit).
constexpr int kMaxLayers = 16;

template <Sigma kSigma, typename acc_t>
LOCALGRAD_HD acc_t apply_sigma(acc_t u);

}  // namespace localgrad::eqprop

#if defined(__CUDACC__)
#define LOCALGRAD_EQPROP_EXP(x) exp(x)
#define LOCALGRAD_EQPROP_TANH(x) tanh(x)
#else
#include <cmath>
#define LOCALGRAD_EQPROP_EXP(x) std::exp(x)
#define LOCALGRAD_EQPROP_TANH(x) std::tanh(x)
#endif

namespace localgrad::eqprop {

template <Sigma kSigma, typename acc_t>
LOCALGRAD_HD acc_t apply_sigma(acc_t u) {
  if constexpr (kSigma == Sigma::HardSigmoid) {
    // NaN passes through (as torch.clamp does), so a diverged state shows.
    return u < acc_t(0) ? acc_t(0) : (u > acc_t(1) ? acc_t(1) : u);
  } else if constexpr (kSigma == Sigma::Sigmoid) {
    return acc_t(1) / (acc_t(1) + LOCALGRAD_EQPROP_EXP(-u));
  } else {
    return LOCALGRAD_EQPROP_TANH(u);
  }
}

// Persistent relaxation (CUDA): each block owns a tile of batch rows and keeps
// their states, and the weights of layers 1..L-1, in shared memory for all
// steps. Tensors are row-major; weights and biases dense.
struct RelaxParams {
  const void* drive = nullptr;            // (batch, n_1): W_0 x + b_0, dense
  const void* weight[kMaxLayers] = {};    // W_i (n_{i+1}, n_i), dense; [0] unused
  const void* bias[kMaxLayers] = {};      // b_i (n_{i+1}); [0] unused
  void* state[kMaxLayers] = {};           // s_{i+1} (batch, n_{i+1})
  int64_t state_row_stride[kMaxLayers] = {};
  int64_t width[kMaxLayers + 1] = {};     // n_0 .. n_L
  const void* target = nullptr;           // (batch, n_L), nudged or clamped phases
  int64_t target_row_stride = 0;
  int64_t* ran = nullptr;                 // (batch,) steps run per row
  int64_t batch = 0;
  int n_layers = 0;
  int64_t steps = 0;
  double beta = 0.0;
  double tol = 0.0;
  Sigma sigma = Sigma::HardSigmoid;
  Nudge nudge = Nudge::Free;
  bool async_update = false;
};

// Per-step relaxation (CUDA), for networks whose weights do not fit on chip:
// the glue computes every updated layer's pre-activation with cuBLAS; one
// kernel then applies sigma (and the nudge), writes the states of live rows
// and records each row's largest change.
struct StepParams {
  const void* pre[kMaxLayers] = {};       // (batch, n_{j+1}) dense, acc type
  void* state[kMaxLayers] = {};
  int64_t state_row_stride[kMaxLayers] = {};
  int64_t width[kMaxLayers] = {};         // n_{j+1} of state j
  bool update[kMaxLayers] = {};           // layers of this half-step
  const void* target = nullptr;
  int64_t target_row_stride = 0;
  const uint8_t* frozen = nullptr;        // (batch,)
  void* row_delta = nullptr;              // (batch,) acc type, max |change|
  int64_t batch = 0;
  int n_layers = 0;
  double beta = 0.0;
  Sigma sigma = Sigma::HardSigmoid;
  Nudge nudge = Nudge::Free;
};

}  // namespace localgrad::eqprop

#define LOCALGRAD_DISPATCH_SIGMA(KIND, ...)                                  \
  [&] {                                                                      \
    switch (KIND) {                                                          \
      case ::localgrad::eqprop::Sigma::Sigmoid: {                            \
        constexpr auto kSigma = ::localgrad::eqprop::Sigma::Sigmoid;         \
        return __VA_ARGS__();                                                \
      }                                                                      \
      case ::localgrad::eqprop::Sigma::Tanh: {                               \
        constexpr auto kSigma = ::localgrad::eqprop::Sigma::Tanh;            \
        return __VA_ARGS__();                                                \
      }                                                                      \
      default: {                                                             \
        constexpr auto kSigma = ::localgrad::eqprop::Sigma::HardSigmoid;     \
        return __VA_ARGS__();                                                \
      }                                                                      \
    }                                                                        \
  }()

#define LOCALGRAD_DISPATCH_NUDGE(KIND, ...)                                  \
  [&] {                                                                      \
    switch (KIND) {                                                          \
      case ::localgrad::eqprop::Nudge::Mse: {                                \
        constexpr auto kNudge = ::localgrad::eqprop::Nudge::Mse;             \
        return __VA_ARGS__();                                                \
      }                                                                      \
      case ::localgrad::eqprop::Nudge::CrossEntropy: {                       \
        constexpr auto kNudge = ::localgrad::eqprop::Nudge::CrossEntropy;    \
        return __VA_ARGS__();                                                \
      }                                                                      \
      case ::localgrad::eqprop::Nudge::Clamp: {                              \
        constexpr auto kNudge = ::localgrad::eqprop::Nudge::Clamp;           \
        return __VA_ARGS__();                                                \
      }                                                                      \
      default: {                                                             \
        constexpr auto kNudge = ::localgrad::eqprop::Nudge::Free;            \
        return __VA_ARGS__();                                                \
      }                                                                      \
    }                                                                        \
  }()
