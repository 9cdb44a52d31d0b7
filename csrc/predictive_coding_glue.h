// Argument checks and the inference driver of the predictive-coding ops,
// shared by the CPU and CUDA backends: both accept and refuse exactly the same
// calls and run exactly the same schedule of products (ATen) and elementwise
// passes (the backend's kernels).
#pragma once

#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "predictive_coding.h"

namespace localgrad::predictive_coding {

// The backend's two elementwise passes (predictive_coding.h).
struct Elementwise {
  std::function<void(const ErrorParams&)> errors;
  std::function<void(const StateParams&)> states;
};

// predictive_coding_infer for any device: checks, then the variant's schedule.
void infer_impl(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                at::TensorList states, at::TensorList errors, const at::Tensor& target,
                at::IntArrayRef kinds, at::ArrayRef<double> slopes, int64_t variant, int64_t loss,
                double output_precision,
                int64_t steps, double gamma, double lr, const Elementwise& backend);

// predictive_coding_update for any device: only ATen products and reductions.
void update_impl(const at::Tensor& x, at::TensorList states, at::TensorList errors,
                 at::IntArrayRef kinds, at::ArrayRef<double> slopes, double scale,
                 at::TensorList weight_grads, at::TensorList bias_grads);

}  // namespace localgrad::predictive_coding
