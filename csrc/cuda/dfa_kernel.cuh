// Launcher of the fused DFA projection kernel. Torch-free: the glue passes a
// filled ProjectParams, the element type and its stream.
#pragma once

#include <cuda_runtime_api.h>

#include "../dfa.h"
#include "../scalar_kind.h"

namespace localgrad::dfa {

// Launches one kernel for up to kMaxLayersPerLaunch layers. Returns the launch
// status (cudaGetLastError), which the caller must check.
cudaError_t launch_project(const ProjectParams& params, ScalarKind dtype,
                           cudaStream_t stream);

}  // namespace localgrad::dfa
