// SnAp-n step over the kept pattern: one thread per (batch, entry, column).
// Consecutive threads take consecutive columns of one entry, so the reads of
// each neighbour's row coalesce; the neighbour list is shared by the warp.
#include "snap_kernel.cuh"

#include <algorithm>

#include "../online_rnn.h"
#include "launch.h"

namespace localgrad::snap {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) step_kernel(const StepParams q) {
  const int64_t cols = q.input + q.hidden + 1;
  const int64_t total = q.batch * q.entries * cols;
  const auto v = online_rnn::row_inputs<scalar_t>(q);
  auto* out = static_cast<scalar_t*>(q.out);
  const auto* m = static_cast<const scalar_t*>(q.influence);
  const auto* w = static_cast<const scalar_t*>(q.weight);
  const auto* dphi = static_cast<const scalar_t*>(q.dphi);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha);
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = idx / cols, c = idx % cols;
    const int64_t b = row / q.entries, e = row % q.entries;
    const int64_t k = q.entry_unit[e], i = q.entry_row[e];
    scalar_t acc = 0;
    for (int64_t n = q.nbr_ptr[e]; n < q.nbr_ptr[e + 1]; ++n)
      acc += w[q.nbr_weight[n]] * m[(b * q.entries + q.nbr_entry[n]) * cols + c];
    if (k == i) acc += v.template at<scalar_t>(b, i, c);
    out[idx] = (scalar_t(1) - alpha) * m[idx] + alpha * dphi[b * q.hidden + k] * acc;
  }
}

template <typename scalar_t>
cudaError_t launch_typed(const StepParams& q, cudaStream_t stream) {
  const int64_t total = q.batch * q.entries * (q.input + q.hidden + 1);
  if (total == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, grid_cap(65535LL * 8));
  LOCALGRAD_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, stream, step_kernel<scalar_t>)(q);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream) {
  return dtype == ScalarKind::Float64 ? launch_typed<double>(params, stream) : launch_typed<float>(params, stream);
}

}  // namespace localgrad::snap
