// Target propagation's feedback-training passes on the GPU. noisy and gate:
// one thread per element, grid-stride. reduce: one block per chunk of
// kReduceRows rows, its threads striding the columns (consecutive threads
// read consecutive words of a row), each summing its column over the chunk
// in row order, so the partial sums are the same on every run.
#include "target_prop_kernel.cuh"

#include <algorithm>
#include <cstdint>

#include "../predictive_coding.h"  // LOCALGRAD_DISPATCH_PC_ACTIVATION
#include "launch.h"

namespace localgrad::target_prop {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 1 << 16;

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(grid_cap(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxGrid)));
}

template <typename T>
__global__ void noisy_kernel(const NoisyParams p) {
  const int64_t total = p.rows * p.width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; e < total; e += stride) {
    const int64_t r = e / p.width, j = e - r * p.width;
    static_cast<T*>(p.x)[e] =
        static_cast<const T*>(p.h)[(r % p.batch) * p.width + j] + static_cast<const T*>(p.eps)[e];
  }
}

template <typename T, Activation kAct>
__device__ __forceinline__ void gate_element(const GateParams& p, int64_t e) {
  const int64_t r = e / p.width, c = e - r * p.width;
  const int64_t b = (r % p.batch) * p.width + c;
  T* a = static_cast<T*>(p.a);
  const T q = p.gate == nullptr ? T(1) : static_cast<const T*>(p.gate)[b];
  const T f = forward_activation<kAct>(a[e], static_cast<T>(p.slope));
  if (p.variant == Variant::Dtp) {
    a[e] = q * f;
    return;
  }
  a[e] = q * (f - static_cast<const T*>(p.h_out)[b]);
  static_cast<T*>(p.p)[e] = q * static_cast<const T*>(p.eta)[e];
}

template <typename T>
__global__ void gate_kernel(const GateParams p) {
  const int64_t total = p.rows * p.width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; e < total; e += stride) {
    // Uniform across the grid: no divergence from the switch.
    LOCALGRAD_DISPATCH_PC_ACTIVATION(p.kind, [&] { gate_element<T, kAct>(p, e); });
  }
}

template <typename T>
__global__ void reduce_kernel(const ReduceParams p) {
  for (int64_t k = blockIdx.x; k < p.chunks; k += gridDim.x) {
    const int64_t first = k * kReduceRows;
    const int64_t last = first + kReduceRows < p.rows ? first + kReduceRows : p.rows;
    for (int64_t j = threadIdx.x; j < p.width; j += kThreads) {
      T sum = T(0), sq = T(0);
      for (int64_t r = first; r < last; ++r) {
        T* a = static_cast<T*>(p.a) + r * p.width + j;
        T v = *a;
        if (p.sub != nullptr) {
          v -= static_cast<const T*>(p.sub)[r * p.width + j];
          *a = v;
        }
        sum += v;
        sq += v * v;
      }
      static_cast<T*>(p.sums)[k * p.width + j] = sum;
      static_cast<T*>(p.squares)[k * p.width + j] = sq;
    }
  }
}

}  // namespace

cudaError_t launch_noisy(const NoisyParams& params, ScalarKind dtype, cudaStream_t stream) {
  if (params.rows * params.width == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(params.rows * params.width);
  if (dtype == ScalarKind::Float64) {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, noisy_kernel<double>)(params);
  } else {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, noisy_kernel<float>)(params);
  }
  return cudaGetLastError();
}

cudaError_t launch_gate(const GateParams& params, ScalarKind dtype, cudaStream_t stream) {
  if (params.rows * params.width == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(params.rows * params.width);
  if (dtype == ScalarKind::Float64) {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, gate_kernel<double>)(params);
  } else {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, gate_kernel<float>)(params);
  }
  return cudaGetLastError();
}

cudaError_t launch_reduce(const ReduceParams& params, ScalarKind dtype, cudaStream_t stream) {
  if (params.chunks == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(grid_cap(std::min<int64_t>(params.chunks, kMaxGrid)));
  if (dtype == ScalarKind::Float64) {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, reduce_kernel<double>)(params);
  } else {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, reduce_kernel<float>)(params);
  }
  return cudaGetLastError();
}

}  // namespace localgrad::target_prop
