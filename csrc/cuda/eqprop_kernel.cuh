// Launchers of the EqProp relaxation kernels. Torch-free: the glue passes
// filled params structs, the element type (float32 or float64) and its stream.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "../eqprop.h"
#include "../scalar_kind.h"

namespace localgrad::eqprop {

// Shared memory the persistent kernel needs for `rows_per_block` rows: the
// states and pre-activations of those rows, and W_1..W_{L-1} in both layouts.
size_t persistent_smem_bytes(const RelaxParams& params, ScalarKind dtype, int rows_per_block);

// The most dynamic shared memory a persistent block may opt in to on the
// current device (the opt-in limit less the kernel's static shared memory).
size_t max_block_smem();

// All steps of the relaxation in one launch; each block relaxes its rows.
// Returns the launch status (cudaGetLastError), which the caller must check.
cudaError_t launch_relax_persistent(const RelaxParams& params, ScalarKind dtype,
                                    int rows_per_block, cudaStream_t stream);

// One half-step of the per-step path: sigma (and the nudge) applied to the
// pre-activations of the layers marked in params.update, live rows written.
cudaError_t launch_relax_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream);

// After a step: live rows count it, and freeze when their largest change is
// below tol; the change is reset for the next step.
cudaError_t launch_finish_step(uint8_t* frozen, void* row_delta, int64_t* ran, int64_t batch,
                               double tol, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::eqprop
