#include "eqprop_glue.h"

#include <cmath>
#include <string>

#include <ATen/ATen.h>

#include "checks.h"

namespace localgrad::eqprop {

namespace {

constexpr const char* kRelax = "eqprop_relax";
constexpr const char* kUpdate = "eqprop_update";

// Checks one list of per-layer tensors against x and the widths.
void check_states(at::TensorList states, const at::Tensor& x,
                  const std::vector<int64_t>& widths, const char* op, const char* list) {
  const size_t n_layers = widths.size() - 1;
  TORCH_CHECK_VALUE(states.size() == n_layers, op, ": ", list, " must have one tensor per layer (",
                    n_layers, "), got ", states.size());
  for (size_t i = 0; i < n_layers; ++i) {
    const std::string name = item(list, i);
    const at::Tensor& s = states[i];
    check_dim(s, 2, op, name.c_str(), "(batch, width)");
    check_same_dtype(s, x, op, name.c_str(), "x");
    check_same_device(s, x, op, name.c_str(), "x");
    TORCH_CHECK_VALUE(s.size(0) == x.size(0) && s.size(1) == widths[i + 1], op, ": ", name,
                      " must have shape (", x.size(0), ", ", widths[i + 1],
                      ") (batch of x, width of layer ", i + 1, "), got ", s.sizes());
  }
}

}  // namespace

PreparedRelax prepare_relax(const at::Tensor& x, at::TensorList weights,
                            at::TensorList biases, at::TensorList states,
                            const std::optional<at::Tensor>& target, double beta,
                            int64_t nudge, int64_t activation, int64_t steps,
                            double tol) {
  check_dim(x, 2, kRelax, "x", "(batch, n_in)");
  check_real(x, kRelax, "x");
  TORCH_CHECK_VALUE(x.size(1) > 0, kRelax, ": x must have at least one feature");
  PreparedRelax p;
  p.widths = check_layers(x, weights, biases, kMaxLayers, kRelax);
  check_states(states, x, p.widths, kRelax, "states");
  for (size_t i = 0; i < states.size(); ++i) {
    check_rows_dense(states[i], kRelax, item("states", i).c_str());
  }
  TORCH_CHECK_VALUE(nudge >= 0 && nudge < kNumNudges, kRelax, ": nudge = ", nudge,
                    " is not a nudge code (0 free, 1 mse, 2 ce, 3 clamp)");
  TORCH_CHECK_VALUE(activation >= 0 && activation < kNumSigmas, kRelax, ": activation = ",
                    activation, " is not an activation code (0 hardsigmoid, 1 sigmoid, 2 tanh)");
  TORCH_CHECK_VALUE(steps >= 0, kRelax, ": steps must be >= 0, got ", steps);
  TORCH_CHECK_VALUE(std::isfinite(beta), kRelax, ": beta must be finite, got ", beta);
  TORCH_CHECK_VALUE(!std::isnan(tol), kRelax, ": tol must not be NaN");
  p.nudge = static_cast<Nudge>(nudge);
  p.sigma = static_cast<Sigma>(activation);
  if (p.nudge != Nudge::Free) {
    TORCH_CHECK_VALUE(target.has_value() && target->defined(), kRelax,
                      ": a nudged or clamped phase (nudge = ", nudge, ") needs a target");
    const at::Tensor& t = *target;
    check_dim(t, 2, kRelax, "target", "(batch, n_out)");
    check_same_dtype(t, x, kRelax, "target", "x");
    check_same_device(t, x, kRelax, "target", "x");
    TORCH_CHECK_VALUE(t.size(0) == x.size(0) && t.size(1) == p.widths.back(), kRelax,
                      ": target must have shape (", x.size(0), ", ", p.widths.back(),
                      ") (batch of x, output width), got ", t.sizes());
    p.target = rows_dense(t.detach());
  }
  TensorRoles roles;
  roles.input(x, "x");
  for (size_t i = 0; i < weights.size(); ++i) {
    roles.input(weights[i], item("weights", i));
    roles.input(biases[i], item("biases", i));
  }
  if (p.nudge != Nudge::Free) roles.input(*target, "target");
  for (size_t i = 0; i < states.size(); ++i) roles.output(states[i], item("states", i));
  roles.check(kRelax);
  // Inputs may require grad: the op reads their data and records nothing
  // (the ATen products below must not try to).
  p.x = rows_dense(x.detach());
  for (size_t i = 0; i < weights.size(); ++i) {
    p.weights.push_back(weights[i].detach().contiguous());
    p.weights_t.push_back(p.weights.back().t());
    p.biases.push_back(biases[i].detach().contiguous());
  }
  return p;
}

std::vector<std::vector<int>> update_groups(int n_layers, Nudge nudge, bool async_update) {
  const int last = nudge == Nudge::Clamp ? n_layers - 1 : n_layers;
  std::vector<std::vector<int>> groups(async_update ? 2 : 1);
  for (int j = 0; j < last; ++j) {
    // State j holds layer k = j + 1; even layers go first.
    const bool even_layer = (j + 1) % 2 == 0;
    groups[async_update && !even_layer ? 1 : 0].push_back(j);
  }
  return groups;
}

namespace {
// Called several times per relaxation step on small products: skip the
// dispatcher when the dtype already matches (always, on CPU).
at::Tensor as_acc(const at::Tensor& t, at::ScalarType acc) {
  return t.scalar_type() == acc ? t : t.to(acc);
}
}  // namespace

void compute_pre(const PreparedRelax& p, const at::Tensor& drive, at::TensorList states,
                 const std::vector<int>& group, std::vector<at::Tensor>& pre) {
  const int n_layers = static_cast<int>(p.weights.size());
  const auto acc = drive.scalar_type();
  for (int j : group) {
    at::Tensor& out = pre[j];
    const bool has_above = j + 1 < n_layers;
    const at::Tensor above = has_above ? as_acc(states[j + 1], acc) : at::Tensor();
    if (j == 0) {
      if (has_above) {
        at::addmm_out(out, drive, above, as_acc(p.weights[1], acc));
      } else {
        out.copy_(drive);
      }
      continue;
    }
    at::addmm_out(out, as_acc(p.biases[j], acc), as_acc(states[j - 1], acc), as_acc(p.weights_t[j], acc));
    if (has_above) out.addmm_(above, as_acc(p.weights[j + 1], acc));
  }
}

void check_update(const at::Tensor& x, at::TensorList states_a, at::TensorList states_b,
                  double scale, at::TensorList weight_grads, at::TensorList bias_grads) {
  check_dim(x, 2, kUpdate, "x", "(batch, n_in)");
  check_real(x, kUpdate, "x");
  TORCH_CHECK_VALUE(std::isfinite(scale), kUpdate, ": scale must be finite, got ", scale);
  TORCH_CHECK_VALUE(!states_a.empty(), kUpdate, ": states_a must hold at least one layer");
  std::vector<int64_t> widths{x.size(1)};
  for (const at::Tensor& s : states_a) widths.push_back(s.dim() == 2 ? s.size(1) : -1);
  check_states(states_a, x, widths, kUpdate, "states_a");
  check_states(states_b, x, widths, kUpdate, "states_b");
  const size_t n_layers = states_a.size();
  TORCH_CHECK_VALUE(weight_grads.size() == n_layers && bias_grads.size() == n_layers, kUpdate,
                    ": weight_grads and bias_grads must have one tensor per layer (", n_layers,
                    "), got ", weight_grads.size(), " and ", bias_grads.size());
  for (size_t i = 0; i < n_layers; ++i) {
    const std::string wname = item("weight_grads", i), bname = item("bias_grads", i);
    const at::Tensor& gw = weight_grads[i];
    const at::Tensor& gb = bias_grads[i];
    check_same_dtype(gw, x, kUpdate, wname.c_str(), "x");
    check_same_device(gw, x, kUpdate, wname.c_str(), "x");
    check_same_dtype(gb, x, kUpdate, bname.c_str(), "x");
    check_same_device(gb, x, kUpdate, bname.c_str(), "x");
    TORCH_CHECK_VALUE(gw.dim() == 2 && gw.size(0) == widths[i + 1] && gw.size(1) == widths[i],
                      kUpdate, ": ", wname, " must have shape (", widths[i + 1], ", ", widths[i],
                      "), got ", gw.sizes());
    TORCH_CHECK_VALUE(gb.dim() == 1 && gb.size(0) == widths[i + 1], kUpdate, ": ", bname,
                      " must have shape (", widths[i + 1], ",), got ", gb.sizes());
  }
  TensorRoles roles;
  roles.input(x, "x");
  for (size_t i = 0; i < n_layers; ++i) {
    roles.input(states_a[i], item("states_a", i));
    roles.input(states_b[i], item("states_b", i));
  }
  for (size_t i = 0; i < n_layers; ++i) {
    roles.output(weight_grads[i], item("weight_grads", i));
    roles.output(bias_grads[i], item("bias_grads", i));
  }
  roles.check(kUpdate);
}

void eqprop_update_impl(const at::Tensor& x_in, at::TensorList states_a,
                        at::TensorList states_b, double scale,
                        at::TensorList weight_grads, at::TensorList bias_grads) {
  check_update(x_in, states_a, states_b, scale, weight_grads, bias_grads);
  const size_t n_layers = states_a.size();
  // Inputs may require grad; the products read their data only.
  const at::Tensor x = x_in.detach();
  std::vector<at::Tensor> a, b;
  for (size_t i = 0; i < n_layers; ++i) {
    a.push_back(states_a[i].detach());
    b.push_back(states_b[i].detach());
  }
  // a_{i+1}^T a_i - b_{i+1}^T b_i = (a_{i+1} - b_{i+1})^T a_i + b_{i+1}^T (a_i - b_i):
  // the phases differ by O(beta), and products of the differences keep the
  // digits that subtracting two full products would cancel (and give exactly
  // zero for equal phases).
  std::vector<at::Tensor> diffs;
  for (size_t i = 0; i < n_layers; ++i) diffs.push_back(a[i] - b[i]);
  for (size_t i = 0; i < n_layers; ++i) {
    at::Tensor gw = weight_grads[i];  // handles to the caller's buffers
    at::Tensor gb = bias_grads[i];
    // beta = 0: what the buffers held (NaN included) is ignored.
    at::addmm_out(gw, gw, diffs[i].t(), i == 0 ? x : a[i - 1], /*beta=*/0, /*alpha=*/scale);
    if (i > 0) gw.addmm_(b[i].t(), diffs[i - 1], /*beta=*/1, /*alpha=*/scale);
    at::sum_out(gb, diffs[i], {0});
    gb.mul_(scale);
  }
}

}  // namespace localgrad::eqprop
