// Launchers of the Forward-Forward row passes (csrc/forward_forward.h).
// Torch-free: the glue passes filled params structs, the element type and its
// stream; the products between the passes run through cuBLAS in the shared driver.
#pragma once

#include <cuda_runtime_api.h>

#include "../forward_forward.h"
#include "../scalar_kind.h"

namespace localgrad::forward_forward {

// out = n(x_pos; x_neg) row by row. Each returns the launch status, which the caller must check.
cudaError_t launch_normalize(const NormalizeParams& params, ScalarKind dtype, cudaStream_t stream);

// One layer's goodness, pair losses, delta (in place over z) and the next layer's normalised input.
cudaError_t launch_layer(const LayerParams& params, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::forward_forward
