// UORO step in two launches over (sample, tile) blocks: a sample's θ̃ row of
// H·C entries is split into `tiles` slices, so that a small batch still
// fills the GPU (one block per sample left batch 1 on 1 of 132 SMs).
// Launch 1 reduces each slice's share of the four squared norms (‖J s̃‖, ‖ν‖,
// ‖θ̃‖, ‖δθ‖) into `partials`; launch 2 adds a sample's partials in tile
// order (a fixed order: deterministic), forms ρ0, ρ1 and writes its slice of
// s̃ and θ̃.
#include "uoro_kernel.cuh"

#include "../online_rnn.h"
#include "launch.h"
#include "tiles.cuh"

namespace localgrad::uoro {
namespace {

constexpr int kThreads = 256;
// The tree reduction halves kThreads down to 1 and indexes sums[.][tid]: it
// needs a power of two, and the launches below use exactly kThreads.
static_assert(kThreads >= 32 && (kThreads & (kThreads - 1)) == 0, "uoro: kThreads must be a power of two");

template <typename scalar_t>
struct Sample {
  online_rnn::RowInputs<scalar_t> v;
  const scalar_t *s, *ws, *nu, *dphi, *theta;
  int64_t b, cols, width;
  scalar_t alpha;

  __device__ Sample(const StepParams& q, int64_t b_)
      : v{static_cast<const scalar_t*>(q.x), static_cast<const scalar_t*>(q.h_prev),
          static_cast<const scalar_t*>(q.mask), q.input, q.hidden},
        s(static_cast<const scalar_t*>(q.s_tilde) + b_ * q.hidden),
        ws(static_cast<const scalar_t*>(q.ws) + b_ * q.hidden),
        nu(static_cast<const scalar_t*>(q.nu) + b_ * q.hidden),
        dphi(static_cast<const scalar_t*>(q.dphi) + b_ * q.hidden),
        b(b_),
        cols(q.input + q.hidden + 1),
        width(q.hidden * (q.input + q.hidden + 1)),
        alpha(static_cast<scalar_t>(q.alpha)) {
    theta = static_cast<const scalar_t*>(q.theta_tilde) + b_ * width;
  }
  __device__ scalar_t js(int64_t k) const { return (scalar_t(1) - alpha) * s[k] + alpha * dphi[k] * ws[k]; }
  __device__ scalar_t dtheta(int64_t p) const {
    const int64_t k = p / cols, c = p % cols;
    return alpha * nu[k] * dphi[k] * v.template at<scalar_t>(b, k, c);
  }
};

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) norms_kernel(const StepParams q) {
  LOCALGRAD_SHARED(scalar_t, sums, [4][kThreads]);
  const int64_t t = blockIdx.x % q.tiles;
  const Sample<scalar_t> u(q, blockIdx.x / q.tiles);
  const Slice hid = slice(q.hidden, t, q.tiles), par = slice(u.width, t, q.tiles);

  scalar_t js2 = 0, nu2 = 0, theta2 = 0, dtheta2 = 0;
  for (int64_t k = hid.begin + threadIdx.x; k < hid.end; k += kThreads) {
    const scalar_t js = u.js(k);
    js2 += js * js;
    nu2 += u.nu[k] * u.nu[k];
  }
  for (int64_t p = par.begin + threadIdx.x; p < par.end; p += kThreads) {
    const scalar_t d = u.dtheta(p);
    dtheta2 += d * d;
    theta2 += u.theta[p] * u.theta[p];
  }
  store_tile_sums<kThreads>(sums, {js2, nu2, theta2, dtheta2}, static_cast<scalar_t*>(q.partials));
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) update_kernel(const StepParams q) {
  const int64_t t = blockIdx.x % q.tiles;
  const Sample<scalar_t> u(q, blockIdx.x / q.tiles);
  const auto* partials = static_cast<const scalar_t*>(q.partials) + u.b * q.tiles * 4;
  scalar_t norm2[4];
  sample_sums(partials, q.tiles, norm2);
  const scalar_t eps = static_cast<scalar_t>(q.eps);
  const scalar_t rho0 = sqrt((sqrt(norm2[2]) + eps) / (sqrt(norm2[0]) + eps));
  const scalar_t rho1 = sqrt((sqrt(norm2[3]) + eps) / (sqrt(norm2[1]) + eps));

  const Slice hid = slice(q.hidden, t, q.tiles), par = slice(u.width, t, q.tiles);
  auto* s_out = static_cast<scalar_t*>(q.s_out) + u.b * q.hidden;
  auto* theta_out = static_cast<scalar_t*>(q.theta_out) + u.b * u.width;
  for (int64_t k = hid.begin + threadIdx.x; k < hid.end; k += kThreads) s_out[k] = rho0 * u.js(k) + rho1 * u.nu[k];
  for (int64_t p = par.begin + threadIdx.x; p < par.end; p += kThreads)
    theta_out[p] = u.theta[p] / rho0 + u.dtheta(p) / rho1;
}

template <typename scalar_t>
cudaError_t launch_typed(const StepParams& q, cudaStream_t stream) {
  if (q.batch == 0) return cudaSuccess;
  const auto blocks = static_cast<unsigned>(q.batch * q.tiles);  // <= 2^31 - 1 (tiles_for)
  LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, norms_kernel<scalar_t>)(q);
  if (const cudaError_t status = cudaGetLastError(); status != cudaSuccess) return status;
  LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, update_kernel<scalar_t>)(q);
  return cudaGetLastError();
}

}  // namespace

int64_t tiles_for(int64_t batch, int64_t hidden, int64_t input) {
  return tiles_for_width(batch, hidden * (input + hidden + 1), kThreads);  // θ̃'s H·C entries per sample
}

cudaError_t launch_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream) {
  return dtype == ScalarKind::Float64 ? launch_typed<double>(params, stream) : launch_typed<float>(params, stream);
}

}  // namespace localgrad::uoro
