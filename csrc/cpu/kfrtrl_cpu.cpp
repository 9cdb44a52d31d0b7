// CPU kfrtrl_step: W_hh A by ATen (batched matmul), then per batch element
// one pass for the norms and one for the signed rank-one update (rank 1), or
// one pass writing the r + 1 unreduced terms (rank ≥ 2).
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../online_rnn_glue.h"

namespace localgrad::kfrtrl {
namespace {

// v = [x | h_prev | 1], written out segment by segment so the loops vectorise.
template <typename scalar_t, typename F>
inline void for_input(const scalar_t* x, const scalar_t* h, int64_t input, int64_t hidden, F&& f) {
  for (int64_t c = 0; c < input; ++c) f(c, x[c]);
  for (int64_t j = 0; j < hidden; ++j) f(input + j, h[j]);
  f(input + hidden, scalar_t(1));
}

template <typename scalar_t>
struct Sample {
  const scalar_t *u, *a, *wa, *x, *h, *dphi;
};

template <typename scalar_t>
Sample<scalar_t> sample(const StepParams& q, int64_t b) {
  const int64_t cols = q.input + q.hidden + 1, square = q.hidden * q.hidden;
  return {static_cast<const scalar_t*>(q.u) + b * q.rank * cols,
          static_cast<const scalar_t*>(q.a) + b * q.rank * square,
          static_cast<const scalar_t*>(q.wa) + b * q.rank * square,
          static_cast<const scalar_t*>(q.x) + b * q.input,
          static_cast<const scalar_t*>(q.h_prev) + b * q.hidden,
          static_cast<const scalar_t*>(q.dphi) + b * q.hidden};
}

// Rank 1: J A, the four norms, ρ0, ρ1 and the signed update of u and A.
template <typename scalar_t>
void reduce(const StepParams& q) {
  const int64_t hidden = q.hidden, cols = q.input + hidden + 1, square = hidden * hidden;
  auto* u_out = static_cast<scalar_t*>(q.u_out);
  auto* a_out = static_cast<scalar_t*>(q.a_out);
  const auto* signs = static_cast<const scalar_t*>(q.signs);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha), eps = static_cast<scalar_t>(q.eps);
  at::parallel_for(0, q.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const Sample<scalar_t> s = sample<scalar_t>(q, b);
      scalar_t ja2 = 0, u2 = 0, d2 = 0, v2 = 0;
      for (int64_t k = 0; k < hidden; ++k) {
        const scalar_t ad = alpha * s.dphi[k];
        d2 += ad * ad;
        const scalar_t* a = s.a + k * hidden;
        const scalar_t* wa = s.wa + k * hidden;
        for (int64_t i = 0; i < hidden; ++i) {
          const scalar_t ja = (1 - alpha) * a[i] + ad * wa[i];
          ja2 += ja * ja;
        }
      }
      for (int64_t c = 0; c < cols; ++c) u2 += s.u[c] * s.u[c];
      for_input(s.x, s.h, q.input, hidden, [&](int64_t, scalar_t v) { v2 += v * v; });
      const scalar_t rho0 = std::sqrt((std::sqrt(ja2) + eps) / (std::sqrt(u2) + eps));
      const scalar_t rho1 = std::sqrt((std::sqrt(d2) + eps) / (std::sqrt(v2) + eps));
      const scalar_t s0 = signs[2 * b], s1 = signs[2 * b + 1];
      const scalar_t keep_u = s0 * rho0, new_u = s1 * rho1, keep_a = s0 / rho0, new_a = s1 / rho1;
      scalar_t* uo = u_out + b * cols;
      for_input(s.x, s.h, q.input, hidden, [&](int64_t c, scalar_t v) { uo[c] = keep_u * s.u[c] + new_u * v; });
      // new_a times the off-diagonal zeros of α D: 0, or NaN when ρ1 is not
      // finite, as in the reference (a non-finite input poisons all of A).
      const scalar_t off_diagonal = new_a * scalar_t(0);
      scalar_t* ao = a_out + b * square;
      for (int64_t k = 0; k < hidden; ++k) {
        const scalar_t ad = alpha * s.dphi[k];
        const scalar_t* a = s.a + k * hidden;
        const scalar_t* wa = s.wa + k * hidden;
        for (int64_t i = 0; i < hidden; ++i)
          ao[k * hidden + i] = keep_a * ((1 - alpha) * a[i] + ad * wa[i]) + off_diagonal;
        ao[k * hidden + k] += new_a * ad;
      }
    }
  });
}

// Rank ≥ 2: [u_0..u_{r-1} | v] and [J A_0..J A_{r-1} | α D], unreduced.
template <typename scalar_t>
void terms(const StepParams& q) {
  const int64_t hidden = q.hidden, cols = q.input + hidden + 1, square = hidden * hidden, r = q.rank;
  auto* u_out = static_cast<scalar_t*>(q.u_out);
  auto* a_out = static_cast<scalar_t*>(q.a_out);
  const scalar_t alpha = static_cast<scalar_t>(q.alpha);
  at::parallel_for(0, q.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const Sample<scalar_t> s = sample<scalar_t>(q, b);
      scalar_t* uo = u_out + b * (r + 1) * cols;
      for (int64_t p = 0; p < r * cols; ++p) uo[p] = s.u[p];
      for_input(s.x, s.h, q.input, hidden, [&](int64_t c, scalar_t v) { uo[r * cols + c] = v; });
      scalar_t* ao = a_out + b * (r + 1) * square;
      for (int64_t j = 0; j < r; ++j)
        for (int64_t k = 0; k < hidden; ++k) {
          const scalar_t ad = alpha * s.dphi[k];
          const int64_t row = (j * hidden + k) * hidden;
          for (int64_t i = 0; i < hidden; ++i) ao[row + i] = (1 - alpha) * s.a[row + i] + ad * s.wa[row + i];
        }
      scalar_t* diag = ao + r * square;
      for (int64_t p = 0; p < square; ++p) diag[p] = 0;
      for (int64_t k = 0; k < hidden; ++k) diag[k * hidden + k] = alpha * s.dphi[k];
    }
  });
}

std::tuple<at::Tensor, at::Tensor> kfrtrl_step_cpu(const at::Tensor& u, const at::Tensor& A,
                                                   const at::Tensor& weight_hh, const at::Tensor& signs,
                                                   const at::Tensor& h_prev, const at::Tensor& x,
                                                   const at::Tensor& dphi, double alpha, double eps,
                                                   bool check_signs) {
  auto p = online_rnn::prepare_kfrtrl(u, A, weight_hh, signs, h_prev, x, dphi, alpha, eps, check_signs);
  auto& q = p.params;
  const at::Tensor wa = at::matmul(p.weight_hh, p.a).contiguous();
  const int64_t terms_out = q.rank == 1 ? 1 : q.rank + 1;
  at::Tensor u_out = at::empty({q.batch, terms_out, u.size(2)}, u.options());
  at::Tensor a_out = at::empty({q.batch, terms_out, q.hidden, q.hidden}, A.options());
  q.wa = wa.const_data_ptr();
  q.u_out = u_out.data_ptr();
  q.a_out = a_out.data_ptr();
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "kfrtrl_step_cpu", [&] {
    if (q.rank == 1)
      reduce<scalar_t>(q);
    else
      terms<scalar_t>(q);
  });
  return {u_out, a_out};
}

}  // namespace
}  // namespace localgrad::kfrtrl

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("kfrtrl_step", &localgrad::kfrtrl::kfrtrl_step_cpu);
}
