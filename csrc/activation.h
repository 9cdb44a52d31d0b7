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

// Turns a runtime Activation into the compile-time constant `kAct` inside the
// body, so inner loops carry no branch on the kind.
#define LOCALGRAD_DISPATCH_ACTIVATION(KIND, ...)                          \
  [&] {                                                                   \
    switch (KIND) {                                                       \
      case ::localgrad::Activation::Derivative: {                         \
        constexpr auto kAct = ::localgrad::Activation::Derivative;        \
        return __VA_ARGS__();                                             \
      }                                                                   \
      case ::localgrad::Activation::Identity: {                           \
        constexpr auto kAct = ::localgrad::Activation::Identity;          \
        return __VA_ARGS__();                                             \
      }                                                                   \
      case ::localgrad::Activation::ReLU: {                               \
        constexpr auto kAct = ::localgrad::Activation::ReLU;              \
        return __VA_ARGS__();                                             \
      }                                                                   \
      case ::localgrad::Activation::LeakyReLU: {                          \
        constexpr auto kAct = ::localgrad::Activation::LeakyReLU;         \
        return __VA_ARGS__();                                             \
      }                                                                   \
      case ::localgrad::Activation::Tanh: {                               \
        constexpr auto kAct = ::localgrad::Activation::Tanh;              \
        return __VA_ARGS__();                                             \
      }                                                                   \
      default: {                                                          \
        constexpr auto kAct = ::localgrad::Activation::Sigmoid;           \
        return __VA_ARGS__();                                             \
      }                                                                   \
    }                                                                     \
  }()
