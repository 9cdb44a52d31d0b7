#include "sign_feedback_glue.h"

#include <cmath>

#include "checks.h"

namespace localgrad::sign_feedback {

namespace {
constexpr const char* kOp = "sign_feedback";
}

Prepared prepare(const at::Tensor& weight, int64_t seed, int64_t counter, double scale,
                 const at::Tensor& out) {
  check_float(weight, kOp, "weight");
  check_same_dtype(out, weight, kOp, "out", "weight");
  check_same_device(out, weight, kOp, "out", "weight");
  TORCH_CHECK_VALUE(out.sizes() == weight.sizes(), kOp, ": out must have the shape of weight ",
                    weight.sizes(), ", got ", out.sizes());
  TORCH_CHECK_VALUE(out.is_contiguous(), kOp,
                    ": out must be contiguous (an output cannot be copied), got strides ",
                    out.strides());
  check_finite(scale, kOp, "scale");
  TensorRoles roles;
  roles.input(weight, "weight");
  roles.output(out, "out");
  roles.check(kOp);
  Prepared p;
  p.weight = weight.detach().contiguous();  // may require grad: only its data is read
  p.params.weight = p.weight.const_data_ptr();
  p.params.out = out.data_ptr();
  p.params.numel = weight.numel();
  p.params.key = rng::key(static_cast<uint64_t>(seed), static_cast<uint64_t>(counter));
  p.params.scale = scale;
  return p;
}

}  // namespace localgrad::sign_feedback
