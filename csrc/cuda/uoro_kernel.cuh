// Launcher of the UORO step (csrc/uoro.h). Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include "../scalar_kind.h"
#include "../uoro.h"

namespace localgrad::uoro {

// How many tiles (blocks per sample) a step of this size takes on the current
// device; params.tiles must be this, and params.partials hold batch * tiles * 4
// elements of the dtype.
int64_t tiles_for(int64_t batch, int64_t hidden, int64_t input);

// params.ws holds W_hh s̃ (from cuBLAS). Float32 and Float64 only.
cudaError_t launch_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::uoro
