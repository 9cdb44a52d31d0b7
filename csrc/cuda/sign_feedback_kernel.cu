// sign_feedback on the GPU: one thread per element of B, drawing its own |R|
// from the counter-based RNG, so nothing but B itself touches memory.
#include "sign_feedback_kernel.cuh"

#include <algorithm>

#include "element.cuh"
#include "launch.h"

namespace localgrad::sign_feedback {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

template <typename scalar_t, bool kRandomMagnitude>
__global__ void __launch_bounds__(kThreads) fill_kernel(const Params p) {
  const auto* w = static_cast<const scalar_t*>(p.weight);
  auto* out = static_cast<scalar_t*>(p.out);
  using acc_t = typename AccType<scalar_t>::type;
  const auto scale = static_cast<acc_t>(p.scale);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < p.numel; i += stride) {
    if constexpr (kRandomMagnitude) {
      out[i] = from_acc<scalar_t>(static_cast<acc_t>(random_sign(to_acc(w[i]), p, i)));
    } else {
      out[i] = from_acc<scalar_t>(uniform_sign(to_acc(w[i]), scale));
    }
  }
}

template <typename scalar_t>
cudaError_t launch_typed(const Params& p, bool random_magnitude, cudaStream_t stream) {
  if (p.numel == 0) return cudaSuccess;
  const auto blocks = static_cast<unsigned>(std::min<int64_t>((p.numel + kThreads - 1) / kThreads, grid_cap(kMaxBlocks)));
  if (random_magnitude) {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, fill_kernel<scalar_t, true>)(p);
  } else {
    LOCALGRAD_LAUNCH(blocks, kThreads, 0, stream, fill_kernel<scalar_t, false>)(p);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch(const Params& params, bool random_magnitude, ScalarKind dtype,
                   cudaStream_t stream) {
  switch (dtype) {
    case ScalarKind::Float64: return launch_typed<double>(params, random_magnitude, stream);
    case ScalarKind::Float16: return launch_typed<__half>(params, random_magnitude, stream);
    case ScalarKind::BFloat16: return launch_typed<__nv_bfloat16>(params, random_magnitude, stream);
    default: return launch_typed<float>(params, random_magnitude, stream);
  }
}

}  // namespace localgrad::sign_feedback
