// Argument checks for sign_feedback, shared by the CPU and CUDA backends.
#pragma once

#include <ATen/core/Tensor.h>

#include "sign_feedback.h"

namespace localgrad::sign_feedback {

struct Prepared {
  at::Tensor weight;  // contiguous (a copy if the caller's was not)
  Params params;
};

Prepared prepare(const at::Tensor& weight, int64_t seed, int64_t counter, double scale,
                 const at::Tensor& out);

}  // namespace localgrad::sign_feedback
