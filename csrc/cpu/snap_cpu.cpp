// CPU snap_step: one parallel pass over (batch, entry); each kept entry sums
// its neighbours' rows from the precomputed CSR lists.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../online_rnn.h"
#include "../online_rnn_glue.h"

namespace localgrad::snap {
namespace {

template <typename scalar_t>
void step(const StepParams& q) {
  const int64_t cols = q.input + q.hidden + 1;
  const auto v = online_rnn::row_inputs<scalar_t>(q);
  auto* out = static_cast<scalar_t*>(q.out);
  const auto* m = static_cast<const scalar_t*>(q.influence);
  const auto* w = static_cast<const scalar_t*>(q.weight);
  const auto* dphi = static_cast<const scalar_t*>(q.dphi);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha), keep = scalar_t(1) - alpha;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
  at::parallel_for(0, q.batch * q.entries, grain, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> acc(cols);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / q.entries, e = row % q.entries;
      const int64_t k = q.entry_unit[e], i = q.entry_row[e];
      std::fill(acc.begin(), acc.end(), scalar_t(0));
      for (int64_t n = q.nbr_ptr[e]; n < q.nbr_ptr[e + 1]; ++n) {
        const scalar_t wk = w[q.nbr_weight[n]];
        const scalar_t* src = m + (b * q.entries + q.nbr_entry[n]) * cols;
        for (int64_t c = 0; c < cols; ++c) acc[c] += wk * src[c];
      }
      if (k == i)
        for (int64_t c = 0; c < cols; ++c) acc[c] += v.template at<scalar_t>(b, i, c);
      const scalar_t gain = alpha * dphi[b * q.hidden + k];
      const scalar_t* mine = m + row * cols;
      scalar_t* o = out + row * cols;
      for (int64_t c = 0; c < cols; ++c) o[c] = keep * mine[c] + gain * acc[c];
    }
  });
}

at::Tensor snap_step_cpu(const at::Tensor& influence, const at::Tensor& weight_hh, const at::Tensor& h_prev,
                         const at::Tensor& x, const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                         double alpha, const at::Tensor& entry_unit, const at::Tensor& entry_row,
                         const at::Tensor& nbr_ptr, const at::Tensor& nbr_entry, const at::Tensor& nbr_weight,
                         bool check_indices) {
  auto p = online_rnn::prepare_snap(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha, entry_unit, entry_row,
                                    nbr_ptr, nbr_entry, nbr_weight, check_indices);
  at::Tensor out = at::empty(influence.sizes(), influence.options());
  p.params.out = out.data_ptr();
  AT_DISPATCH_FLOATING_TYPES(h_prev.scalar_type(), "snap_step_cpu", [&] { step<scalar_t>(p.params); });
  return out;
}

}  // namespace
}  // namespace localgrad::snap

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("snap_step", &localgrad::snap::snap_step_cpu);
}
