// Launchers of the plastic_episode kernels (csrc/meta.h). Torch-free: the
// glue passes the filled params, whether the dtype is float64, and its
// stream. Each returns the launch status (cudaGetLastError).
#pragma once

#include <cuda_runtime_api.h>

#include "../meta.h"

namespace localgrad::meta {

cudaError_t launch_forward_step(const ForwardStepParams& params, bool is_double, cudaStream_t stream);
cudaError_t launch_backward_rows(const BackwardRowParams& params, bool is_double, cudaStream_t stream);
cudaError_t launch_backward_inputs(const BackwardInputParams& params, bool is_double, cudaStream_t stream);
cudaError_t launch_backward_weights(const BackwardWeightParams& params, bool is_double, cudaStream_t stream);

}  // namespace localgrad::meta
