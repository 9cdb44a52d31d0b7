// CPU rflo_chunk: every (parameter row i, column c) is independent; a worker
// carries each batch element's trace through all T steps and sums the update,
// so the chunk costs one pass over its inputs and no trace round trips.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../online_rnn.h"
#include "../online_rnn_glue.h"

namespace localgrad::rflo {
namespace {

template <typename scalar_t>
void chunk(const ChunkParams& q) {
  const int64_t cols = q.input + q.hidden + 1;
  auto* trace_out = static_cast<scalar_t*>(q.trace_out);
  auto* grad = static_cast<scalar_t*>(q.grad);
  const auto* trace = static_cast<const scalar_t*>(q.trace);
  const auto* xs = static_cast<const scalar_t*>(q.xs);
  const auto* h_prevs = static_cast<const scalar_t*>(q.h_prevs);
  const auto* dphis = static_cast<const scalar_t*>(q.dphis);
  const auto* signals = static_cast<const scalar_t*>(q.signals);
  const auto* mask = static_cast<const scalar_t*>(q.mask);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha), keep = scalar_t(1) - alpha;
  const int64_t bh = q.batch * q.hidden;
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(q.steps * q.batch, 1));
  at::parallel_for(0, q.hidden * cols, grain, [&](int64_t begin, int64_t end) {
    for (int64_t ic = begin; ic < end; ++ic) {
      const int64_t i = ic / cols, c = ic % cols;
      scalar_t acc = 0;
      for (int64_t b = 0; b < q.batch; ++b) {
        scalar_t p = trace[(b * q.hidden + i) * cols + c];
        for (int64_t t = 0; t < q.steps; ++t) {
          const online_rnn::RowInputs<scalar_t> v{xs + t * q.batch * q.input, h_prevs + t * bh, mask, q.input,
                                                  q.hidden};
          p = keep * p + alpha * dphis[t * bh + b * q.hidden + i] * v.template at<scalar_t>(b, i, c);
          acc += signals[t * bh + b * q.hidden + i] * p;
        }
        trace_out[(b * q.hidden + i) * cols + c] = p;
      }
      grad[ic] = acc;
    }
  });
}

std::tuple<at::Tensor, at::Tensor> rflo_chunk_cpu(const at::Tensor& trace, const at::Tensor& xs,
                                                  const at::Tensor& h_prevs, const at::Tensor& dphis,
                                                  const at::Tensor& signals,
                                                  const std::optional<at::Tensor>& hh_mask, double alpha) {
  auto p = online_rnn::prepare_rflo(trace, xs, h_prevs, dphis, signals, hh_mask, alpha);
  at::Tensor trace_out = at::empty(trace.sizes(), trace.options());
  at::Tensor grad = at::empty({trace.size(1), trace.size(2)}, trace.options());
  p.params.trace_out = trace_out.data_ptr();
  p.params.grad = grad.data_ptr();
  AT_DISPATCH_FLOATING_TYPES(trace.scalar_type(), "rflo_chunk_cpu", [&] { chunk<scalar_t>(p.params); });
  return {trace_out, grad};
}

}  // namespace
}  // namespace localgrad::rflo

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("rflo_chunk", &localgrad::rflo::rflo_chunk_cpu);
}
