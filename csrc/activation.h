// Elementwise activations, described by the value they produce.
//
// Local learning rules inject an error after a layer's nonlinearity, so they
// need f'(a) where only h = f(a) is at hand (autograd saved nothing for them).
// Every activation here has a derivative that is a function of its output.
// Torch-free so that CUDA kernels and CPU kernels share one definition.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LOCALGRAD_HD __host__ __device__ __forceinline__
#else
#define LOCALGRAD_HD inline
#endif

namespace localgrad {

// The integer values are part of the op schemas' contract (`int[] kinds`) and
// are mirrored by localgrad/activations.py; append, never renumber.
enum class Activation : int64_t {
  Derivative = 0,  // the tensor given already holds f'(a)
  Identity = 1,    // f'(a) = 1; no tensor needed
  ReLU = 2,
  LeakyReLU = 3,   // uses the layer's slope
  Tanh = 4,
  Sigmoid = 5,
};

constexpr int64_t kNumActivations = 6;

// f'(a) from h = f(a). At a kink (ReLU at 0) this matches PyTorch's own
// backward, which keys off the output as well.
template <Activation kind, typename acc_t>
LOCALGRAD_HD acc_t derivative_from_output(acc_t h, acc_t slope) {
  if constexpr (kind == Activation::Derivative) {
    return h;
  } else if constexpr (kind == Activation::Identity) {
    return acc_t(1);
  } else if constexpr (kind == Activation::ReLU) {
    return h > acc_t(0) ? acc_t(1) : acc_t(0);
  } else if constexpr (kind == Activation::LeakyReLU) {
    return h > acc_t(0) ? acc_t(1) : slope;
  } else if constexpr (kind == Activation::Tanh) {
    return acc_t(1) - h * h;
  } else {
    return h * (acc_t(1) - h);
  }
}

}  // namespace localgrad

// One case of an activation dispatch: `kAct` is the compile-time constant
// inside the body, so inner loops carry no branch on the kind.
#define LOCALGRAD_ACTIVATION_BODY(NAME, ...)                     \
  {                                                              \
    constexpr auto kAct = ::localgrad::Activation::NAME;         \
    return __VA_ARGS__();                                        \
  }
#define LOCALGRAD_ACTIVATION_CASE(NAME, ...) \
  case ::localgrad::Activation::NAME: LOCALGRAD_ACTIVATION_BODY(NAME, __VA_ARGS__)

// Every activation (Sigmoid the default).
#define LOCALGRAD_DISPATCH_ACTIVATION(KIND, ...)                  \
  [&] {                                                           \
    switch (KIND) {                                               \
      LOCALGRAD_ACTIVATION_CASE(Derivative, __VA_ARGS__)          \
      LOCALGRAD_ACTIVATION_CASE(Identity, __VA_ARGS__)            \
      LOCALGRAD_ACTIVATION_CASE(ReLU, __VA_ARGS__)                \
      LOCALGRAD_ACTIVATION_CASE(LeakyReLU, __VA_ARGS__)           \
      LOCALGRAD_ACTIVATION_CASE(Tanh, __VA_ARGS__)                \
      default: LOCALGRAD_ACTIVATION_BODY(Sigmoid, __VA_ARGS__)    \
    }                                                             \
  }()
