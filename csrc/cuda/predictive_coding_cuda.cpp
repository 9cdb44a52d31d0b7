// CUDA predictive coding: checks and the schedule of products (cuBLAS via
// ATen) come from the shared driver (predictive_coding_glue.cpp); this file
// hands it the GPU's elementwise passes (predictive_coding_kernel.cu) on the
// current stream.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "../predictive_coding_glue.h"
#include "predictive_coding_kernel.cuh"

#include "device.h"

namespace localgrad::predictive_coding {
namespace {

void check_launch(cudaError_t status) {
  device::check_launch(status, "predictive_coding_infer");
}

void infer_cuda(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                at::TensorList states, at::TensorList errors, const at::Tensor& target,
                at::IntArrayRef kinds, at::ArrayRef<double> slopes, int64_t variant, int64_t loss,
                double output_precision,
                int64_t steps, double gamma, double lr) {
  const device::Guard guard(x.device());
  const cudaStream_t stream = device::current_stream();
  const ScalarKind dtype = scalar_kind(x.scalar_type());
  Elementwise backend;
  backend.errors = [=](const ErrorParams& p) { check_launch(launch_errors(p, dtype, stream)); };
  backend.states = [=](const StateParams& p) { check_launch(launch_states(p, dtype, stream)); };
  infer_impl(x, weights, biases, states, errors, target, kinds, slopes, variant, loss, output_precision, steps, gamma,
             lr, backend);
}

void update_cuda(const at::Tensor& x, at::TensorList states, at::TensorList errors,
                 at::IntArrayRef kinds, at::ArrayRef<double> slopes, double scale,
                 at::TensorList weight_grads, at::TensorList bias_grads) {
  const device::Guard guard(x.device());
  update_impl(x, states, errors, kinds, slopes, scale, weight_grads, bias_grads);
}

}  // namespace
}  // namespace localgrad::predictive_coding

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("predictive_coding_infer", &localgrad::predictive_coding::infer_cuda);
  m.impl("predictive_coding_update", &localgrad::predictive_coding::update_cuda);
}
