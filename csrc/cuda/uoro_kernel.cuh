// Launcher of the UORO step (csrc/uoro.h). Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include "../scalar_kind.h"
#include "../uoro.h"

namespace localgrad::uoro {

// params.ws holds W_hh s̃ (from cuBLAS). Float32 and Float64 only.
cudaError_t launch_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::uoro
