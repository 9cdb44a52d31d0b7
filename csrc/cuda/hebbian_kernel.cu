// hebbian_update's kernels: everything between the GEMMs (cuBLAS through
// ATen in the glue). One block per row for the row-wise work, so each
// reduction (the soft WTA's max and sum, Krotov's ranks, a unit's correction
// c_k, norm and peak) stays in shared memory and registers:
//   power     W~ = sign(W)|W|^(p-1)                     (Krotov, p != 2)
//   activate  Y = f_rule(U), a block per sample
//   combine   dW_k, max_i |dW_ki| and rate_k, a block per unit
//   finalize  grad = -rate_k dW_k / max |dW|, a block per unit
// Eager code spends ~8 launches per layer on the same work.
#include "hebbian_kernel.cuh"

#include <algorithm>

#include "element.cuh"

#include "launch.h"
#include "warp.cuh"

namespace localgrad::hebbian {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int64_t kMaxGrid = 65535;

// Block-wide sum or max, every thread gets the result. `scratch` holds
// kWarps values; the trailing __syncthreads lets the caller reuse it.
template <typename T, bool kMax>
__device__ T block_reduce(T v, T* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = kMax ? warp_max(v) : warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < kWarps; ++w) r = kMax ? max(r, scratch[w]) : r + scratch[w];
  __syncthreads();
  return r;
}

// Block-wide argmax over (value, index) pairs (a butterfly: the pair order is
// commutative, so every lane of a warp ends with its result): the largest value, the lowest
// index among equal ones; index -1 for none.
template <typename T>
__device__ void block_argmax(T& v, int64_t& idx, T* vals, int64_t* idxs) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) {
    const T ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (oi >= 0 && (idx < 0 || ov > v || (ov == v && oi < idx))) { v = ov; idx = oi; }
  }
  if (lane == 0) { vals[warp] = v; idxs[warp] = idx; }
  __syncthreads();
  v = vals[0];
  idx = idxs[0];
  for (int w = 1; w < kWarps; ++w) {
    const T ov = vals[w];
    const int64_t oi = idxs[w];
    if (oi >= 0 && (idx < 0 || ov > v || (ov == v && oi < idx))) { v = ov; idx = oi; }
  }
  __syncthreads();
}

__device__ __forceinline__ float pow_acc(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double pow_acc(double a, double b) { return pow(a, b); }
__device__ __forceinline__ float exp_acc(float a) { return expf(a); }
__device__ __forceinline__ double exp_acc(double a) { return exp(a); }
__device__ __forceinline__ float sqrt_acc(float a) { return sqrtf(a); }
__device__ __forceinline__ double sqrt_acc(double a) { return sqrt(a); }

template <typename acc_t>
__global__ void __launch_bounds__(kThreads) power_kernel(const PowerParams pp) {
  const auto* w = static_cast<const acc_t*>(pp.weight);
  auto* out = static_cast<acc_t*>(pp.out);
  const acc_t e = static_cast<acc_t>(pp.p - 1);
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < pp.n;
       i += int64_t(gridDim.x) * kThreads) {
    const acc_t v = w[i];
    const acc_t m = pow_acc(fabs(v), e);
    out[i] = v > 0 ? m : (v < 0 ? -m : acc_t(0));
  }
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads) activate_kernel(const ActivateParams ap) {
  LOCALGRAD_SHARED(acc_t, vals, [kWarps]);
  LOCALGRAD_SHARED(int64_t, idxs, [kWarps]);
  const int64_t n = ap.n_out;
  for (int64_t b = blockIdx.x; b < ap.batch; b += gridDim.x) {
    const acc_t* u = static_cast<const acc_t*>(ap.u) + b * ap.u_row_stride;
    acc_t* y = static_cast<acc_t*>(ap.y) + b * ap.y_row_stride;
    if (ap.rule == Rule::BCM) {
      const auto* theta = static_cast<const acc_t*>(ap.theta);
      for (int64_t j = threadIdx.x; j < n; j += kThreads) y[j] = u[j] * (u[j] - theta[j]);
      continue;
    }
    // The winner: the first largest u.
    acc_t best = acc_t(0);
    int64_t winner = -1;
    for (int64_t j = threadIdx.x; j < n; j += kThreads) {
      if (winner < 0 || u[j] > best) { best = u[j]; winner = j; }
    }
    block_argmax(best, winner, vals, idxs);
    if (ap.rule == Rule::SoftHebb) {
      const acc_t inv_t = static_cast<acc_t>(ap.inv_temperature);
      const acc_t zmax = best * inv_t;
      acc_t sum = 0;
      for (int64_t j = threadIdx.x; j < n; j += kThreads) sum += exp_acc(u[j] * inv_t - zmax);
      sum = block_reduce<acc_t, false>(sum, vals);
      const acc_t inv_sum = acc_t(1) / sum;
      for (int64_t j = threadIdx.x; j < n; j += kThreads)
        y[j] = exp_acc(u[j] * inv_t - zmax) * (j == winner ? inv_sum : -inv_sum);
      continue;
    }
    // Krotov: walk down the ranks to the `rank`-th, in the descending,
    // index-stable order (next: the largest after (prev, prev_idx)).
    for (int64_t j = threadIdx.x; j < n; j += kThreads) y[j] = acc_t(0);
    acc_t prev = best;
    int64_t prev_idx = winner;
    for (int64_t r = 2; r <= ap.rank && prev_idx >= 0; ++r) {
      acc_t v = acc_t(0);
      int64_t idx = -1;
      for (int64_t j = threadIdx.x; j < n; j += kThreads) {
        const acc_t uj = u[j];
        const bool eligible = uj < prev || (uj == prev && j > prev_idx);
        if (eligible && (idx < 0 || uj > v)) { v = uj; idx = j; }
      }
      block_argmax(v, idx, vals, idxs);
      prev = v;
      prev_idx = idx;
    }
    __syncthreads();  // the zeros are written before the two marks
    if (threadIdx.x == 0) {
      if (ap.rank >= 2 && prev_idx >= 0) y[prev_idx] = static_cast<acc_t>(-ap.anti);
      if (winner >= 0) y[winner] = acc_t(1);
    }
  }
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads) combine_kernel(const CombineParams cp) {
  LOCALGRAD_SHARED(acc_t, scratch, [kWarps]);
  const acc_t inv_batch = static_cast<acc_t>(cp.inv_batch);
  const acc_t p = static_cast<acc_t>(cp.p);
  const bool euclid = cp.p == 2.0;
  const bool adaptive = cp.lr_power != 0.0;
  for (int64_t k = blockIdx.x; k < cp.n_out; k += gridDim.x) {
    const int64_t off = k * cp.row_stride;
    const acc_t* hk = static_cast<const acc_t*>(cp.hebb) + off;
    const acc_t* wk = static_cast<const acc_t*>(cp.weight) + off;
    const acc_t* ek = static_cast<const acc_t*>(cp.weight_eff) + off;
    const acc_t* ck = cp.correction ? static_cast<const acc_t*>(cp.correction) + off : nullptr;
    acc_t* dk = static_cast<acc_t*>(cp.delta) + off;
    acc_t c = 0, norm = 0;
    for (int64_t i = threadIdx.x; i < cp.n_in; i += kThreads) {
      c += hk[i] * ek[i];
      if (adaptive) norm += euclid ? wk[i] * wk[i] : pow_acc(fabs(wk[i]), p);
    }
    c = block_reduce<acc_t, false>(c, scratch);
    if (adaptive) norm = block_reduce<acc_t, false>(norm, scratch);
    acc_t peak = 0;
    for (int64_t i = threadIdx.x; i < cp.n_in; i += kThreads) {
      acc_t d;
      if (cp.rule == Rule::Sanger) d = (hk[i] - ck[i]) * inv_batch;
      else if (cp.rule == Rule::BCM) d = hk[i] * inv_batch;
      else d = (hk[i] - c * wk[i]) * inv_batch;
      dk[i] = d;
      peak = max(peak, fabs(d));
    }
    peak = block_reduce<acc_t, true>(peak, scratch);
    if (threadIdx.x == 0) {
      static_cast<acc_t*>(cp.row_peak)[k] = peak;
      acc_t rate = static_cast<acc_t>(cp.lr);  // lr_power 0: x^0 = 1, no norm needed
      if (adaptive) {
        const acc_t r = euclid ? sqrt_acc(norm) : pow_acc(norm, acc_t(1) / p);
        rate *= pow_acc(fabs(r - acc_t(1)) + static_cast<acc_t>(kAdaptiveEps),
                        static_cast<acc_t>(cp.lr_power));
      }
      static_cast<acc_t*>(cp.rate)[k] = rate;
    }
  }
}

template <typename acc_t, typename out_t>
__global__ void __launch_bounds__(kThreads) finalize_kernel(const FinalizeParams fp) {
  LOCALGRAD_SHARED(acc_t, scratch, [kWarps]);
  const auto* row_peak = static_cast<const acc_t*>(fp.row_peak);
  acc_t scale = 1;
  if (fp.normalize) {
    // Every block finds the global peak itself: n_out reads from L2 instead
    // of another launch.
    acc_t peak = 0;
    for (int64_t k = threadIdx.x; k < fp.n_out; k += kThreads) peak = max(peak, row_peak[k]);
    peak = block_reduce<acc_t, true>(peak, scratch);
    scale = peak > 0 ? acc_t(1) / peak : acc_t(0);
  }
  for (int64_t k = blockIdx.x; k < fp.n_out; k += gridDim.x) {
    const acc_t s = -static_cast<const acc_t*>(fp.rate)[k] * scale;
    const acc_t* dk = static_cast<const acc_t*>(fp.delta) + k * fp.delta_row_stride;
    out_t* gk = static_cast<out_t*>(fp.grad) + k * fp.grad_row_stride;
    for (int64_t i = threadIdx.x; i < fp.n_in; i += kThreads) gk[i] = from_acc<out_t>(dk[i] * s);
  }
}

unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(n, grid_cap(kMaxGrid))));
}

}  // namespace

cudaError_t launch_power(const PowerParams& pp, bool is_double, cudaStream_t stream) {
  if (pp.n == 0) return cudaSuccess;
  const unsigned grid = blocks_for((pp.n + kThreads - 1) / kThreads);
  if (is_double) LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, power_kernel<double>)(pp);
  else LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, power_kernel<float>)(pp);
  return cudaGetLastError();
}

cudaError_t launch_activate(const ActivateParams& ap, bool is_double, cudaStream_t stream) {
  if (ap.batch == 0 || ap.n_out == 0) return cudaSuccess;
  const unsigned grid = blocks_for(ap.batch);
  if (is_double) LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, activate_kernel<double>)(ap);
  else LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, activate_kernel<float>)(ap);
  return cudaGetLastError();
}

cudaError_t launch_combine(const CombineParams& cp, bool is_double, cudaStream_t stream) {
  if (cp.n_out == 0) return cudaSuccess;
  const unsigned grid = blocks_for(cp.n_out);
  if (is_double) LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, combine_kernel<double>)(cp);
  else LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, combine_kernel<float>)(cp);
  return cudaGetLastError();
}

cudaError_t launch_finalize(const FinalizeParams& fp, bool is_double, ScalarKind out,
                            cudaStream_t stream) {
  if (fp.n_out == 0 || fp.n_in == 0) return cudaSuccess;
  const unsigned grid = blocks_for(fp.n_out);
  if (is_double) {
    LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, finalize_kernel<double, double>)(fp);
  } else if (out == ScalarKind::Float16) {
    LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, finalize_kernel<float, __half>)(fp);
  } else if (out == ScalarKind::BFloat16) {
    LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, finalize_kernel<float, __nv_bfloat16>)(fp);
  } else {
    LOCALGRAD_LAUNCH(grid, kThreads, 0, stream, finalize_kernel<float, float>)(fp);
  }
  return cudaGetLastError();
}

}  // namespace localgrad::hebbian
