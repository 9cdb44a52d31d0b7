// CPU sign_feedback: one parallel elementwise pass over the weight.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../sign_feedback_glue.h"

namespace localgrad::sign_feedback {
namespace {

template <typename scalar_t, bool kRandomMagnitude>
void fill(const Params& p) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto* w = static_cast<const scalar_t*>(p.weight);
  auto* out = static_cast<scalar_t*>(p.out);
  const auto scale = static_cast<acc_t>(p.scale);
  at::parallel_for(0, p.numel, 32768, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if constexpr (kRandomMagnitude) {
        out[i] = static_cast<scalar_t>(random_sign(static_cast<acc_t>(w[i]), p, i));
      } else {
        out[i] = static_cast<scalar_t>(uniform_sign(static_cast<acc_t>(w[i]), scale));
      }
    }
  });
}

void sign_feedback_cpu(const at::Tensor& weight, int64_t seed, int64_t counter, double scale,
                       bool random_magnitude, const at::Tensor& out) {
  const Prepared prepared = prepare(weight, seed, counter, scale, out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, weight.scalar_type(),
                                  "sign_feedback_cpu", [&] {
    if (random_magnitude) {
      fill<scalar_t, true>(prepared.params);
    } else {
      fill<scalar_t, false>(prepared.params);
    }
  });
}

}  // namespace
}  // namespace localgrad::sign_feedback

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("sign_feedback", &localgrad::sign_feedback::sign_feedback_cpu);
}
