// Argument checks and parameter filling for the online-RNN ops (rtrl_step,
// snap_step, rflo_chunk, uoro_step, kfrtrl_step), shared by the CPU and CUDA backends so
// both accept and refuse exactly the same calls. Each Prepared* keeps the
// dense copies alive that its params point into.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "kfrtrl.h"
#include "rflo.h"
#include "rtrl.h"
#include "snap.h"
#include "uoro.h"

namespace localgrad::online_rnn {

struct Prepared {
  std::vector<at::Tensor> keep;  // dense inputs the params point into
};

struct PreparedRtrl : Prepared {
  at::Tensor influence, weight_hh;
  rtrl::StepParams params;  // out left for the backend
};
PreparedRtrl prepare_rtrl(const at::Tensor& influence, const at::Tensor& weight_hh, const at::Tensor& h_prev,
                          const at::Tensor& x, const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                          double alpha);

struct PreparedSnap : Prepared {
  snap::StepParams params;  // out left for the backend
};
PreparedSnap prepare_snap(const at::Tensor& influence, const at::Tensor& weight_hh, const at::Tensor& h_prev,
                          const at::Tensor& x, const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                          double alpha, const at::Tensor& entry_unit, const at::Tensor& entry_row,
                          const at::Tensor& nbr_ptr, const at::Tensor& nbr_entry, const at::Tensor& nbr_weight,
                          bool check_indices);

struct PreparedRflo : Prepared {
  rflo::ChunkParams params;  // outputs left for the backend
};
PreparedRflo prepare_rflo(const at::Tensor& trace, const at::Tensor& xs, const at::Tensor& h_prevs,
                          const at::Tensor& dphis, const at::Tensor& signals,
                          const std::optional<at::Tensor>& hh_mask, double alpha);

struct PreparedUoro : Prepared {
  at::Tensor s_tilde, weight_hh;
  uoro::StepParams params;  // ws and outputs left for the backend
};
PreparedUoro prepare_uoro(const at::Tensor& s_tilde, const at::Tensor& theta_tilde, const at::Tensor& weight_hh,
                          const at::Tensor& nu, const at::Tensor& h_prev, const at::Tensor& x,
                          const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask, double alpha,
                          double eps);

// kfrtrl_step: u (batch, r, C), A (batch, r, H, H), signs (batch, r+1) ±1
// (checked to be ±1, one device sync, unless check_signs is false).
struct PreparedKfrtrl : Prepared {
  at::Tensor a, weight_hh;
  kfrtrl::StepParams params;  // wa and outputs left for the backend
};
PreparedKfrtrl prepare_kfrtrl(const at::Tensor& u, const at::Tensor& A, const at::Tensor& weight_hh,
                              const at::Tensor& signs, const at::Tensor& h_prev, const at::Tensor& x,
                              const at::Tensor& dphi, double alpha, double eps, bool check_signs);

}  // namespace localgrad::online_rnn
