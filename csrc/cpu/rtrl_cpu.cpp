// CPU rtrl_step: W_hh M_{t-1} by one broadcast BLAS matmul, then one parallel
// pass adds the leak, φ' and the immediate Jacobian in place.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../online_rnn.h"
#include "../online_rnn_glue.h"

namespace localgrad::rtrl {
namespace {

template <typename scalar_t>
void finish_step(const StepParams& q) {
  const int64_t cols = q.input + q.hidden + 1;
  const int64_t width = q.hidden * cols;
  const auto v = online_rnn::row_inputs<scalar_t>(q);
  auto* out = static_cast<scalar_t*>(q.out);
  const auto* m = static_cast<const scalar_t*>(q.influence);
  const auto* dphi = static_cast<const scalar_t*>(q.dphi);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha), keep = scalar_t(1) - alpha;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(width, 1));
  at::parallel_for(0, q.batch * q.hidden, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / q.hidden, k = row % q.hidden;
      scalar_t* o = out + row * width;
      const scalar_t* mp = m + row * width;
      const scalar_t gain = alpha * dphi[row];
      for (int64_t p = 0; p < width; ++p) o[p] = keep * mp[p] + gain * o[p];
      // Only unit k's own parameter row has an immediate term.
      scalar_t* own = o + k * cols;
      for (int64_t c = 0; c < cols; ++c) own[c] += gain * v.template at<scalar_t>(b, k, c);
    }
  });
}

at::Tensor rtrl_step_cpu(const at::Tensor& influence, const at::Tensor& weight_hh, const at::Tensor& h_prev,
                         const at::Tensor& x, const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                         double alpha) {
  auto p = online_rnn::prepare_rtrl(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha);
  at::Tensor out = at::matmul(p.weight_hh, p.influence).contiguous();
  p.params.out = out.data_ptr();
  AT_DISPATCH_FLOATING_TYPES(h_prev.scalar_type(), "rtrl_step_cpu", [&] { finish_step<scalar_t>(p.params); });
  return out;
}

}  // namespace
}  // namespace localgrad::rtrl

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("rtrl_step", &localgrad::rtrl::rtrl_step_cpu);
}
