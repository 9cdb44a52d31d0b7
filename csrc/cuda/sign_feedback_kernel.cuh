// Launcher of the sign-concordant feedback kernel (torch-free).
#pragma once

#include <cuda_runtime_api.h>

#include "../scalar_kind.h"
#include "../sign_feedback.h"

namespace localgrad::sign_feedback {

cudaError_t launch(const Params& params, bool random_magnitude, ScalarKind dtype,
                   cudaStream_t stream);

}  // namespace localgrad::sign_feedback
