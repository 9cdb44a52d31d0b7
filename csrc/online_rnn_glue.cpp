#include "online_rnn_glue.h"

#include <c10/util/Exception.h>

#include "checks.h"

namespace localgrad::online_rnn {
namespace {

void check_shape(const at::Tensor& t, at::IntArrayRef want, const char* op, const char* name,
                 const char* meaning) {
  TORCH_CHECK_VALUE(t.sizes() == want, op, ": ", name, " must have shape ", want, " ", meaning, ", got ",
                    t.sizes());
}

void check_like(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name,
                const char* ref_name = "h_prev") {
  check_same_dtype(t, ref, op, name, ref_name);
  check_same_device(t, ref, op, name, ref_name);
}

void check_index(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1, op, ": ", name, " must be 1-D, got shape ", t.sizes());
  check_same_device(t, ref, op, name, "h_prev");
}

// The per-step inputs every op reads: h_prev (batch, H), x (batch, I), dphi
// like h_prev, the optional (H, H) mask. Returns the mask pointer (or null).
const void* check_step(Prepared& p, const char* op, const at::Tensor& h_prev, const at::Tensor& x,
                       const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask) {
  check_dim(h_prev, 2, op, "h_prev", "(batch, hidden)");
  check_real(h_prev, op, "h_prev");
  check_dim(x, 2, op, "x", "(batch, input)");
  check_like(x, h_prev, op, "x");
  TORCH_CHECK_VALUE(x.size(0) == h_prev.size(0), op, ": x must have ", h_prev.size(0),
                    " rows (the batch of h_prev), got ", x.size(0));
  check_like(dphi, h_prev, op, "dphi");
  check_shape(dphi, h_prev.sizes(), op, "dphi", "(the shape of h_prev)");
  // Inputs may require grad: the ops read their data and record nothing.
  p.keep.push_back(h_prev.detach().contiguous());
  p.keep.push_back(x.detach().contiguous());
  p.keep.push_back(dphi.detach().contiguous());
  if (!hh_mask.has_value() || !hh_mask->defined()) return nullptr;
  const int64_t hidden = h_prev.size(1);
  check_like(*hh_mask, h_prev, op, "hh_mask");
  check_shape(*hh_mask, {hidden, hidden}, op, "hh_mask", "(hidden, hidden)");
  p.keep.push_back(hh_mask->detach().contiguous());
  return p.keep.back().const_data_ptr();
}

void check_weight(const at::Tensor& w, const at::Tensor& h_prev, const char* op) {
  check_like(w, h_prev, op, "weight_hh");
  check_shape(w, {h_prev.size(1), h_prev.size(1)}, op, "weight_hh", "(hidden, hidden)");
}

}  // namespace

PreparedRtrl prepare_rtrl(const at::Tensor& influence, const at::Tensor& weight_hh, const at::Tensor& h_prev,
                          const at::Tensor& x, const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                          double alpha) {
  constexpr const char* kOp = "rtrl_step";
  check_finite(alpha, kOp, "alpha");
  PreparedRtrl p;
  const void* mask = check_step(p, kOp, h_prev, x, dphi, hh_mask);
  check_weight(weight_hh, h_prev, kOp);
  const int64_t batch = h_prev.size(0), hidden = h_prev.size(1), input = x.size(1);
  check_like(influence, h_prev, kOp, "influence");
  check_shape(influence, {batch, hidden, hidden * (input + hidden + 1)}, kOp, "influence",
              "(batch, hidden, hidden * (input + hidden + 1))");
  p.influence = influence.detach().contiguous();
  p.weight_hh = weight_hh.detach();
  auto& q = p.params;
  q.influence = p.influence.const_data_ptr();
  q.h_prev = p.keep[0].const_data_ptr();
  q.x = p.keep[1].const_data_ptr();
  q.dphi = p.keep[2].const_data_ptr();
  q.mask = mask;
  q.batch = batch;
  q.hidden = hidden;
  q.input = input;
  q.alpha = alpha;
  return p;
}

PreparedSnap prepare_snap(const at::Tensor& influence, const at::Tensor& weight_hh, const at::Tensor& h_prev,
                          const at::Tensor& x, const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                          double alpha, const at::Tensor& entry_unit, const at::Tensor& entry_row,
                          const at::Tensor& nbr_ptr, const at::Tensor& nbr_entry, const at::Tensor& nbr_weight,
                          bool check_indices) {
  constexpr const char* kOp = "snap_step";
  check_finite(alpha, kOp, "alpha");
  PreparedSnap p;
  const void* mask = check_step(p, kOp, h_prev, x, dphi, hh_mask);
  check_weight(weight_hh, h_prev, kOp);
  const int64_t batch = h_prev.size(0), hidden = h_prev.size(1), input = x.size(1);
  check_index(entry_unit, h_prev, kOp, "entry_unit");
  check_index(entry_row, h_prev, kOp, "entry_row");
  check_index(nbr_ptr, h_prev, kOp, "nbr_ptr");
  check_index(nbr_entry, h_prev, kOp, "nbr_entry");
  check_index(nbr_weight, h_prev, kOp, "nbr_weight");
  const int64_t entries = entry_unit.size(0);
  TORCH_CHECK_VALUE(entry_row.size(0) == entries, kOp, ": entry_row must have ", entries,
                    " entries (those of entry_unit), got ", entry_row.size(0));
  TORCH_CHECK_VALUE(nbr_ptr.size(0) == entries + 1, kOp, ": nbr_ptr must have ", entries + 1,
                    " entries (one more than entry_unit), got ", nbr_ptr.size(0));
  TORCH_CHECK_VALUE(nbr_weight.size(0) == nbr_entry.size(0), kOp, ": nbr_weight must have ", nbr_entry.size(0),
                    " entries (those of nbr_entry), got ", nbr_weight.size(0));
  check_like(influence, h_prev, kOp, "influence");
  check_shape(influence, {batch, entries, input + hidden + 1}, kOp, "influence",
              "(batch, entries, input + hidden + 1)");
  // Indices are read without bounds checks in the kernels: validate them here
  // (on CUDA: 9 device-to-host syncs), unless the caller built them and
  // checked them once (check_indices=False, as the SnAp learner does).
  auto in_range = [&](const at::Tensor& t, int64_t hi, const char* name) {
    if (!check_indices) return;
    if (t.numel() == 0) return;
    TORCH_CHECK_VALUE(t.min().item<int64_t>() >= 0 && t.max().item<int64_t>() < hi, kOp, ": ", name,
                      " must lie in [0, ", hi, ")");
  };
  in_range(entry_unit, hidden, "entry_unit");
  in_range(entry_row, hidden, "entry_row");
  in_range(nbr_entry, entries, "nbr_entry");
  in_range(nbr_weight, hidden * hidden, "nbr_weight");
  if (entries > 0 && check_indices) {
    // Read through its strides, as the kernels read the contiguous copy
    // below (raw memory of a strided view holds other values).
    const at::Tensor ptr = nbr_ptr.cpu().contiguous();
    const int64_t* v = ptr.const_data_ptr<int64_t>();
    TORCH_CHECK_VALUE(v[0] == 0 && v[entries] == nbr_entry.size(0), kOp,
                      ": nbr_ptr must start at 0 and end at len(nbr_entry)");
    for (int64_t e = 0; e < entries; ++e)
      TORCH_CHECK_VALUE(v[e] <= v[e + 1], kOp, ": nbr_ptr must be non-decreasing");
  }
  for (const at::Tensor* t : {&influence, &weight_hh, &entry_unit, &entry_row, &nbr_ptr, &nbr_entry, &nbr_weight})
    p.keep.push_back(t->detach().contiguous());
  auto& q = p.params;
  q.h_prev = p.keep[0].const_data_ptr();
  q.x = p.keep[1].const_data_ptr();
  q.dphi = p.keep[2].const_data_ptr();
  const size_t base = mask ? 4 : 3;
  q.mask = mask;
  q.influence = p.keep[base].const_data_ptr();
  q.weight = p.keep[base + 1].const_data_ptr();
  q.entry_unit = p.keep[base + 2].const_data_ptr<int64_t>();
  q.entry_row = p.keep[base + 3].const_data_ptr<int64_t>();
  q.nbr_ptr = p.keep[base + 4].const_data_ptr<int64_t>();
  q.nbr_entry = p.keep[base + 5].const_data_ptr<int64_t>();
  q.nbr_weight = p.keep[base + 6].const_data_ptr<int64_t>();
  q.batch = batch;
  q.entries = entries;
  q.hidden = hidden;
  q.input = input;
  q.alpha = alpha;
  return p;
}

PreparedRflo prepare_rflo(const at::Tensor& trace, const at::Tensor& xs, const at::Tensor& h_prevs,
                          const at::Tensor& dphis, const at::Tensor& signals,
                          const std::optional<at::Tensor>& hh_mask, double alpha) {
  constexpr const char* kOp = "rflo_chunk";
  check_finite(alpha, kOp, "alpha");
  PreparedRflo p;
  check_dim(h_prevs, 3, kOp, "h_prevs", "(steps, batch, hidden)");
  check_real(h_prevs, kOp, "h_prevs");
  check_dim(xs, 3, kOp, "xs", "(steps, batch, input)");
  const int64_t steps = h_prevs.size(0), batch = h_prevs.size(1), hidden = h_prevs.size(2);
  const int64_t input = xs.size(2);
  check_like(xs, h_prevs, kOp, "xs", "h_prevs");
  check_shape(xs, {steps, batch, input}, kOp, "xs", "(steps, batch, input)");
  check_like(dphis, h_prevs, kOp, "dphis", "h_prevs");
  check_shape(dphis, h_prevs.sizes(), kOp, "dphis", "(the shape of h_prevs)");
  check_like(signals, h_prevs, kOp, "signals", "h_prevs");
  check_shape(signals, h_prevs.sizes(), kOp, "signals", "(the shape of h_prevs)");
  check_like(trace, h_prevs, kOp, "trace", "h_prevs");
  check_shape(trace, {batch, hidden, input + hidden + 1}, kOp, "trace", "(batch, hidden, input + hidden + 1)");
  for (const at::Tensor* t : {&trace, &xs, &h_prevs, &dphis, &signals}) p.keep.push_back(t->detach().contiguous());
  const void* mask = nullptr;
  if (hh_mask.has_value() && hh_mask->defined()) {
    check_like(*hh_mask, h_prevs, kOp, "hh_mask", "h_prevs");
    check_shape(*hh_mask, {hidden, hidden}, kOp, "hh_mask", "(hidden, hidden)");
    p.keep.push_back(hh_mask->detach().contiguous());
    mask = p.keep.back().const_data_ptr();
  }
  auto& q = p.params;
  q.trace = p.keep[0].const_data_ptr();
  q.xs = p.keep[1].const_data_ptr();
  q.h_prevs = p.keep[2].const_data_ptr();
  q.dphis = p.keep[3].const_data_ptr();
  q.signals = p.keep[4].const_data_ptr();
  q.mask = mask;
  q.steps = steps;
  q.batch = batch;
  q.hidden = hidden;
  q.input = input;
  q.alpha = alpha;
  return p;
}

PreparedUoro prepare_uoro(const at::Tensor& s_tilde, const at::Tensor& theta_tilde, const at::Tensor& weight_hh,
                          const at::Tensor& nu, const at::Tensor& h_prev, const at::Tensor& x,
                          const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask, double alpha,
                          double eps) {
  constexpr const char* kOp = "uoro_step";
  check_finite(alpha, kOp, "alpha");
  PreparedUoro p;
  const void* mask = check_step(p, kOp, h_prev, x, dphi, hh_mask);
  check_weight(weight_hh, h_prev, kOp);
  const int64_t batch = h_prev.size(0), hidden = h_prev.size(1), input = x.size(1);
  check_like(s_tilde, h_prev, kOp, "s_tilde");
  check_shape(s_tilde, h_prev.sizes(), kOp, "s_tilde", "(the shape of h_prev)");
  check_like(nu, h_prev, kOp, "nu");
  check_shape(nu, h_prev.sizes(), kOp, "nu", "(the shape of h_prev)");
  check_like(theta_tilde, h_prev, kOp, "theta_tilde");
  check_shape(theta_tilde, {batch, hidden, input + hidden + 1}, kOp, "theta_tilde",
              "(batch, hidden, input + hidden + 1)");
  TORCH_CHECK_VALUE(eps > 0 && std::isfinite(eps), kOp, ": eps must be positive and finite, got ", eps);
  p.s_tilde = s_tilde.detach().contiguous();
  p.weight_hh = weight_hh.detach();
  p.keep.push_back(theta_tilde.detach().contiguous());
  p.keep.push_back(nu.detach().contiguous());
  const size_t base = p.keep.size() - 2;
  auto& q = p.params;
  q.h_prev = p.keep[0].const_data_ptr();
  q.x = p.keep[1].const_data_ptr();
  q.dphi = p.keep[2].const_data_ptr();
  q.mask = mask;
  q.s_tilde = p.s_tilde.const_data_ptr();
  q.theta_tilde = p.keep[base].const_data_ptr();
  q.nu = p.keep[base + 1].const_data_ptr();
  q.batch = batch;
  q.hidden = hidden;
  q.input = input;
  q.alpha = alpha;
  q.eps = eps;
  return p;
}

PreparedKfrtrl prepare_kfrtrl(const at::Tensor& u, const at::Tensor& A, const at::Tensor& weight_hh,
                              const at::Tensor& signs, const at::Tensor& h_prev, const at::Tensor& x,
                              const at::Tensor& dphi, double alpha, double eps, bool check_signs) {
  constexpr const char* kOp = "kfrtrl_step";
  check_finite(alpha, kOp, "alpha");
  TORCH_CHECK_VALUE(eps > 0 && std::isfinite(eps), kOp, ": eps must be positive and finite, got ", eps);
  PreparedKfrtrl p;
  // No mask: KF-RTRL's v is the unmasked [x | h_prev | 1] (reference kfrtrl_step).
  check_step(p, kOp, h_prev, x, dphi, std::nullopt);
  check_weight(weight_hh, h_prev, kOp);
  const int64_t batch = h_prev.size(0), hidden = h_prev.size(1), input = x.size(1);
  check_dim(u, 3, kOp, "u", "(batch, rank, input + hidden + 1)");
  check_like(u, h_prev, kOp, "u");
  const int64_t rank = u.size(1);
  TORCH_CHECK_VALUE(rank >= 1, kOp, ": u must hold at least one factor (rank >= 1), got shape ", u.sizes());
  check_shape(u, {batch, rank, input + hidden + 1}, kOp, "u", "(batch, rank, input + hidden + 1)");
  check_like(A, h_prev, kOp, "A");
  check_shape(A, {batch, rank, hidden, hidden}, kOp, "A", "(batch, rank, hidden, hidden)");
  check_like(signs, h_prev, kOp, "signs");
  check_shape(signs, {batch, rank + 1}, kOp, "signs", "(batch, rank + 1)");
  if (check_signs && signs.numel() > 0)
    TORCH_CHECK_VALUE(!signs.detach().abs().ne(1).any().item<bool>(), kOp,
                      ": signs must be +1 or -1 (NaN and other values refused)");
  p.a = A.detach().contiguous();
  p.weight_hh = weight_hh.detach();
  p.keep.push_back(u.detach().contiguous());
  p.keep.push_back(signs.detach().contiguous());
  auto& q = p.params;
  q.h_prev = p.keep[0].const_data_ptr();
  q.x = p.keep[1].const_data_ptr();
  q.dphi = p.keep[2].const_data_ptr();
  q.u = p.keep[3].const_data_ptr();
  q.signs = p.keep[4].const_data_ptr();
  q.a = p.a.const_data_ptr();
  q.batch = batch;
  q.rank = rank;
  q.hidden = hidden;
  q.input = input;
  q.alpha = alpha;
  q.eps = eps;
  return p;
}

}  // namespace localgrad::online_rnn
