// Launchers of the KF-RTRL step (csrc/kfrtrl.h). Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include "../kfrtrl.h"
#include "../scalar_kind.h"

namespace localgrad::kfrtrl {

// Rank 1: how many tiles (blocks per sample) a step of this size takes on the
// current device; params.tiles must be this, and params.partials hold
// batch * tiles * 4 elements of the dtype. Rank ≥ 2 uses neither.
int64_t tiles_for(int64_t batch, int64_t hidden, int64_t input);

// params.wa holds W_hh A (from cuBLAS). Rank 1: the reduced step; rank ≥ 2:
// the r + 1 terms. Float32 and Float64 only.
cudaError_t launch_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::kfrtrl
