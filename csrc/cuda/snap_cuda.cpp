// CUDA snap_step: checks shared with the CPU backend; the kernel walks the
// pattern's CSR lists (snap_kernel.cu).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "../online_rnn_glue.h"
#include "device.h"
#include "snap_kernel.cuh"

namespace localgrad::snap {
namespace {

at::Tensor snap_step_cuda(const at::Tensor& influence, const at::Tensor& weight_hh, const at::Tensor& h_prev,
                          const at::Tensor& x, const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                          double alpha, const at::Tensor& entry_unit, const at::Tensor& entry_row,
                          const at::Tensor& nbr_ptr, const at::Tensor& nbr_entry, const at::Tensor& nbr_weight,
                          bool check_indices) {
  auto p = online_rnn::prepare_snap(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha, entry_unit, entry_row,
                                    nbr_ptr, nbr_entry, nbr_weight, check_indices);
  const device::Guard guard(h_prev.device());
  at::Tensor out = at::empty(influence.sizes(), influence.options());
  p.params.out = out.data_ptr();
  const cudaError_t status = launch_step(p.params, scalar_kind(h_prev.scalar_type()),
                                         device::current_stream());
  device::check_launch(status, "snap_step");
  return out;
}

}  // namespace
}  // namespace localgrad::snap

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("snap_step", &localgrad::snap::snap_step_cuda);
}
