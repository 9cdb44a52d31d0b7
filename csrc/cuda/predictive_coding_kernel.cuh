// Launchers of the predictive-coding elementwise passes. Torch-free: the glue
// passes filled params structs (csrc/predictive_coding.h), the element type
// (float32 or float64) and its stream; the products between the passes run
// through cuBLAS in the shared driver.
#pragma once

#include <cuda_runtime_api.h>

#include "../predictive_coding.h"
#include "../scalar_kind.h"

namespace localgrad::predictive_coding {

// Errors of the active layers (eps holds mu on entry). Returns the launch
// status, which the caller must check.
cudaError_t launch_errors(const ErrorParams& params, ScalarKind dtype, cudaStream_t stream);

// One inference step of the active hidden nodes.
cudaError_t launch_states(const StateParams& params, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::predictive_coding
