// Launcher of the fused RFLO / rate e-prop chunk (csrc/rflo.h). Torch-free.
#pragma once

#include <cuda_runtime_api.h>

#include "../rflo.h"
#include "../scalar_kind.h"

namespace localgrad::rflo {

// Float32 and Float64 only. Returns the launch status.
cudaError_t launch_chunk(const ChunkParams& params, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::rflo
