// Fused rest of the RTRL step: leak, φ' and the immediate Jacobian in one
// elementwise pass over the influence, after cuBLAS has done W_hh M. One
// thread per element, grid-stride; the immediate term touches only the
// unit's own parameter row, found from the column index.
#include "rtrl_kernel.cuh"

#include <algorithm>

#include "../online_rnn.h"
#include "launch.h"

namespace localgrad::rtrl {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) finish_step_kernel(const StepParams q) {
  const int64_t cols = q.input + q.hidden + 1;
  const int64_t width = q.hidden * cols;
  const int64_t total = q.batch * q.hidden * width;
  const auto v = online_rnn::row_inputs<scalar_t>(q);
  auto* out = static_cast<scalar_t*>(q.out);
  const auto* m = static_cast<const scalar_t*>(q.influence);
  const auto* dphi = static_cast<const scalar_t*>(q.dphi);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha);
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = idx / width, p = idx % width;
    const int64_t b = row / q.hidden, k = row % q.hidden;
    const int64_t i = p / cols, c = p % cols;
    scalar_t inner = out[idx];
    if (i == k) inner += v.template at<scalar_t>(b, k, c);
    out[idx] = (scalar_t(1) - alpha) * m[idx] + alpha * dphi[row] * inner;
  }
}

template <typename scalar_t>
cudaError_t launch_typed(const StepParams& q, cudaStream_t stream) {
  const int64_t total = q.batch * q.hidden * q.hidden * (q.input + q.hidden + 1);
  if (total == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, grid_cap(65535LL * 8));
  LOCALGRAD_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, stream, finish_step_kernel<scalar_t>)(q);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_finish_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream) {
  return dtype == ScalarKind::Float64 ? launch_typed<double>(params, stream) : launch_typed<float>(params, stream);
}

}  // namespace localgrad::rtrl
