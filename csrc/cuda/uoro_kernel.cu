// UORO step: one block per batch element. Pass 1 reduces the four squared
// norms (‖J s̃‖, ‖ν‖, ‖θ̃‖, ‖δθ‖) in shared memory (fixed tree order:
// deterministic); pass 2 writes s̃ and θ̃ with the block's ρ0, ρ1.
#include "uoro_kernel.cuh"

#include "../online_rnn.h"
#include "launch.h"

namespace localgrad::uoro {
namespace {

constexpr int kThreads = 256;
// The tree reduction halves kThreads down to 1 and indexes sums[.][tid]: it
// needs a power of two, and the launch below uses exactly kThreads.
static_assert(kThreads >= 32 && (kThreads & (kThreads - 1)) == 0, "uoro: kThreads must be a power of two");

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) step_kernel(const StepParams q) {
  LOCALGRAD_SHARED(scalar_t, sums, [4][kThreads]);
  const int64_t cols = q.input + q.hidden + 1;
  const int64_t width = q.hidden * cols;
  const int64_t b = blockIdx.x;
  const online_rnn::RowInputs<scalar_t> v{static_cast<const scalar_t*>(q.x),
                                          static_cast<const scalar_t*>(q.h_prev),
                                          static_cast<const scalar_t*>(q.mask), q.input, q.hidden};
  const auto* s = static_cast<const scalar_t*>(q.s_tilde) + b * q.hidden;
  const auto* ws = static_cast<const scalar_t*>(q.ws) + b * q.hidden;
  const auto* nu = static_cast<const scalar_t*>(q.nu) + b * q.hidden;
  const auto* dphi = static_cast<const scalar_t*>(q.dphi) + b * q.hidden;
  const auto* theta = static_cast<const scalar_t*>(q.theta_tilde) + b * width;
  const scalar_t alpha = static_cast<scalar_t>(q.alpha), eps = static_cast<scalar_t>(q.eps);

  scalar_t js2 = 0, nu2 = 0, theta2 = 0, dtheta2 = 0;
  for (int64_t k = threadIdx.x; k < q.hidden; k += kThreads) {
    const scalar_t js = (scalar_t(1) - alpha) * s[k] + alpha * dphi[k] * ws[k];
    js2 += js * js;
    nu2 += nu[k] * nu[k];
  }
  for (int64_t p = threadIdx.x; p < width; p += kThreads) {
    const int64_t k = p / cols, c = p % cols;
    const scalar_t d = alpha * nu[k] * dphi[k] * v.template at<scalar_t>(b, k, c);
    dtheta2 += d * d;
    theta2 += theta[p] * theta[p];
  }
  sums[0][threadIdx.x] = js2;
  sums[1][threadIdx.x] = nu2;
  sums[2][threadIdx.x] = theta2;
  sums[3][threadIdx.x] = dtheta2;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half)
      for (int j = 0; j < 4; ++j) sums[j][threadIdx.x] += sums[j][threadIdx.x + half];
    __syncthreads();
  }
  const scalar_t rho0 = sqrt((sqrt(sums[2][0]) + eps) / (sqrt(sums[0][0]) + eps));
  const scalar_t rho1 = sqrt((sqrt(sums[3][0]) + eps) / (sqrt(sums[1][0]) + eps));

  auto* s_out = static_cast<scalar_t*>(q.s_out) + b * q.hidden;
  auto* theta_out = static_cast<scalar_t*>(q.theta_out) + b * width;
  for (int64_t k = threadIdx.x; k < q.hidden; k += kThreads) {
    const scalar_t js = (scalar_t(1) - alpha) * s[k] + alpha * dphi[k] * ws[k];
    s_out[k] = rho0 * js + rho1 * nu[k];
  }
  for (int64_t p = threadIdx.x; p < width; p += kThreads) {
    const int64_t k = p / cols, c = p % cols;
    const scalar_t d = alpha * nu[k] * dphi[k] * v.template at<scalar_t>(b, k, c);
    theta_out[p] = theta[p] / rho0 + d / rho1;
  }
}

template <typename scalar_t>
cudaError_t launch_typed(const StepParams& q, cudaStream_t stream) {
  if (q.batch == 0) return cudaSuccess;
  // One block per batch element (grid x allows 2^31 - 1).
  LOCALGRAD_LAUNCH(static_cast<unsigned>(q.batch), kThreads, 0, stream, step_kernel<scalar_t>)(q);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream) {
  return dtype == ScalarKind::Float64 ? launch_typed<double>(params, stream) : launch_typed<float>(params, stream);
}

}  // namespace localgrad::uoro
