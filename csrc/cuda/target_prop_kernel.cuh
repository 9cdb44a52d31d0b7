// Launchers of target propagation's feedback-training passes (csrc/target_prop.h).
// Torch-free: the glue passes filled params structs, the element type and its
// stream; the products between the passes run through cuBLAS in the shared driver.
#pragma once

#include <cuda_runtime_api.h>

#include "../scalar_kind.h"
#include "../target_prop.h"

namespace localgrad::target_prop {

// x = h[r mod B] + eps[r]. Each returns the launch status, which the caller must check.
cudaError_t launch_noisy(const NoisyParams& params, ScalarKind dtype, cudaStream_t stream);

// The gated activations (dtp) or the gated differences and noise (ldrl), in place.
cudaError_t launch_gate(const GateParams& params, ScalarKind dtype, cudaStream_t stream);

// Per-chunk column sums and sums of squares (after a <- a - sub when sub is set).
cudaError_t launch_reduce(const ReduceParams& params, ScalarKind dtype, cudaStream_t stream);

}  // namespace localgrad::target_prop
