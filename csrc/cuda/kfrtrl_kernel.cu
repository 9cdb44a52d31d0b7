// KF-RTRL step after cuBLAS has done W_hh A.
// Rank 1: two launches over (sample, tile) blocks, as UORO's step: a
// sample's H² entries of A (and C of u) are split into `tiles` slices so that
// a small batch still fills the GPU. Launch 1 reduces each slice's share of
// the four squared norms (‖J A‖, ‖u‖, ‖α D‖, ‖v‖) into `partials`; launch 2
// adds a sample's partials in tile order (fixed: deterministic), forms ρ0, ρ1
// and writes its slice of u and A with the signs.
// Rank ≥ 2: one elementwise grid-stride pass writing the r + 1 terms.
#include "kfrtrl_kernel.cuh"

#include <algorithm>

#include "launch.h"
#include "tiles.cuh"

namespace localgrad::kfrtrl {
namespace {

constexpr int kThreads = 256;
// The tree reduction halves kThreads down to 1: it needs a power of two.
static_assert(kThreads >= 32 && (kThreads & (kThreads - 1)) == 0, "kfrtrl: kThreads must be a power of two");

// One sample's inputs; factor j of A starts at j * H².
template <typename scalar_t>
struct Sample {
  const scalar_t *u, *a, *wa, *x, *h, *dphi;
  int64_t hidden, input, cols, square;
  scalar_t alpha;

  __device__ Sample(const StepParams& q, int64_t b)
      : hidden(q.hidden), input(q.input), cols(q.input + q.hidden + 1), square(q.hidden * q.hidden),
        alpha(static_cast<scalar_t>(q.alpha)) {
    u = static_cast<const scalar_t*>(q.u) + b * q.rank * cols;
    a = static_cast<const scalar_t*>(q.a) + b * q.rank * square;
    wa = static_cast<const scalar_t*>(q.wa) + b * q.rank * square;
    x = static_cast<const scalar_t*>(q.x) + b * q.input;
    h = static_cast<const scalar_t*>(q.h_prev) + b * q.hidden;
    dphi = static_cast<const scalar_t*>(q.dphi) + b * q.hidden;
  }
  // (J A)[p], p = j H² + k H + i over the r factors: row k's φ'.
  __device__ scalar_t ja(int64_t p) const {
    const int64_t k = (p % square) / hidden;
    return (scalar_t(1) - alpha) * a[p] + alpha * dphi[k] * wa[p];
  }
  __device__ scalar_t v(int64_t c) const { return c < input ? x[c] : c < input + hidden ? h[c - input] : scalar_t(1); }
};

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) kf_norms_kernel(const StepParams q) {
  LOCALGRAD_SHARED(scalar_t, sums, [4][kThreads]);
  const int64_t t = blockIdx.x % q.tiles;
  const Sample<scalar_t> s(q, blockIdx.x / q.tiles);
  const Slice sq = slice(s.square, t, q.tiles), col = slice(s.cols, t, q.tiles), hid = slice(q.hidden, t, q.tiles);

  scalar_t ja2 = 0, u2 = 0, d2 = 0, v2 = 0;
  for (int64_t p = sq.begin + threadIdx.x; p < sq.end; p += kThreads) {
    const scalar_t ja = s.ja(p);
    ja2 += ja * ja;
  }
  for (int64_t c = col.begin + threadIdx.x; c < col.end; c += kThreads) {
    u2 += s.u[c] * s.u[c];
    const scalar_t v = s.v(c);
    v2 += v * v;
  }
  for (int64_t k = hid.begin + threadIdx.x; k < hid.end; k += kThreads) {
    const scalar_t ad = s.alpha * s.dphi[k];
    d2 += ad * ad;
  }
  store_tile_sums<kThreads>(sums, {ja2, u2, d2, v2}, static_cast<scalar_t*>(q.partials));
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) kf_update_kernel(const StepParams q) {
  const int64_t t = blockIdx.x % q.tiles, b = blockIdx.x / q.tiles;
  const Sample<scalar_t> s(q, b);
  const auto* partials = static_cast<const scalar_t*>(q.partials) + b * q.tiles * 4;
  scalar_t norm2[4];
  sample_sums(partials, q.tiles, norm2);
  const scalar_t eps = static_cast<scalar_t>(q.eps);
  const scalar_t rho0 = sqrt((sqrt(norm2[0]) + eps) / (sqrt(norm2[1]) + eps));
  const scalar_t rho1 = sqrt((sqrt(norm2[2]) + eps) / (sqrt(norm2[3]) + eps));
  const auto* signs = static_cast<const scalar_t*>(q.signs) + 2 * b;
  const scalar_t keep_u = signs[0] * rho0, new_u = signs[1] * rho1;
  const scalar_t keep_a = signs[0] / rho0, new_a = signs[1] / rho1;

  const Slice sq = slice(s.square, t, q.tiles), col = slice(s.cols, t, q.tiles);
  auto* u_out = static_cast<scalar_t*>(q.u_out) + b * s.cols;
  auto* a_out = static_cast<scalar_t*>(q.a_out) + b * s.square;
  for (int64_t c = col.begin + threadIdx.x; c < col.end; c += kThreads) u_out[c] = keep_u * s.u[c] + new_u * s.v(c);
  for (int64_t p = sq.begin + threadIdx.x; p < sq.end; p += kThreads) {
    const int64_t k = p / q.hidden, i = p % q.hidden;
    // The product with α D's off-diagonal zeros too: NaN there when ρ1 is
    // not finite, as in the reference.
    a_out[p] = keep_a * s.ja(p) + new_a * (i == k ? s.alpha * s.dphi[k] : scalar_t(0));
  }
}

// Rank ≥ 2: element e of sample b's (r+1)(H² + C) outputs, A's terms first.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) kf_terms_kernel(const StepParams q) {
  const int64_t cols = q.input + q.hidden + 1, square = q.hidden * q.hidden, terms = q.rank + 1;
  const int64_t a_total = q.batch * terms * square, total = a_total + q.batch * terms * cols;
  auto* u_out = static_cast<scalar_t*>(q.u_out);
  auto* a_out = static_cast<scalar_t*>(q.a_out);
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (idx < a_total) {
      const int64_t b = idx / (terms * square), e = idx % (terms * square);
      const int64_t j = e / square, p = e % square;
      const Sample<scalar_t> s(q, b);
      if (j < q.rank) {
        a_out[idx] = s.ja(j * square + p);
      } else {
        const int64_t k = p / q.hidden, i = p % q.hidden;
        a_out[idx] = i == k ? s.alpha * s.dphi[k] : scalar_t(0);
      }
    } else {
      const int64_t o = idx - a_total;
      const int64_t b = o / (terms * cols), e = o % (terms * cols);
      const int64_t j = e / cols, c = e % cols;
      const Sample<scalar_t> s(q, b);
      u_out[o] = j < q.rank ? s.u[j * cols + c] : s.v(c);
    }
  }
}

template <typename scalar_t>
cudaError_t launch_typed(const StepParams& q, cudaStream_t stream) {
  if (q.batch == 0) return cudaSuccess;
  if (q.rank == 1) {
    const auto blocks = static_cast<unsigned>(q.batch * q.tiles);  // <= 2^31 - 1 (tiles_for)
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, kf_norms_kernel<scalar_t>)(q);
    if (const cudaError_t status = cudaGetLastError(); status != cudaSuccess) return status;
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, kf_update_kernel<scalar_t>)(q);
    return cudaGetLastError();
  }
  const int64_t total = q.batch * (q.rank + 1) * (q.hidden * q.hidden + q.input + q.hidden + 1);
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, grid_cap(65535LL * 8));
  LOCALGRAD_LAUNCH(static_cast<unsigned>(blocks), kThreads, 0, stream, kf_terms_kernel<scalar_t>)(q);
  return cudaGetLastError();
}

}  // namespace

int64_t tiles_for(int64_t batch, int64_t hidden, int64_t input) {
  // A sample's rows: A's H² entries and u's C = I + H + 1.
  const int64_t width = hidden * hidden > input + hidden + 1 ? hidden * hidden : input + hidden + 1;
  return tiles_for_width(batch, width, kThreads);
}

cudaError_t launch_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream) {
  return dtype == ScalarKind::Float64 ? launch_typed<double>(params, stream) : launch_typed<float>(params, stream);
}

}  // namespace localgrad::kfrtrl
