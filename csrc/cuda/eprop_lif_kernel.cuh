// Launcher of the fused spiking e-prop chunk kernel. Torch-free: the glue
// passes filled ChunkParams (with the CUDA-only initial-state copies), the
// element type and its stream.
#pragma once

#include <cuda_runtime_api.h>

#include "../eprop_lif.h"
#include "../scalar_kind.h"

namespace localgrad::eprop_lif {

// Shared memory a block of the launch needs, static and dynamic, so the glue
// can refuse sizes the device cannot hold with a clear message before
// launching.
size_t chunk_shared_bytes(const ChunkParams& params, ScalarKind dtype, bool adaptive,
                          SignalMode mode);

// One launch for the whole chunk (float32 or float64). Returns the launch
// status, which the caller must check.
cudaError_t launch_chunk(const ChunkParams& params, ScalarKind dtype, bool adaptive,
                         SignalMode mode, cudaStream_t stream);

}  // namespace localgrad::eprop_lif
