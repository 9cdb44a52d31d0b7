// RFLO / rate e-prop over a whole chunk in one launch. A block owns a tile of
// parameters (i, c) (threads along c, so reads of x_t and h_{t-1} coalesce)
// and a slice of the batch; each thread keeps its trace in a register through
// all T steps and accumulates Σ_t L P. The block's batch slices are summed in
// shared memory in a fixed order, so the result is deterministic.
#include "rflo_kernel.cuh"

#include <algorithm>

#include "../online_rnn.h"
#include "launch.h"

namespace localgrad::rflo {
namespace {

constexpr int kCols = 32;       // parameter columns per block (a warp)
constexpr int kSlices = 8;      // batch slices per block (warps)
constexpr int kThreads = kCols * kSlices;
// A warp per batch slice: the column index is the lane.
static_assert(kCols == 32, "rflo: a block's columns are one warp's lanes");

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) chunk_kernel(const ChunkParams q) {
  LOCALGRAD_SHARED(scalar_t, partial, [kSlices][kCols]);
  const int64_t cols = q.input + q.hidden + 1;
  const int64_t i = blockIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kCols + threadIdx.x % kCols;
  const int slice = threadIdx.x / kCols;
  auto* trace_out = static_cast<scalar_t*>(q.trace_out);
  const auto [trace, xs, h_prevs, dphis, signals, mask] = ChunkInputs<scalar_t>(q);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha);
  const int64_t bh = q.batch * q.hidden;
  scalar_t acc = 0;
  if (c < cols) {
    for (int64_t b = slice; b < q.batch; b += kSlices) {
      scalar_t p = trace[(b * q.hidden + i) * cols + c];
      for (int64_t t = 0; t < q.steps; ++t) {
        const online_rnn::RowInputs<scalar_t> v{xs + t * q.batch * q.input, h_prevs + t * bh, mask, q.input,
                                                q.hidden};
        p = (scalar_t(1) - alpha) * p + alpha * dphis[t * bh + b * q.hidden + i] * v.template at<scalar_t>(b, i, c);
        acc += signals[t * bh + b * q.hidden + i] * p;
      }
      trace_out[(b * q.hidden + i) * cols + c] = p;
    }
  }
  partial[slice][threadIdx.x % kCols] = acc;
  __syncthreads();
  if (slice == 0 && c < cols) {
    scalar_t sum = 0;
    for (int s = 0; s < kSlices; ++s) sum += partial[s][threadIdx.x];
    static_cast<scalar_t*>(q.grad)[i * cols + c] = sum;
  }
}

template <typename scalar_t>
cudaError_t launch_typed(const ChunkParams& q, cudaStream_t stream) {
  const int64_t cols = q.input + q.hidden + 1;
  if (q.hidden == 0) return cudaSuccess;
  // The grid's y dimension holds the hidden units (at most 65535).
  const dim3 grid(static_cast<unsigned>((cols + kCols - 1) / kCols), static_cast<unsigned>(q.hidden));
  LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, chunk_kernel<scalar_t>)(q);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_chunk(const ChunkParams& params, ScalarKind dtype, cudaStream_t stream) {
  return dtype == ScalarKind::Float64 ? launch_typed<double>(params, stream) : launch_typed<float>(params, stream);
}

}  // namespace localgrad::rflo
