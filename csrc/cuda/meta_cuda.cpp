// CUDA plastic_episode and plastic_episode_backward: the checks and the
// products (cuBLAS through ATen) are shared with the CPU backend
// (meta_glue.cpp); this file hands the work on the traces to the kernels
// (meta_kernel.cu) on the current stream.
#include <torch/library.h>

#include "../meta_glue.h"
#include "device.h"
#include "meta_kernel.cuh"

namespace localgrad::meta {
namespace {

void check_launch(cudaError_t status, const char* op, const char* kernel) {
  TORCH_CHECK(status == cudaSuccess, op, ": CUDA kernel launch failed (", kernel, "): ", cudaGetErrorString(status));
}

cudaStream_t stream() { return device::current_stream(); }

void forward_step_cuda(const ForwardStepParams& q, bool is_double) {
  check_launch(launch_forward_step(q, is_double, stream()), "plastic_episode", "forward step");
}
void backward_rows_cuda(const BackwardRowParams& q, bool is_double) {
  check_launch(launch_backward_rows(q, is_double, stream()), "plastic_episode_backward", "rows");
}
void backward_inputs_cuda(const BackwardInputParams& q, bool is_double) {
  check_launch(launch_backward_inputs(q, is_double, stream()), "plastic_episode_backward", "inputs");
}
void backward_weights_cuda(const BackwardWeightParams& q, bool is_double) {
  check_launch(launch_backward_weights(q, is_double, stream()), "plastic_episode_backward", "weights");
}

constexpr Kernels kCudaKernels{&forward_step_cuda, &backward_rows_cuda, &backward_inputs_cuda,
                               &backward_weights_cuda};

std::tuple<at::Tensor, at::Tensor, at::Tensor> plastic_episode_cuda(const at::Tensor& u,
                                                                    const std::optional<at::Tensor>& x,
                                                                    const at::Tensor& weight,
                                                                    const at::Tensor& alpha, const at::Tensor& h0,
                                                                    double eta, int64_t activation,
                                                                    bool store_traces,
                                                                    const std::optional<at::Tensor>& modulation) {
  const device::Guard guard(u.device());
  return plastic_episode(u, x, weight, alpha, h0, eta, activation, store_traces, modulation, kCudaKernels);
}

BackwardResult plastic_episode_backward_cuda(const at::Tensor& grad_ys, const std::optional<at::Tensor>& grad_h,
                                             const std::optional<at::Tensor>& x, const at::Tensor& weight,
                                             const at::Tensor& alpha, const at::Tensor& ys, const at::Tensor& h_T,
                                             const std::optional<at::Tensor>& traces, double eta,
                                             int64_t activation, const std::optional<at::Tensor>& modulation) {
  const device::Guard guard(grad_ys.device());
  return plastic_episode_backward(grad_ys, grad_h, x, weight, alpha, ys, h_T, traces, eta, activation, modulation,
                                  kCudaKernels);
}

}  // namespace
}  // namespace localgrad::meta

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("plastic_episode", &localgrad::meta::plastic_episode_cuda);
  m.impl("plastic_episode_backward", &localgrad::meta::plastic_episode_backward_cuda);
}
