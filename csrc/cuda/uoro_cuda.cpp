// CUDA uoro_step: W_hh s̃ through cuBLAS (at::mm), the rest in two kernels
// over (sample, tile) blocks (uoro_kernel.cu). Checks are shared with the CPU backend.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "../online_rnn_glue.h"
#include "device.h"
#include "uoro_kernel.cuh"

namespace localgrad::uoro {
namespace {

std::tuple<at::Tensor, at::Tensor> uoro_step_cuda(const at::Tensor& s_tilde, const at::Tensor& theta_tilde,
                                                  const at::Tensor& weight_hh, const at::Tensor& nu,
                                                  const at::Tensor& h_prev, const at::Tensor& x,
                                                  const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                                                  double alpha, double eps) {
  auto p = online_rnn::prepare_uoro(s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, alpha, eps);
  const device::Guard guard(h_prev.device());
  const at::Tensor ws = at::mm(p.s_tilde, p.weight_hh.t()).contiguous();
  at::Tensor s_out = at::empty(s_tilde.sizes(), s_tilde.options());
  at::Tensor theta_out = at::empty(theta_tilde.sizes(), theta_tilde.options());
  p.params.ws = ws.const_data_ptr();
  p.params.s_out = s_out.data_ptr();
  p.params.theta_out = theta_out.data_ptr();
  p.params.tiles = tiles_for(p.params.batch, p.params.hidden, p.params.input);
  at::Tensor partials = at::empty({p.params.batch * p.params.tiles * 4}, h_prev.options());
  p.params.partials = partials.data_ptr();
  const cudaError_t status = launch_step(p.params, scalar_kind(h_prev.scalar_type()),
                                         device::current_stream());
  device::check_launch(status, "uoro_step");
  return {s_out, theta_out};
}

}  // namespace
}  // namespace localgrad::uoro

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("uoro_step", &localgrad::uoro::uoro_step_cuda);
}
