// CUDA rtrl_step: W_hh M_{t-1} through cuBLAS (at::matmul), the rest fused in
// one kernel (rtrl_kernel.cu). Checks are shared with the CPU backend.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "../online_rnn_glue.h"
#include "device.h"
#include "rtrl_kernel.cuh"

namespace localgrad::rtrl {
namespace {

at::Tensor rtrl_step_cuda(const at::Tensor& influence, const at::Tensor& weight_hh, const at::Tensor& h_prev,
                          const at::Tensor& x, const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                          double alpha) {
  auto p = online_rnn::prepare_rtrl(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha);
  const device::Guard guard(h_prev.device());
  at::Tensor out = at::matmul(p.weight_hh, p.influence).contiguous();
  p.params.out = out.data_ptr();
  const cudaError_t status = launch_finish_step(p.params, scalar_kind(h_prev.scalar_type()),
                                                device::current_stream());
  device::check_launch(status, "rtrl_step");
  return out;
}

}  // namespace
}  // namespace localgrad::rtrl

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("rtrl_step", &localgrad::rtrl::rtrl_step_cuda);
}
