// Predictive coding (Whittington & Bogacz 2017; Z-IL, Song et al. 2020; FPA,
// Millidge et al. 2020; iPC, Salvatori et al. 2024): the contract between the
// shared inference driver (predictive_coding_glue.cpp) and the elementwise
// kernels of each backend. Torch-free.
//
// Layer i = 0..L-1 maps value node a_i to a_{i+1}: mu_{i+1} = W_i f_i(a_i) + b_i.
// eps[i] is the error of a_{i+1}: a_{i+1} - mu_{i+1} for hidden nodes,
// y - mu_L (mse) or y - softmax(mu_L) (ce) at the output. One inference step
// moves each hidden node a_k (k = 1..L-1) by
//   a_k += gamma * (-eps[k-1] + f_k'(a_k) * back[k-1]),  back[k-1] = eps[k] W_k,
// where the glue computes mu and back with ATen (BLAS / cuBLAS) and the
// kernels below do everything elementwise around those products.
#pragma once

#include <cstdint>

#include "activation.h"  // LOCALGRAD_HD, Activation

#if defined(__CUDACC__)
#define LOCALGRAD_PC_EXP(x) exp(x)
#define LOCALGRAD_PC_TANH(x) tanh(x)
#else
#include <cmath>
#define LOCALGRAD_PC_EXP(x) std::exp(x)
#define LOCALGRAD_PC_TANH(x) std::tanh(x)
#endif

namespace localgrad::predictive_coding {

// The integer values are part of the op schema (mirrored by
// localgrad/reference/predictive_coding.py); append, never renumber.
enum class Variant : int64_t { IL = 0, FPA = 1, ZIL = 2, IPC = 3 };
enum class Loss : int64_t { Mse = 0, CrossEntropy = 1 };
constexpr int64_t kNumVariants = 4;
constexpr int64_t kNumLosses = 2;

// Layers per call; the params structs are kernel arguments passed by value
// (4 KiB limit).
constexpr int kMaxLayers = 16;

// f(a) and f'(a) at the value node a (not from the output, unlike
// localgrad::derivative_from_output: PC differentiates at the node itself).
template <Activation kAct, typename T>
LOCALGRAD_HD T activate(T a, T slope) {
  if constexpr (kAct == Activation::ReLU) {
    // A NaN node stays NaN, as in the reference (clamp_min keeps NaN): a
    // poisoned state must reach the errors, not become a silent 0.
    return a > T(0) || a != a ? a : T(0);
  } else if constexpr (kAct == Activation::LeakyReLU) {
    return a > T(0) ? a : a * slope;
  } else if constexpr (kAct == Activation::Tanh) {
    return LOCALGRAD_PC_TANH(a);
  } else if constexpr (kAct == Activation::Sigmoid) {
    return T(1) / (T(1) + LOCALGRAD_PC_EXP(-a));
  } else {
    return a;
  }
}

template <Activation kAct, typename T>
LOCALGRAD_HD T activate_derivative(T a, T slope) {
  if constexpr (kAct == Activation::ReLU) {
    return a > T(0) ? T(1) : T(0);
  } else if constexpr (kAct == Activation::LeakyReLU) {
    return a > T(0) ? T(1) : slope;
  } else if constexpr (kAct == Activation::Tanh) {
    const T t = LOCALGRAD_PC_TANH(a);
    return T(1) - t * t;
  } else if constexpr (kAct == Activation::Sigmoid) {
    const T s = T(1) / (T(1) + LOCALGRAD_PC_EXP(-a));
    return s * (T(1) - s);
  } else {
    return T(1);
  }
}

// Errors of the layers marked `active`: eps[i] holds mu_{i+1} on entry (the
// glue's product) and the error on exit, or, where mu[i] is set, mu comes
// from there (the first layer's prediction, constant while x is clamped and
// the weights fixed). Rows dense, strided by row.
struct ErrorParams {
  void* eps[kMaxLayers] = {};
  const void* mu[kMaxLayers] = {};        // (batch, n_{i+1}) dense, or null
  int64_t eps_row_stride[kMaxLayers] = {};
  const void* state[kMaxLayers] = {};     // a_{i+1} for i < L-1
  int64_t state_row_stride[kMaxLayers] = {};
  int64_t width[kMaxLayers] = {};         // n_{i+1}
  bool active[kMaxLayers] = {};
  const void* target = nullptr;           // (batch, n_L), for the output layer
  int64_t target_row_stride = 0;
  int64_t batch = 0;
  int n_layers = 0;
  Loss loss = Loss::Mse;
  double output_precision = 1.0;          // eps_L = -precision * dloss/dmu_L
};

// One step of the hidden nodes marked `active` (index k-1 for node a_k).
// f'(a) is taken at the node before it moves, or read from `dfx` (FPA keeps
// the feed-forward derivatives). With refresh_error, eps[k-1] += the node's
// move (its prediction is fixed: FPA, or Z-IL's wave); with fx non-null,
// fx[k-1] = f_k(new a_k), the input of the next step's product.
struct StateParams {
  void* state[kMaxLayers] = {};
  int64_t state_row_stride[kMaxLayers] = {};
  void* eps[kMaxLayers] = {};             // eps[k-1], the node's own error
  int64_t eps_row_stride[kMaxLayers] = {};
  const void* back[kMaxLayers] = {};      // (batch, n_k) dense: eps[k] W_k
  const void* dfx[kMaxLayers] = {};       // (batch, n_k) dense, or null
  void* fx[kMaxLayers] = {};              // (batch, n_k) dense, or null
  int64_t width[kMaxLayers] = {};         // n_k
  Activation kind[kMaxLayers] = {};
  double slope[kMaxLayers] = {};
  bool active[kMaxLayers] = {};
  int64_t batch = 0;
  int n_hidden = 0;
  double gamma = 0.0;
  bool refresh_error = false;
};

}  // namespace localgrad::predictive_coding

// The value-node activations as compile-time constants (the schema's codes
// 1..5 of localgrad::Activation; the glue refuses 0).
#define LOCALGRAD_DISPATCH_PC_ACTIVATION(KIND, ...)               \
  [&] {                                                           \
    switch (KIND) {                                               \
      LOCALGRAD_ACTIVATION_CASE(ReLU, __VA_ARGS__)                \
      LOCALGRAD_ACTIVATION_CASE(LeakyReLU, __VA_ARGS__)           \
      LOCALGRAD_ACTIVATION_CASE(Tanh, __VA_ARGS__)                \
      LOCALGRAD_ACTIVATION_CASE(Sigmoid, __VA_ARGS__)             \
      default: LOCALGRAD_ACTIVATION_BODY(Identity, __VA_ARGS__)   \
    }                                                             \
  }()
