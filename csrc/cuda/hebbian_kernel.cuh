// Launchers of the hebbian_update kernels. Torch-free: the glue passes the
// filled params, whether the accumulation type is double, and its stream.
// Each returns the launch status (cudaGetLastError), which the caller checks.
#pragma once

#include <cuda_runtime_api.h>

#include "../hebbian.h"
#include "../scalar_kind.h"

namespace localgrad::hebbian {

cudaError_t launch_power(const PowerParams& params, bool is_double, cudaStream_t stream);
cudaError_t launch_activate(const ActivateParams& params, bool is_double, cudaStream_t stream);
cudaError_t launch_combine(const CombineParams& params, bool is_double, cudaStream_t stream);
cudaError_t launch_finalize(const FinalizeParams& params, bool is_double, ScalarKind out,
                            cudaStream_t stream);

}  // namespace localgrad::hebbian
