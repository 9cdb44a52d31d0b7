// EqProp relaxation on the GPU.
//
// Batch rows relax independently, so the persistent kernel gives each block a
// tile of rows and keeps their states in shared memory for every step, with
// the weights of layers 1..L-1 (the input drive W_0 x + b_0 is precomputed by
// cuBLAS and read once per step): T steps cost one launch instead of several
// launches per step. Each weight is held twice, as W and W^T, so that the
// threads of a warp, which handle consecutive units, read consecutive words
// whichever direction a product runs. When the weights do not fit, the glue
// runs the per-step path: cuBLAS products, then relax_step_kernel.
#include "eqprop_kernel.cuh"

#include <algorithm>

#include "element.cuh"
#include "launch.h"
#include "warp.cuh"

namespace localgrad::eqprop {
namespace {

constexpr int kThreads = 256;
// Warp-per-row and warp-per-unit loops (and their shuffles) need whole warps.
static_assert(kThreads % kWarp == 0, "eqprop: kThreads must be a whole number of warps");

// Row changes are non-negative, so their bit patterns order like the values
// and an integer atomicMax takes the max.
template <typename T> struct DeltaBits;
template <> struct DeltaBits<float> {
  using type = unsigned int;
  static __device__ __forceinline__ type bits(float v) { return __float_as_uint(v); }
  static __device__ __forceinline__ float value(type b) { return __uint_as_float(b); }
};
template <> struct DeltaBits<double> {
  using type = unsigned long long;
  static __device__ __forceinline__ type bits(double v) {
    return static_cast<type>(__double_as_longlong(v));
  }
  static __device__ __forceinline__ double value(type b) {
    return __longlong_as_double(static_cast<long long>(b));
  }
};

// Where each piece lives in the persistent kernel's shared memory, in
// elements. Computed identically by the host (to size it) and the device.
struct SmemLayout {
  int w[kMaxLayers];      // W_k (n_{k+1}, n_k), k >= 1
  int wt[kMaxLayers];     // W_k^T (n_k, n_{k+1})
  int b[kMaxLayers];      // b_k, k >= 1
  int s[kMaxLayers];      // state j: rows x n_{j+1}
  int pre[kMaxLayers];    // pre-activation j: rows x n_{j+1}
  int lse;                // rows: log-sum-exp of the output row (cross-entropy)
  int total;              // elements of T; row flags follow
};

// Fills `l` in place: the kernel's copy lives in shared memory, since a
// per-thread copy indexed at run time sits in local memory (a 328-byte stack
// frame) and a by-value copy there spilled too.
__host__ __device__ inline void fill_layout(SmemLayout& l, const RelaxParams& p, int rows) {
  int at = 0;
  for (int k = 1; k < p.n_layers; ++k) {
    const int n = static_cast<int>(p.width[k + 1] * p.width[k]);
    l.w[k] = at;
    at += n;
    l.wt[k] = at;
    at += n;
    l.b[k] = at;
    at += static_cast<int>(p.width[k + 1]);
  }
  for (int j = 0; j < p.n_layers; ++j) {
    l.s[j] = at;
    at += rows * static_cast<int>(p.width[j + 1]);
    l.pre[j] = at;
    at += rows * static_cast<int>(p.width[j + 1]);
  }
  l.lse = at;
  at += rows;
  l.total = at;
}

inline SmemLayout make_layout(const RelaxParams& p, int rows) {
  SmemLayout l{};
  fill_layout(l, p, rows);
  return l;
}

// Bytes after the T elements: per row its change bits (8 bytes), frozen flag
// and step count.
__host__ __device__ inline size_t smem_bytes(const SmemLayout& l, int rows, size_t elem) {
  size_t bytes = static_cast<size_t>(l.total) * elem;
  bytes = (bytes + 15) / 16 * 16;
  return bytes + static_cast<size_t>(rows) * (8 + 4 + 8);
}

__host__ __device__ inline bool layer_in_half(int j, int half, bool async_update) {
  if (!async_update) return true;
  const bool even_layer = (j + 1) % 2 == 0;  // state j holds layer k = j + 1
  return half == 0 ? even_layer : !even_layer;
}

// Pre-activation of unit c of state j for row r (all in shared memory except
// the drive and the target), reduced by one thread (kLanes = 1) or a warp.
template <typename T, Nudge kNudge, int kLanes>
__device__ __forceinline__ T pre_activation(const RelaxParams& p, const SmemLayout& l,
                                            const T* sm, int j, int r, int c, int64_t row,
                                            int lane) {
  const int L = p.n_layers;
  const int n_out = static_cast<int>(p.width[j + 1]);
  T acc = T(0);
  if (j > 0) {
    const int n_in = static_cast<int>(p.width[j]);
    const T* below = sm + l.s[j - 1] + r * n_in;
    if constexpr (kLanes == 1) {
      const T* wt = sm + l.wt[j] + c;  // W_j^T[i][c]: consecutive c, consecutive words
      for (int i = 0; i < n_in; ++i) acc += wt[i * n_out] * below[i];
    } else {
      const T* w = sm + l.w[j] + c * n_in;  // W_j[c][i]: lanes over i
      for (int i = lane; i < n_in; i += kWarp) acc += w[i] * below[i];
    }
  }
  if (j + 1 < L) {
    const int n_above = static_cast<int>(p.width[j + 2]);
    const T* above = sm + l.s[j + 1] + r * n_above;
    if constexpr (kLanes == 1) {
      const T* w = sm + l.w[j + 1] + c;  // W_{j+1}[m][c]
      for (int m = 0; m < n_above; ++m) acc += w[m * n_out] * above[m];
    } else {
      const T* wt = sm + l.wt[j + 1] + c * n_above;  // W_{j+1}^T[c][m]: lanes over m
      for (int m = lane; m < n_above; m += kWarp) acc += wt[m] * above[m];
    }
  }
  if constexpr (kLanes > 1) acc = warp_sum(acc);
  if (j == 0) {
    acc += static_cast<const T*>(p.drive)[row * p.width[1] + c];
  } else {
    acc += sm[l.b[j] + c];
  }
  if constexpr (kNudge == Nudge::Mse || kNudge == Nudge::CrossEntropy) {
    if (j == L - 1) {
      const T y = static_cast<const T*>(p.target)[row * p.target_row_stride + c];
      const T s = sm[l.s[j] + r * n_out + c];
      T grad;
      if constexpr (kNudge == Nudge::Mse) {
        grad = s - y;
      } else {
        grad = exp(s - sm[l.lse + r]) - y;
      }
      acc -= static_cast<T>(p.beta) * grad;
    }
  }
  return acc;
}

template <typename T, Sigma kSigma, Nudge kNudge, bool kAsync>
__global__ void __launch_bounds__(kThreads)
relax_persistent_kernel(const RelaxParams p, int rows_per_block) {
  LOCALGRAD_SHARED(SmemLayout, layout, );
  LOCALGRAD_DYNAMIC_SHARED(smem_raw);
  using Bits = typename DeltaBits<T>::type;
  T* sm = reinterpret_cast<T*>(smem_raw);
  const int R = rows_per_block;
  if (threadIdx.x == 0) fill_layout(layout, p, R);
  __syncthreads();
  const SmemLayout& l = layout;
  unsigned char* flags = smem_raw + (static_cast<size_t>(l.total) * sizeof(T) + 15) / 16 * 16;
  Bits* row_delta = reinterpret_cast<Bits*>(flags);
  long long* ran = reinterpret_cast<long long*>(flags + 8 * static_cast<size_t>(R));
  int* frozen = reinterpret_cast<int*>(flags + 16 * static_cast<size_t>(R));

  const int L = p.n_layers;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * R;
  const int rows = static_cast<int>(p.batch - row0 < R ? p.batch - row0 : R);
  const int tid = threadIdx.x;
  const int warp = tid / kWarp, lane = tid % kWarp, n_warps = blockDim.x / kWarp;
  const int last_updated = kNudge == Nudge::Clamp ? L - 1 : L;

  for (int k = 1; k < L; ++k) {
    const int n_in = static_cast<int>(p.width[k]), n_out = static_cast<int>(p.width[k + 1]);
    const T* w = static_cast<const T*>(p.weight[k]);
    for (int idx = tid; idx < n_in * n_out; idx += blockDim.x) {
      const T v = w[idx];
      sm[l.w[k] + idx] = v;
      sm[l.wt[k] + (idx % n_in) * n_out + idx / n_in] = v;
    }
    const T* b = static_cast<const T*>(p.bias[k]);
    for (int c = tid; c < n_out; c += blockDim.x) sm[l.b[k] + c] = b[c];
  }
  for (int j = 0; j < L; ++j) {
    const int n = static_cast<int>(p.width[j + 1]);
    const T* state = static_cast<const T*>(p.state[j]);
    for (int idx = tid; idx < R * n; idx += blockDim.x) {
      const int r = idx / n, c = idx % n;
      sm[l.s[j] + idx] = r < rows ? state[(row0 + r) * p.state_row_stride[j] + c] : T(0);
    }
  }
  for (int r = tid; r < R; r += blockDim.x) {
    row_delta[r] = 0;
    ran[r] = 0;
    frozen[r] = r < rows ? 0 : 1;  // the tail of the last tile never runs
  }
  __syncthreads();

  for (int64_t t = 0; t < p.steps; ++t) {
    int live = 0;
    for (int r = tid; r < R; r += blockDim.x) live |= !frozen[r];
    if (!__syncthreads_or(live)) break;

    for (int half = 0; half < (kAsync ? 2 : 1); ++half) {
      const bool output_here = last_updated == L && layer_in_half(L - 1, half, kAsync);
      if constexpr (kNudge == Nudge::CrossEntropy) {
        if (output_here) {
          // Softmax of the old output row: one warp per row.
          const int n = static_cast<int>(p.width[L]);
          for (int r = warp; r < R; r += n_warps) {
            const T* s = sm + l.s[L - 1] + r * n;
            T m = -INFINITY;
            for (int c = lane; c < n; c += kWarp) m = max(m, s[c]);
            m = warp_max(m);
            T sum = T(0);
            for (int c = lane; c < n; c += kWarp) sum += exp(s[c] - m);
            sum = warp_sum(sum);
            if (lane == 0) sm[l.lse + r] = m + log(sum);
          }
          __syncthreads();
        }
      }
      // Phase A: every pre-activation of this half from the current states.
      for (int j = 0; j < last_updated; ++j) {
        if (!layer_in_half(j, half, kAsync)) continue;
        const int n = static_cast<int>(p.width[j + 1]);
        const int reduce = (j > 0 ? static_cast<int>(p.width[j]) : 0) +
                           (j + 1 < L ? static_cast<int>(p.width[j + 2]) : 0);
        // Few units with long sums (an output layer) would leave most threads
        // idle: a warp per unit then splits each sum.
        if (R * n < static_cast<int>(blockDim.x) && reduce > kWarp) {
          for (int idx = warp; idx < R * n; idx += n_warps) {
            const int r = idx / n, c = idx % n;
            if (frozen[r]) continue;
            const T v = pre_activation<T, kNudge, kWarp>(p, l, sm, j, r, c, row0 + r, lane);
            if (lane == 0) sm[l.pre[j] + idx] = v;
          }
        } else {
          for (int idx = tid; idx < R * n; idx += blockDim.x) {
            const int r = idx / n, c = idx % n;
            if (frozen[r]) continue;
            sm[l.pre[j] + idx] = pre_activation<T, kNudge, 1>(p, l, sm, j, r, c, row0 + r, 0);
          }
        }
      }
      __syncthreads();
      // Phase B: sigma, the new states, each row's largest change.
      for (int j = 0; j < last_updated; ++j) {
        if (!layer_in_half(j, half, kAsync)) continue;
        const int n = static_cast<int>(p.width[j + 1]);
        for (int idx = tid; idx < R * n; idx += blockDim.x) {
          const int r = idx / n;
          if (frozen[r]) continue;
          const T v = apply_sigma<kSigma, T>(sm[l.pre[j] + idx]);
          const T d = fabs(v - sm[l.s[j] + idx]);
          sm[l.s[j] + idx] = v;
          atomicMax(&row_delta[r], DeltaBits<T>::bits(d));
        }
      }
      __syncthreads();
    }
    for (int r = tid; r < R; r += blockDim.x) {
      if (!frozen[r]) {
        ++ran[r];
        if (DeltaBits<T>::value(row_delta[r]) < static_cast<T>(p.tol)) frozen[r] = 1;
      }
      row_delta[r] = 0;
    }
    __syncthreads();
  }

  for (int j = 0; j < L; ++j) {
    const int n = static_cast<int>(p.width[j + 1]);
    T* state = static_cast<T*>(p.state[j]);
    for (int idx = tid; idx < rows * n; idx += blockDim.x) {
      const int r = idx / n, c = idx % n;
      state[(row0 + r) * p.state_row_stride[j] + c] = sm[l.s[j] + idx];
    }
  }
  for (int r = tid; r < rows; r += blockDim.x) p.ran[row0 + r] = ran[r];
}

// One warp per row: the row's old output is at hand for the cross-entropy
// softmax, and its largest change needs no atomics.
template <typename T, Sigma kSigma, Nudge kNudge>
__global__ void __launch_bounds__(kThreads) relax_step_kernel(const StepParams p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps_per_block = blockDim.x / kWarp;
  T* row_delta = static_cast<T*>(p.row_delta);
  const int L = p.n_layers;
  for (int64_t r = blockIdx.x * warps_per_block + threadIdx.x / kWarp; r < p.batch;
       r += static_cast<int64_t>(gridDim.x) * warps_per_block) {
    if (p.frozen[r]) continue;
    T moved = T(0);
    for (int j = 0; j < L; ++j) {
      if (!p.update[j]) continue;
      const int64_t n = p.width[j];
      T* s = static_cast<T*>(p.state[j]) + r * p.state_row_stride[j];
      const T* u = static_cast<const T*>(p.pre[j]) + r * n;
      const bool nudged = (kNudge == Nudge::Mse || kNudge == Nudge::CrossEntropy) && j == L - 1;
      T log_norm = T(0);
      if constexpr (kNudge == Nudge::CrossEntropy) {
        if (nudged) {
          T m = -INFINITY;
          for (int64_t c = lane; c < n; c += kWarp) m = max(m, s[c]);
          m = warp_max(m);
          T sum = T(0);
          for (int64_t c = lane; c < n; c += kWarp) sum += exp(s[c] - m);
          log_norm = m + log(warp_sum(sum));
        }
      }
      // Each lane reads its old s[c] before writing it: the softmax above is
      // complete (warp-synchronous reductions) before any write.
      for (int64_t c = lane; c < n; c += kWarp) {
        T v = u[c];
        if (nudged) {
          const T y = static_cast<const T*>(p.target)[r * p.target_row_stride + c];
          T grad;
          if constexpr (kNudge == Nudge::CrossEntropy) {
            grad = exp(s[c] - log_norm) - y;
          } else {
            grad = s[c] - y;
          }
          v -= static_cast<T>(p.beta) * grad;
        }
        v = apply_sigma<kSigma, T>(v);
        const T d = fabs(v - s[c]);
        moved = max(moved, d != d ? T(INFINITY) : d);  // NaN: never converged (as the reference)
        s[c] = v;
      }
    }
    moved = warp_max(moved);
    if (lane == 0) row_delta[r] = max(row_delta[r], moved);
  }
}

template <typename T>
__global__ void finish_step_kernel(uint8_t* frozen, T* row_delta, int64_t* ran, int64_t batch,
                                   double tol) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < batch;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!frozen[r]) {
      ++ran[r];
      if (row_delta[r] < static_cast<T>(tol)) frozen[r] = 1;
    }
    row_delta[r] = T(0);
  }
}

constexpr int64_t kMaxGrid = 1 << 16;

template <typename T>
cudaError_t launch_persistent_typed(const RelaxParams& params, int rows_per_block,
                                    cudaStream_t stream) {
  const int64_t blocks = (params.batch + rows_per_block - 1) / rows_per_block;
  if (blocks == 0 || params.steps == 0) return cudaSuccess;
  const size_t smem = smem_bytes(make_layout(params, rows_per_block), rows_per_block, sizeof(T));
  cudaError_t status = cudaSuccess;
  LOCALGRAD_DISPATCH_SIGMA(params.sigma, [&] {
    LOCALGRAD_DISPATCH_NUDGE(params.nudge, [&] {
      auto launch = [&](auto kernel) {
        status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem));
        if (status != cudaSuccess) {
          (void)cudaGetLastError();  // not left for the next launch to report
          return;
        }
        LOCALGRAD_LAUNCH(static_cast<unsigned>(blocks), kThreads, smem, stream, kernel)(params, rows_per_block);
        status = cudaGetLastError();
      };
      if (params.async_update) {
        launch(relax_persistent_kernel<T, kSigma, kNudge, true>);
      } else {
        launch(relax_persistent_kernel<T, kSigma, kNudge, false>);
      }
    });
  });
  return status;
}

template <typename T>
cudaError_t launch_step_typed(const StepParams& params, cudaStream_t stream) {
  if (params.batch == 0) return cudaSuccess;
  const int64_t rows_per_block = kThreads / kWarp;
  const int64_t blocks = std::min<int64_t>((params.batch + rows_per_block - 1) / rows_per_block, grid_cap(kMaxGrid));
  LOCALGRAD_DISPATCH_SIGMA(params.sigma, [&] {
    LOCALGRAD_DISPATCH_NUDGE(params.nudge, [&] {
      LOCALGRAD_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, stream, relax_step_kernel<T, kSigma, kNudge>)(params);
    });
  });
  return cudaGetLastError();
}

}  // namespace

size_t persistent_smem_bytes(const RelaxParams& params, ScalarKind dtype, int rows_per_block) {
  const size_t elem = dtype == ScalarKind::Float64 ? sizeof(double) : sizeof(float);
  return smem_bytes(make_layout(params, rows_per_block), rows_per_block, elem);
}

size_t max_block_smem() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
    (void)cudaGetLastError();
    bytes = 48 * 1024;
  }
  // The layout table is static shared memory (the same in every
  // instantiation): the limit holds static + dynamic.
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, relax_persistent_kernel<float, Sigma::Tanh, Nudge::Free, false>) != cudaSuccess) {
    (void)cudaGetLastError();
    attr.sharedSizeBytes = (sizeof(SmemLayout) + 15) / 16 * 16;
  }
  return static_cast<size_t>(bytes) - attr.sharedSizeBytes;
}

cudaError_t launch_relax_persistent(const RelaxParams& params, ScalarKind dtype,
                                    int rows_per_block, cudaStream_t stream) {
  if (dtype == ScalarKind::Float64) return launch_persistent_typed<double>(params, rows_per_block, stream);
  return launch_persistent_typed<float>(params, rows_per_block, stream);
}

cudaError_t launch_relax_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream) {
  if (dtype == ScalarKind::Float64) return launch_step_typed<double>(params, stream);
  return launch_step_typed<float>(params, stream);
}

cudaError_t launch_finish_step(uint8_t* frozen, void* row_delta, int64_t* ran, int64_t batch,
                               double tol, ScalarKind dtype, cudaStream_t stream) {
  if (batch == 0) return cudaSuccess;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((batch + threads - 1) / threads, grid_cap(kMaxGrid));
  if (dtype == ScalarKind::Float64) {
    LOCALGRAD_LAUNCH(static_cast<unsigned>(blocks), threads, 0, stream, finish_step_kernel<double>)(
        frozen, static_cast<double*>(row_delta), ran, batch, tol);
  } else {
    LOCALGRAD_LAUNCH(static_cast<unsigned>(blocks), threads, 0, stream, finish_step_kernel<float>)(
        frozen, static_cast<float*>(row_delta), ran, batch, tol);
  }
  return cudaGetLastError();
}

}  // namespace localgrad::eqprop
