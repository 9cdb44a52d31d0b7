// CUDA rflo_chunk: checks shared with the CPU backend; one launch per chunk
// (rflo_kernel.cu).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "../online_rnn_glue.h"
#include "device.h"
#include "rflo_kernel.cuh"

namespace localgrad::rflo {
namespace {

std::tuple<at::Tensor, at::Tensor> rflo_chunk_cuda(const at::Tensor& trace, const at::Tensor& xs,
                                                   const at::Tensor& h_prevs, const at::Tensor& dphis,
                                                   const at::Tensor& signals,
                                                   const std::optional<at::Tensor>& hh_mask, double alpha) {
  auto p = online_rnn::prepare_rflo(trace, xs, h_prevs, dphis, signals, hh_mask, alpha);
  TORCH_CHECK_VALUE(trace.size(1) <= 65535, "rflo_chunk: at most 65535 hidden units on CUDA, got ", trace.size(1));
  const device::Guard guard(trace.device());
  at::Tensor trace_out = at::empty(trace.sizes(), trace.options());
  at::Tensor grad = at::empty({trace.size(1), trace.size(2)}, trace.options());
  p.params.trace_out = trace_out.data_ptr();
  p.params.grad = grad.data_ptr();
  const cudaError_t status = launch_chunk(p.params, scalar_kind(trace.scalar_type()),
                                          device::current_stream());
  device::check_launch(status, "rflo_chunk");
  return {trace_out, grad};
}

}  // namespace
}  // namespace localgrad::rflo

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("rflo_chunk", &localgrad::rflo::rflo_chunk_cuda);
}
