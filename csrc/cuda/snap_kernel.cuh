// Launcher of the SnAp-n sparse influence step (csrc/snap.h). Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include "../scalar_kind.h"
#include "../snap.h"

namespace localgrad::snap {

// Float32 and Float64 only. Returns the launch status.
cudaError_t launch_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::snap
