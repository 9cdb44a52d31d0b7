// Argument checks and the driver of target_prop_feedback_grads, shared by the
// CPU and CUDA backends: both accept and refuse the same calls and run the
// same products (ATen) around the backend's three kernels (target_prop.h).
#pragma once

#include <functional>

#include <ATen/core/Tensor.h>

#include "target_prop.h"

namespace localgrad::target_prop {

struct Kernels {
  std::function<void(const NoisyParams&, at::ScalarType)> noisy;
  std::function<void(const GateParams&, at::ScalarType)> gate;
  std::function<void(const ReduceParams&, at::ScalarType)> reduce;
};

void feedback_grads_impl(at::TensorList inputs, at::TensorList outputs, at::TensorList gates,
                         at::TensorList weights, at::TensorList biases, at::TensorList fb_weights,
                         at::TensorList fb_biases, at::TensorList noise_in, at::TensorList noise_out,
                         at::IntArrayRef kinds, at::ArrayRef<double> slopes, int64_t variant,
                         at::TensorList grad_weights, at::TensorList grad_biases,
                         const at::Tensor& loss, const Kernels& backend);

}  // namespace localgrad::target_prop
