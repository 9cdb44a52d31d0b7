// CUDA dfa_project: checks and layer bookkeeping are shared with the CPU
// backend (dfa_glue.cpp); this file only hands them to the kernel.
#include <algorithm>

#include <torch/library.h>

#include "../checks.h"
#include "../dfa_glue.h"
#include "device.h"
#include "dfa_kernel.cuh"

namespace localgrad::dfa {
namespace {

void dfa_project_cuda(const at::Tensor& error, const at::Tensor& feedback,
                      const c10::List<std::optional<at::Tensor>>& activations,
                      at::IntArrayRef kinds, at::ArrayRef<double> slopes,
                      at::TensorList out) {
  PreparedProject p = prepare_project(error, feedback, activations, kinds, slopes, out);
  if (error.size(0) == 0 || p.layers.empty()) return;

  const device::Guard guard(error.device());
  const cudaStream_t stream = device::current_stream();
  ProjectParams params;
  params.error = p.error.const_data_ptr();
  params.feedback = p.feedback.const_data_ptr();
  params.batch = error.size(0);
  params.n_out = error.size(1);
  params.error_row_stride = p.error.stride(0);
  params.feedback_row_stride = p.feedback.stride(0);

  const auto n_layers = static_cast<int64_t>(p.layers.size());
  for (int64_t first = 0; first < n_layers; first += kMaxLayersPerLaunch) {
    const int64_t count = std::min<int64_t>(kMaxLayersPerLaunch, n_layers - first);
    params.n_layers = static_cast<int>(count);
    std::copy_n(p.layers.begin() + first, count, params.layers);
    const cudaError_t status = launch_project(params, scalar_kind(error.scalar_type()), stream);
    device::check_launch(status, "dfa_project");
  }
}

}  // namespace
}  // namespace localgrad::dfa

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("dfa_project", &localgrad::dfa::dfa_project_cuda);
}
