// CPU rflo_chunk: parameter rows are independent; a worker carries each batch
// element's trace row through all T steps in a local buffer and sums the
// update, so the chunk costs one pass over its inputs and no trace round trips.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../online_rnn.h"
#include "../online_rnn_glue.h"

namespace localgrad::rflo {
namespace {

template <typename scalar_t>
void chunk(const ChunkParams& q) {
  const int64_t cols = q.input + q.hidden + 1;
  auto* trace_out = static_cast<scalar_t*>(q.trace_out);
  auto* grad = static_cast<scalar_t*>(q.grad);
  const auto [trace, xs, h_prevs, dphis, signals, mask] = ChunkInputs<scalar_t>(q);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha), keep = scalar_t(1) - alpha;
  const int64_t bh = q.batch * q.hidden;
  // Parallel over parameter rows i only, so each grad element is summed in
  // one fixed order whatever the thread count; the inner loops run along the
  // row's contiguous segments [x | mask_i ⊙ h | 1] and vectorise.
  at::parallel_for(0, q.hidden, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> p(cols);
    for (int64_t i = begin; i < end; ++i) {
      scalar_t* g = grad + i * cols;
      std::fill(g, g + cols, scalar_t(0));
      const scalar_t* m = mask == nullptr ? nullptr : mask + i * q.hidden;
      for (int64_t b = 0; b < q.batch; ++b) {
        const scalar_t* start = trace + (b * q.hidden + i) * cols;
        std::copy(start, start + cols, p.begin());
        scalar_t* pp = p.data();
        for (int64_t t = 0; t < q.steps; ++t) {
          const scalar_t d = alpha * dphis[t * bh + b * q.hidden + i];
          const scalar_t l = signals[t * bh + b * q.hidden + i];
          const scalar_t* x = xs + (t * q.batch + b) * q.input;
          const scalar_t* h = h_prevs + (t * q.batch + b) * q.hidden;
          for (int64_t c = 0; c < q.input; ++c) {
            pp[c] = keep * pp[c] + d * x[c];
            g[c] += l * pp[c];
          }
          scalar_t* ph = pp + q.input;
          scalar_t* gh = g + q.input;
          if (m == nullptr) {
            for (int64_t j = 0; j < q.hidden; ++j) {
              ph[j] = keep * ph[j] + d * h[j];
              gh[j] += l * ph[j];
            }
          } else {
            for (int64_t j = 0; j < q.hidden; ++j) {
              ph[j] = keep * ph[j] + d * (h[j] * m[j]);
              gh[j] += l * ph[j];
            }
          }
          pp[cols - 1] = keep * pp[cols - 1] + d;
          g[cols - 1] += l * pp[cols - 1];
        }
        std::copy(p.begin(), p.end(), trace_out + (b * q.hidden + i) * cols);
      }
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
