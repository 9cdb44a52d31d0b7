// CPU Equilibrium Propagation. Relaxation: each half-step computes the
// pre-activations of the layers it updates with BLAS products (the input drive
// W_0 x + b_0 once per call), then one parallel pass over rows applies sigma and
// the nudge, writes the live rows and records how far each row moved.
// The update is device-independent ATen (eqprop_glue.cpp).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../eqprop_glue.h"

namespace localgrad::eqprop {
namespace {

template <typename scalar_t, Sigma kSigma, Nudge kNudge>
void apply_rows(const std::vector<int>& group, int n_layers, const std::vector<at::Tensor>& pre,
                at::TensorList states, const at::Tensor& target, double beta,
                const std::vector<uint8_t>& active, std::vector<scalar_t>& delta,
                int64_t row_begin, int64_t row_end) {
  const scalar_t b = static_cast<scalar_t>(beta);
  for (int j : group) {
    const int64_t width = states[j].size(1);
    const int64_t stride = states[j].stride(0);
    scalar_t* state = states[j].data_ptr<scalar_t>();
    const scalar_t* p = pre[j].const_data_ptr<scalar_t>();
    const bool nudged_output =
        j == n_layers - 1 && (kNudge == Nudge::Mse || kNudge == Nudge::CrossEntropy);
    for (int64_t r = row_begin; r < row_end; ++r) {
      if (!active[r]) continue;
      scalar_t* s = state + r * stride;
      const scalar_t* u = p + r * width;
      scalar_t moved = delta[r];
      if (nudged_output) {
        const scalar_t* y = target.const_data_ptr<scalar_t>() + r * target.stride(0);
        // Softmax of the old output row, taken before any unit is overwritten.
        scalar_t shift = 0, log_norm = 0;
        if constexpr (kNudge == Nudge::CrossEntropy) {
          shift = *std::max_element(s, s + width);
          scalar_t sum = 0;
          for (int64_t c = 0; c < width; ++c) sum += std::exp(s[c] - shift);
          log_norm = std::log(sum);
        }
        for (int64_t c = 0; c < width; ++c) {
          scalar_t grad;
          if constexpr (kNudge == Nudge::CrossEntropy) {
            grad = std::exp(s[c] - shift - log_norm) - y[c];
          } else {
            grad = s[c] - y[c];
          }
          const scalar_t v = apply_sigma<kSigma>(u[c] - b * grad);
          moved = std::max(moved, std::abs(v - s[c]));
          s[c] = v;
        }
      } else {
        for (int64_t c = 0; c < width; ++c) {
          const scalar_t v = apply_sigma<kSigma>(u[c]);
          moved = std::max(moved, std::abs(v - s[c]));
          s[c] = v;
        }
      }
      delta[r] = moved;
    }
  }
}

at::Tensor eqprop_relax_cpu(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                            at::TensorList states, const std::optional<at::Tensor>& target,
                            double beta, int64_t nudge, int64_t activation, int64_t steps,
                            bool async_update, double tol) {
  PreparedRelax p = prepare_relax(x, weights, biases, states, target, beta, nudge, activation,
                                  steps, tol);
  const int64_t batch = x.size(0);
  const int n_layers = static_cast<int>(p.weights.size());
  at::Tensor ran = at::zeros({batch}, x.options().dtype(at::kLong));
  if (p.nudge == Nudge::Clamp) states[n_layers - 1].copy_(p.target);
  if (batch == 0 || steps == 0) return ran;

  const at::Tensor drive = at::addmm(p.biases[0], p.x, p.weights[0].t());
  std::vector<at::Tensor> pre(n_layers);
  for (int j = 0; j < n_layers; ++j) pre[j] = at::empty({batch, p.widths[j + 1]}, x.options());
  const auto groups = update_groups(n_layers, p.nudge, async_update);
  std::vector<uint8_t> active(batch, 1);
  int64_t* ran_ptr = ran.data_ptr<int64_t>();
  const int64_t total_width = std::accumulate(p.widths.begin() + 1, p.widths.end(), int64_t{0});
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(total_width, 1));

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eqprop_relax_cpu", [&] {
    std::vector<scalar_t> delta(batch);
    for (int64_t t = 0; t < steps; ++t) {
      if (std::none_of(active.begin(), active.end(), [](uint8_t a) { return a != 0; })) break;
      std::fill(delta.begin(), delta.end(), scalar_t(0));
      for (const auto& group : groups) {
        if (group.empty()) continue;
        compute_pre(p, drive, states, group, pre);
        at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
          LOCALGRAD_DISPATCH_SIGMA(p.sigma, [&] {
            LOCALGRAD_DISPATCH_NUDGE(p.nudge, [&] {
              apply_rows<scalar_t, kSigma, kNudge>(group, n_layers, pre, states, p.target, beta,
                                                    active, delta, begin, end);
            });
          });
        });
      }
      for (int64_t r = 0; r < batch; ++r) {
        if (!active[r]) continue;
        ++ran_ptr[r];
        if (delta[r] < tol) active[r] = 0;
      }
    }
  });
  return ran;
}

void eqprop_update_cpu(const at::Tensor& x, at::TensorList states_a, at::TensorList states_b,
                       double scale, at::TensorList weight_grads, at::TensorList bias_grads) {
  eqprop_update_impl(x, states_a, states_b, scale, weight_grads, bias_grads);
}

}  // namespace
}  // namespace localgrad::eqprop

TORCH_LIBRARY_IMPL(localgrad, CPU, m) {
  m.impl("eqprop_relax", &localgrad::eqprop::eqprop_relax_cpu);
  m.impl("eqprop_update", &localgrad::eqprop::eqprop_update_cpu);
}
