// CUDA sign_feedback: checks shared with the CPU backend, then one launch.
#include <torch/library.h>

#include "../checks.h"
#include "../sign_feedback_glue.h"
#include "device.h"
#include "sign_feedback_kernel.cuh"

namespace localgrad::sign_feedback {
namespace {

void sign_feedback_cuda(const at::Tensor& weight, int64_t seed, int64_t counter, double scale,
                        bool random_magnitude, const at::Tensor& out) {
  const Prepared prepared = prepare(weight, seed, counter, scale, out);
  const device::Guard guard(weight.device());
  const cudaError_t status = launch(prepared.params, random_magnitude,
                                    scalar_kind(weight.scalar_type()),
                                    device::current_stream());
  device::check_launch(status, "sign_feedback");
}

}  // namespace
}  // namespace localgrad::sign_feedback

LOCALGRAD_CUDA_IMPL(m) {
  m.impl("sign_feedback", &localgrad::sign_feedback::sign_feedback_cuda);
}
