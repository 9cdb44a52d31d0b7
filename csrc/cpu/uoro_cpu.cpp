// CPU uoro_step: W_hh s̃ by BLAS, then per batch element the norms and the
// rank-one update in two passes over its θ̃.
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../online_rnn_glue.h"

namespace localgrad::uoro {
namespace {

// v_k = [x | mask_k ⊙ h | 1] written out as the row's three contiguous
// segments, so the loops over a θ̃ row vectorise.
template <typename scalar_t, typename F>
inline void for_row(const scalar_t* x, const scalar_t* h, const scalar_t* m, int64_t input, int64_t hidden,
                    F&& f) {
  for (int64_t c = 0; c < input; ++c) f(c, x[c]);
  if (m == nullptr) {
    for (int64_t j = 0; j < hidden; ++j) f(input + j, h[j]);
  } else {
    for (int64_t j = 0; j < hidden; ++j) f(input + j, h[j] * m[j]);
  }
  f(input + hidden, scalar_t(1));
}

template <typename scalar_t>
void step(const StepParams& q) {
  const int64_t cols = q.input + q.hidden + 1;
  const int64_t width = q.hidden * cols;
  auto* s_out = static_cast<scalar_t*>(q.s_out);
  auto* theta_out = static_cast<scalar_t*>(q.theta_out);
  const auto* s = static_cast<const scalar_t*>(q.s_tilde);
  const auto* theta = static_cast<const scalar_t*>(q.theta_tilde);
  const auto* ws = static_cast<const scalar_t*>(q.ws);
  const auto* nu = static_cast<const scalar_t*>(q.nu);
  const auto* dphi = static_cast<const scalar_t*>(q.dphi);
  const auto* xs = static_cast<const scalar_t*>(q.x);
  const auto* hs = static_cast<const scalar_t*>(q.h_prev);
  const auto* mask = static_cast<const scalar_t*>(q.mask);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha), eps = static_cast<scalar_t>(q.eps);
  at::parallel_for(0, q.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b * q.hidden;
      const scalar_t* x = xs + b * q.input;
      const scalar_t* h = hs + o;
      scalar_t js2 = 0, nu2 = 0, theta2 = 0, dtheta2 = 0;
      for (int64_t k = 0; k < q.hidden; ++k) {
        const scalar_t js = (1 - alpha) * s[o + k] + alpha * dphi[o + k] * ws[o + k];
        js2 += js * js;
        nu2 += nu[o + k] * nu[o + k];
        const scalar_t g = alpha * nu[o + k] * dphi[o + k];
        const scalar_t* m = mask == nullptr ? nullptr : mask + k * q.hidden;
        const scalar_t* t = theta + b * width + k * cols;
        for_row(x, h, m, q.input, q.hidden, [&](int64_t c, scalar_t v) {
          dtheta2 += (g * v) * (g * v);
          theta2 += t[c] * t[c];
        });
      }
      const scalar_t rho0 = std::sqrt((std::sqrt(theta2) + eps) / (std::sqrt(js2) + eps));
      const scalar_t rho1 = std::sqrt((std::sqrt(dtheta2) + eps) / (std::sqrt(nu2) + eps));
      for (int64_t k = 0; k < q.hidden; ++k) {
        const scalar_t js = (1 - alpha) * s[o + k] + alpha * dphi[o + k] * ws[o + k];
        s_out[o + k] = rho0 * js + rho1 * nu[o + k];
        const scalar_t g = alpha * nu[o + k] * dphi[o + k];
        const scalar_t* m = mask == nullptr ? nullptr : mask + k * q.hidden;
        const scalar_t* t = theta + b * width + k * cols;
        scalar_t* out = theta_out + b * width + k * cols;
        for_row(x, h, m, q.input, q.hidden, [&](int64_t c, scalar_t v) { out[c] = t[c] / rho0 + g * v / rho1; });
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> uoro_step_cpu(const at::Tensor& s_tilde, const at::Tensor& theta_tilde,
                                                 const at::Tensor& weight_hh, const at::Tensor& nu,
                                                 const at::Tensor& h_prev, const at::Tensor& x,
                                                 const at::Tensor& dphi, const std::optional<at::Tensor>& hh_mask,
                                                 double alpha, double eps) {
  auto p = online_rnn::prepare_uoro(s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, alpha, eps);
  const at::Tensor ws = at::mm(p.s_tilde, p.weight_hh.t()).contiguous();
  at::Tensor s_out = at::empty(s_tilde.sizes(), s_tilde.options());
  at::Tensor theta_out = at::empty(theta_tilde.sizes(), theta_tilde.options());
  p.params.ws = ws.const_data_ptr();
  p.params.s_out = s_out.data_ptr();
  p.params.theta_out = theta_out.data_ptr();
  AT_DISPATCH_FLOATING_TYPES(s_tilde.scalar_type(), "uoro_step_cpu", [&] { step<scalar_t>(p.params); });
  return {s_out, theta_out};
}

}  // namespace
}  // namespace localgrad::uoro

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("uoro_step", &localgrad::uoro::uoro_step_cpu);
}
