// CUDA Forward-Forward step: checks and the products (cuBLAS via ATen) come
// from the shared driver (forward_forward_glue.cpp); this file hands it the
// GPU's row passes (forward_forward_kernel.cu) on the current stream.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "../forward_forward_glue.h"
#include "forward_forward_kernel.cuh"

#include "device.h"

namespace localgrad::forward_forward {
namespace {

void check_launch(cudaError_t status) {
  TORCH_CHECK(status == cudaSuccess, "forward_forward_step: CUDA kernel launch failed: ",
              cudaGetErrorString(status));
}

void step_cuda(const at::Tensor& x_pos, const at::Tensor& x_neg, at::TensorList weights, at::TensorList biases,
               at::IntArrayRef kinds, at::ArrayRef<double> slopes, at::ArrayRef<double> thresholds,
               int64_t goodness, int64_t loss, int64_t normalize, double alpha, double eps,
               at::TensorList grad_weights, at::TensorList grad_biases, const at::Tensor& goodness_out,
               const at::Tensor& losses) {
  const device::Guard guard(x_pos.device());
  const cudaStream_t stream = device::current_stream();
  Kernels backend;
  backend.normalize = [=](const NormalizeParams& p, at::ScalarType t) {
    check_launch(launch_normalize(p, scalar_kind(t), stream));
  };
  backend.layer = [=](const LayerParams& p, at::ScalarType t) {
    check_launch(launch_layer(p, scalar_kind(t), stream));
  };
  step_impl(x_pos, x_neg, weights, biases, kinds, slopes, thresholds, goodness, loss, normalize, alpha, eps,
            grad_weights, grad_biases, goodness_out, losses, backend);
}

}  // namespace
}  // namespace localgrad::forward_forward

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("forward_forward_step", &localgrad::forward_forward::step_cuda);
}
