// CUDA target propagation feedback training: checks and the products (cuBLAS
// via ATen) come from the shared driver (target_prop_glue.cpp); this file
// hands it the GPU's passes (target_prop_kernel.cu) on the current stream.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "../target_prop_glue.h"
#include "target_prop_kernel.cuh"

#include "device.h"

namespace localgrad::target_prop {
namespace {

void check_launch(cudaError_t status) {
  device::check_launch(status, "target_prop_feedback_grads");
}

void feedback_grads_cuda(at::TensorList inputs, at::TensorList outputs, at::TensorList gates,
                         at::TensorList weights, at::TensorList biases, at::TensorList fb_weights,
                         at::TensorList fb_biases, at::TensorList noise_in, at::TensorList noise_out,
                         at::IntArrayRef kinds, at::ArrayRef<double> slopes, int64_t variant,
                         at::TensorList grad_weights, at::TensorList grad_biases, const at::Tensor& loss) {
  TORCH_CHECK_VALUE(!inputs.empty(), "target_prop_feedback_grads: inputs must hold at least one map");
  const device::Guard guard(inputs[0].device());
  const cudaStream_t stream = device::current_stream();
  Kernels backend;
  backend.noisy = [=](const NoisyParams& p, at::ScalarType t) {
    check_launch(launch_noisy(p, scalar_kind(t), stream));
  };
  backend.gate = [=](const GateParams& p, at::ScalarType t) {
    check_launch(launch_gate(p, scalar_kind(t), stream));
  };
  backend.reduce = [=](const ReduceParams& p, at::ScalarType t) {
    check_launch(launch_reduce(p, scalar_kind(t), stream));
  };
  feedback_grads_impl(inputs, outputs, gates, weights, biases, fb_weights, fb_biases, noise_in, noise_out,
                      kinds, slopes, variant, grad_weights, grad_biases, loss, backend);
}

}  // namespace
}  // namespace localgrad::target_prop

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("target_prop_feedback_grads", &localgrad::target_prop::feedback_grads_cuda);
}
