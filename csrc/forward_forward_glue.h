// Argument checks and the driver of forward_forward_step, shared by the CPU
// and CUDA backends: both accept and refuse the same calls and run the same
// products (ATen) around the backend's two row kernels (forward_forward.h).
#pragma once

#include <functional>

#include <ATen/core/Tensor.h>

#include "forward_forward.h"

namespace localgrad::forward_forward {

struct Kernels {
  std::function<void(const NormalizeParams&, at::ScalarType)> normalize;
  std::function<void(const LayerParams&, at::ScalarType)> layer;
};

void step_impl(const at::Tensor& x_pos, const at::Tensor& x_neg, at::TensorList weights, at::TensorList biases,
               at::IntArrayRef kinds, at::ArrayRef<double> slopes, at::ArrayRef<double> thresholds,
               int64_t goodness, int64_t loss, int64_t normalize, double alpha, double eps,
               at::TensorList grad_weights, at::TensorList grad_biases, const at::Tensor& goodness_out,
               const at::Tensor& losses, const Kernels& backend);

}  // namespace localgrad::forward_forward
