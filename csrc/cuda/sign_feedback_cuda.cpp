// CUDA sign_feedback: checks shared with the CPU backend, then one launch.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../sign_feedback_glue.h"
#include "sign_feedback_kernel.cuh"

namespace localgrad::sign_feedback {
namespace {

void sign_feedback_cuda(const at::Tensor& weight, int64_t seed, int64_t counter, double scale,
                        bool random_magnitude, const at::Tensor& out) {
  const Prepared prepared = prepare(weight, seed, counter, scale, out);
  const c10::cuda::CUDAGuard guard(weight.device());
  const cudaError_t status = launch(prepared.params, random_magnitude,
                                    scalar_kind(weight.scalar_type()),
                                    c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(status == cudaSuccess, "sign_feedback: CUDA kernel launch failed: ",
              cudaGetErrorString(status));
}

}  // namespace
}  // namespace localgrad::sign_feedback

TORCH_LIBRARY_IMPL(localgrad, CUDA, m) {
  m.impl("sign_feedback", &localgrad::sign_feedback::sign_feedback_cuda);
}
