// Launcher of the fused RTRL step (csrc/rtrl.h). Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include "../rtrl.h"
#include "../scalar_kind.h"

namespace localgrad::rtrl {

// params.out holds W_hh M_{t-1} (from cuBLAS); finished in place. Float32 and
// Float64 only. Returns the launch status.
cudaError_t launch_finish_step(const StepParams& params, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::rtrl
