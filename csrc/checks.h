// Argument checks shared by every op's glue. Each message starts with the op
// and names the argument, so a user can tell which of their tensors is wrong.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "scalar_kind.h"

namespace localgrad {

inline bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf ||
         t == at::kBFloat16;
}

inline ScalarKind scalar_kind(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return ScalarKind::Float64;
    case at::kHalf: return ScalarKind::Float16;
    case at::kBFloat16: return ScalarKind::BFloat16;
    default: return ScalarKind::Float32;
  }
}

inline void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(is_supported_float(t.scalar_type()), op, ": ", name,
                   " must be float32, float64, float16 or bfloat16, got ",
                   t.scalar_type());
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* op,
                      const char* name, const char* shape) {
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": ", name, " must be ", dim, "-D ",
                    shape, ", got shape ", t.sizes());
}

inline void check_same_dtype(const at::Tensor& t, const at::Tensor& ref,
                             const char* op, const char* name,
                             const char* ref_name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": ", name,
                   " must have the dtype of ", ref_name, " (",
                   ref.scalar_type(), "), got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& t, const at::Tensor& ref,
                              const char* op, const char* name,
                              const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name,
              " must be on the device of ", ref_name, " (", ref.device(),
              "), got ", t.device());
}

// Kernels address rows by a stride and columns densely; anything else is
// copied for inputs, and refused for outputs (a copy would not be written back).
inline at::Tensor rows_dense(const at::Tensor& t) {
  return (t.size(1) <= 1 || t.stride(1) == 1) ? t : t.contiguous();
}

inline void check_rows_dense(const at::Tensor& t, const char* op,
                             const char* name) {
  TORCH_CHECK_VALUE(t.size(1) <= 1 || t.stride(1) == 1, op, ": ", name,
                    " must have unit stride along its last dimension (an "
                    "output cannot be copied), got strides ", t.strides());
}

}  // namespace localgrad
