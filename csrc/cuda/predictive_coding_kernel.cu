// Predictive coding's elementwise passes on the GPU: one warp per batch row,
// every active layer of that row in one launch (the cross-entropy output
// needs a row reduction, which a warp does with shuffles). Lanes stride the
// columns, so a warp reads consecutive words.
#include "predictive_coding_kernel.cuh"

#include <algorithm>
#include <cstdint>

#include "launch.h"
#include "warp.cuh"

namespace localgrad::predictive_coding {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / kWarp;
constexpr int64_t kMaxGrid = 1 << 16;

template <typename T>
__global__ void errors_kernel(const ErrorParams p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.x / kWarp;
       r < p.batch; r += warps) {
    for (int i = 0; i < p.n_layers; ++i) {
      if (!p.active[i]) continue;
      const int64_t n = p.width[i];
      T* e = static_cast<T*>(p.eps[i]) + r * p.eps_row_stride[i];
      if (i < p.n_layers - 1) {
        const T* a = static_cast<const T*>(p.state[i]) + r * p.state_row_stride[i];
        const T* mu = p.mu[i] == nullptr ? e : static_cast<const T*>(p.mu[i]) + r * n;
        for (int64_t c = lane; c < n; c += kWarp) e[c] = a[c] - mu[c];
        continue;
      }
      const T* y = static_cast<const T*>(p.target) + r * p.target_row_stride;
      const T pi = static_cast<T>(p.output_precision);
      if (p.loss == Loss::Mse) {
        for (int64_t c = lane; c < n; c += kWarp) e[c] = pi * (y[c] - e[c]);
        continue;
      }
      T m = -INFINITY;
      for (int64_t c = lane; c < n; c += kWarp) m = max(m, e[c]);
      m = warp_max(m);
      T sum = T(0);
      for (int64_t c = lane; c < n; c += kWarp) sum += exp(e[c] - m);
      sum = warp_sum(sum);
      // Every lane has read its logits for the sum before any is overwritten
      // (the shuffles above synchronise the warp).
      for (int64_t c = lane; c < n; c += kWarp) e[c] = pi * (y[c] - exp(e[c] - m) / sum);
    }
  }
}

template <typename T, Activation kAct>
__device__ __forceinline__ void state_row(const StateParams& p, int k, int64_t r, int lane) {
  const int64_t n = p.width[k];
  T* a = static_cast<T*>(p.state[k]) + r * p.state_row_stride[k];
  T* e = static_cast<T*>(p.eps[k]) + r * p.eps_row_stride[k];
  const T* bk = static_cast<const T*>(p.back[k]) + r * n;
  const T* d = p.dfx[k] == nullptr ? nullptr : static_cast<const T*>(p.dfx[k]) + r * n;
  T* f = p.fx[k] == nullptr ? nullptr : static_cast<T*>(p.fx[k]) + r * n;
  const T gamma = static_cast<T>(p.gamma), slope = static_cast<T>(p.slope[k]);
  for (int64_t c = lane; c < n; c += kWarp) {
    const T old = a[c];
    const T deriv = d != nullptr ? d[c] : activate_derivative<kAct>(old, slope);
    const T now = old + gamma * (-e[c] + deriv * bk[c]);
    a[c] = now;
    if (p.refresh_error) e[c] += now - old;
    if (f != nullptr) f[c] = activate<kAct>(now, slope);
  }
}

template <typename T>
__global__ void states_kernel(const StateParams p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kRowsPerBlock;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.x / kWarp;
       r < p.batch; r += warps) {
    for (int k = 0; k < p.n_hidden; ++k) {
      if (!p.active[k]) continue;
      // Uniform across the grid: no divergence from the switch.
      LOCALGRAD_DISPATCH_PC_ACTIVATION(p.kind[k], [&] { state_row<T, kAct>(p, k, r, lane); });
    }
  }
}

unsigned blocks_for(int64_t batch) {
  return static_cast<unsigned>(
      grid_cap(std::min<int64_t>((batch + kRowsPerBlock - 1) / kRowsPerBlock, kMaxGrid)));
}

}  // namespace

cudaError_t launch_errors(const ErrorParams& params, ScalarKind dtype, cudaStream_t stream) {
  if (params.batch == 0) return cudaSuccess;
  if (dtype == ScalarKind::Float64) {
    LOCALGRAD_LAUNCH(blocks_for(params.batch), kThreads, 0, stream, errors_kernel<double>)(params);
  } else {
    LOCALGRAD_LAUNCH(blocks_for(params.batch), kThreads, 0, stream, errors_kernel<float>)(params);
  }
  return cudaGetLastError();
}

cudaError_t launch_states(const StateParams& params, ScalarKind dtype, cudaStream_t stream) {
  if (params.batch == 0) return cudaSuccess;
  if (dtype == ScalarKind::Float64) {
    LOCALGRAD_LAUNCH(blocks_for(params.batch), kThreads, 0, stream, states_kernel<double>)(params);
  } else {
    LOCALGRAD_LAUNCH(blocks_for(params.batch), kThreads, 0, stream, states_kernel<float>)(params);
  }
  return cudaGetLastError();
}

}  // namespace localgrad::predictive_coding
