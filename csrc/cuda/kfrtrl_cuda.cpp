// CUDA kfrtrl_step: W_hh A through cuBLAS (at::matmul), the rest in the
// kernels of kfrtrl_kernel.cu. Checks are shared with the CPU backend.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "../online_rnn_glue.h"
#include "device.h"
#include "kfrtrl_kernel.cuh"

namespace localgrad::kfrtrl {
namespace {

std::tuple<at::Tensor, at::Tensor> kfrtrl_step_cuda(const at::Tensor& u, const at::Tensor& A,
                                                    const at::Tensor& weight_hh, const at::Tensor& signs,
                                                    const at::Tensor& h_prev, const at::Tensor& x,
                                                    const at::Tensor& dphi, double alpha, double eps,
                                                    bool check_signs) {
  auto p = online_rnn::prepare_kfrtrl(u, A, weight_hh, signs, h_prev, x, dphi, alpha, eps, check_signs);
  const device::Guard guard(h_prev.device());
  auto& q = p.params;
  const at::Tensor wa = at::matmul(p.weight_hh, p.a).contiguous();
  const int64_t terms_out = q.rank == 1 ? 1 : q.rank + 1;
  at::Tensor u_out = at::empty({q.batch, terms_out, u.size(2)}, u.options());
  at::Tensor a_out = at::empty({q.batch, terms_out, q.hidden, q.hidden}, A.options());
  q.wa = wa.const_data_ptr();
  q.u_out = u_out.data_ptr();
  q.a_out = a_out.data_ptr();
  at::Tensor partials;
  if (q.rank == 1) {
    q.tiles = tiles_for(q.batch, q.hidden, q.input);
    partials = at::empty({q.batch * q.tiles * 4}, h_prev.options());
    q.partials = partials.data_ptr();
  }
  const cudaError_t status = launch_step(q, scalar_kind(h_prev.scalar_type()), device::current_stream());
  device::check_launch(status, "kfrtrl_step");
  return {u_out, a_out};
}

}  // namespace
}  // namespace localgrad::kfrtrl

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("kfrtrl_step", &localgrad::kfrtrl::kfrtrl_step_cuda);
}
