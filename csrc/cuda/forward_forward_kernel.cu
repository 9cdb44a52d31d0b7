// Forward-Forward's row passes on the GPU: one warp per row (normalize) or
// per positive/negative pair (layer), lanes striding the columns so that
// consecutive lanes read consecutive words; a row's sum of squares is a
// butterfly over the warp, so every lane holds it without shared memory.
#include "forward_forward_kernel.cuh"

#include <algorithm>
#include <cstdint>

#include "../predictive_coding.h"  // LOCALGRAD_DISPATCH_PC_ACTIVATION
#include "launch.h"

namespace localgrad::forward_forward {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr int kWarps = kThreads / kWarp;
constexpr int64_t kMaxGrid = 1 << 16;

unsigned blocks_for(int64_t rows) {
  return static_cast<unsigned>(grid_cap(std::min<int64_t>((rows + kWarps - 1) / kWarps, kMaxGrid)));
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__global__ void normalize_kernel(const NormalizeParams p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t n = p.width, rows = 2 * p.batch;
  // The whole warp walks the same rows, so every lane reaches the shuffles.
  for (int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / kWarp; r < rows;
       r += int64_t(gridDim.x) * kWarps) {
    const T* in = static_cast<const T*>(r < p.batch ? p.pos : p.neg) + (r % p.batch) * n;
    T q = T(0);
    for (int64_t j = lane; j < n; j += kWarp) q += in[j] * in[j];
    const T inv = inverse_norm(warp_sum(q), n, p.mode, static_cast<T>(p.eps));
    T* out = static_cast<T*>(p.out) + r * n;
    for (int64_t j = lane; j < n; j += kWarp) out[j] = in[j] * inv;
  }
}

template <typename T, Activation kAct>
__device__ __forceinline__ void finish_row(T* z, T* next, int64_t m, int lane, T slope, T scale, T inv) {
  for (int64_t j = lane; j < m; j += kWarp) {
    const T a = predictive_coding::activate<kAct>(z[j], slope);
    if (next != nullptr) next[j] = a * inv;
    z[j] = scale * a * predictive_coding::activate_derivative<kAct>(z[j], slope);
  }
}

template <typename T, Activation kAct>
__device__ __forceinline__ void layer_pair(const LayerParams& p, int64_t i, int lane) {
  const int64_t m = p.width, B = p.batch;
  const T slope = static_cast<T>(p.slope), eps = static_cast<T>(p.eps);
  T* zp = static_cast<T*>(p.z) + i * m;
  T* zn = static_cast<T*>(p.z) + (B + i) * m;
  T qp = T(0), qn = T(0);
  for (int64_t j = lane; j < m; j += kWarp) {
    const T ap = predictive_coding::activate<kAct>(zp[j], slope);
    const T an = predictive_coding::activate<kAct>(zn[j], slope);
    qp += ap * ap;
    qn += an * an;
  }
  qp = warp_sum(qp);
  qn = warp_sum(qn);
  const PairTerms<T> t = pair_terms(qp, qn, p);
  T* next = static_cast<T*>(p.next);
  finish_row<T, kAct>(zp, next == nullptr ? nullptr : next + i * m, m, lane, slope, t.scale_pos,
                      inverse_norm(qp, m, p.mode, eps));
  finish_row<T, kAct>(zn, next == nullptr ? nullptr : next + (B + i) * m, m, lane, slope, t.scale_neg,
                      inverse_norm(qn, m, p.mode, eps));
  if (lane == 0) {
    static_cast<T*>(p.good)[i] = t.good_pos;
    static_cast<T*>(p.good)[B + i] = t.good_neg;
    static_cast<T*>(p.pair_loss)[i] = t.loss;
  }
}

template <typename T>
__global__ void layer_kernel(const LayerParams p) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t i = int64_t(blockIdx.x) * kWarps + threadIdx.x / kWarp; i < p.batch;
       i += int64_t(gridDim.x) * kWarps) {
    // Uniform across the grid: no divergence from the switch.
    LOCALGRAD_DISPATCH_PC_ACTIVATION(p.kind, [&] { layer_pair<T, kAct>(p, i, lane); });
  }
}

}  // namespace

cudaError_t launch_normalize(const NormalizeParams& params, ScalarKind dtype, cudaStream_t stream) {
  if (params.batch == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(2 * params.batch);
  if (dtype == ScalarKind::Float64) {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, normalize_kernel<double>)(params);
  } else {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, normalize_kernel<float>)(params);
  }
  return cudaGetLastError();
}

cudaError_t launch_layer(const LayerParams& params, ScalarKind dtype, cudaStream_t stream) {
  if (params.batch == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(params.batch);
  if (dtype == ScalarKind::Float64) {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, layer_kernel<double>)(params);
  } else {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, layer_kernel<float>)(params);
  }
  return cudaGetLastError();
}

}  // namespace localgrad::forward_forward
