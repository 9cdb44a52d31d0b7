// plastic_episode and plastic_episode_backward, shared by the CPU and CUDA
// backends: the argument checks and the loop over the steps (the plain
// products through ATen on the tensors' device), with the backend's kernels
// for the work on the traces. Both backends therefore accept, refuse and
// compute exactly the same things.
#pragma once

#include <optional>
#include <tuple>

#include <ATen/core/Tensor.h>

#include "meta.h"

namespace localgrad::meta {

// The backend's kernels; `is_double` says whether the dtype is float64.
struct Kernels {
  void (*forward_step)(const ForwardStepParams&, bool is_double);
  void (*backward_rows)(const BackwardRowParams&, bool is_double);
  void (*backward_inputs)(const BackwardInputParams&, bool is_double);
  void (*backward_weights)(const BackwardWeightParams&, bool is_double);
};

// (ys, h_T, traces); traces is (T, B, N_out, N_in), H before each step, when
// store_traces, else empty (0,). modulation: (T, B) or none.
std::tuple<at::Tensor, at::Tensor, at::Tensor> plastic_episode(
    const at::Tensor& u, const std::optional<at::Tensor>& x, const at::Tensor& weight,
    const at::Tensor& alpha, const at::Tensor& h0, double eta, int64_t activation, bool store_traces,
    const std::optional<at::Tensor>& modulation, const Kernels& kernels);

// (grad_u, grad_x, grad_weight, grad_alpha, grad_eta, grad_h0,
// grad_modulation); grad_x is empty (0,) for the recurrent layer,
// grad_modulation without modulation, grad_eta 0-d.
using BackwardResult =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
BackwardResult plastic_episode_backward(const at::Tensor& grad_ys, const std::optional<at::Tensor>& grad_h,
                                        const std::optional<at::Tensor>& x, const at::Tensor& weight,
                                        const at::Tensor& alpha, const at::Tensor& ys, const at::Tensor& h_T,
                                        const std::optional<at::Tensor>& traces, double eta, int64_t activation,
                                        const std::optional<at::Tensor>& modulation, const Kernels& kernels);

}  // namespace localgrad::meta
