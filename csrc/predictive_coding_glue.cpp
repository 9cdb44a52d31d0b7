#include "predictive_coding_glue.h"

#include <cmath>
#include <string>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "checks.h"

namespace localgrad::predictive_coding {

namespace {

constexpr const char* kInfer = "predictive_coding_infer";
constexpr const char* kUpdate = "predictive_coding_update";

std::vector<Activation> check_kinds(at::IntArrayRef kinds, at::ArrayRef<double> slopes, size_t n,
                                    const char* op) {
  TORCH_CHECK_VALUE(kinds.size() == n && slopes.size() == n, op,
                    ": kinds and slopes must have one entry per layer (", n, "), got ", kinds.size(),
                    " and ", slopes.size());
  std::vector<Activation> out;
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK_VALUE(kinds[i] >= static_cast<int64_t>(Activation::Identity) &&
                          kinds[i] < kNumActivations,
                      op, ": kinds[", i, "] = ", kinds[i],
                      " is not an activation of a value node (1 identity, 2 relu, 3 leaky relu, "
                      "4 tanh, 5 sigmoid)");
    TORCH_CHECK_VALUE(std::isfinite(slopes[i]), op, ": slopes[", i, "] must be finite, got ",
                      slopes[i]);
    out.push_back(static_cast<Activation>(kinds[i]));
  }
  return out;
}

// A per-layer tensor of shape (rows, cols), dtype and device of x.
void check_tensor(const at::Tensor& t, const at::Tensor& x, const char* op, const std::string& name,
                  std::vector<int64_t> shape) {
  TORCH_CHECK_VALUE(t.dim() == static_cast<int64_t>(shape.size()), op, ": ", name, " must be ",
                    shape.size(), "-D, got shape ", t.sizes());
  check_same_dtype(t, x, op, name.c_str(), "x");
  check_same_device(t, x, op, name.c_str(), "x");
  TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(shape), op, ": ", name, " must have shape ",
                    at::IntArrayRef(shape), ", got ", t.sizes());
}

at::Tensor activate_aten(const at::Tensor& a, Activation kind, double slope) {
  switch (kind) {
    case Activation::ReLU: return at::relu(a);
    case Activation::LeakyReLU: return at::leaky_relu(a, slope);
    case Activation::Tanh: return at::tanh(a);
    case Activation::Sigmoid: return at::sigmoid(a);
    default: return a;
  }
}

at::Tensor derivative_aten(const at::Tensor& a, Activation kind, double slope) {
  switch (kind) {
    case Activation::ReLU: return (a > 0).to(a.scalar_type());
    case Activation::LeakyReLU:
      return at::where(a > 0, at::ones_like(a), at::full_like(a, slope));
    case Activation::Tanh: {
      const at::Tensor t = at::tanh(a);
      return 1 - t * t;
    }
    case Activation::Sigmoid: {
      const at::Tensor s = at::sigmoid(a);
      return s * (1 - s);
    }
    default: return at::ones_like(a);
  }
}

}  // namespace

void infer_impl(const at::Tensor& x, at::TensorList weights, at::TensorList biases,
                at::TensorList states, at::TensorList errors, const at::Tensor& target,
                at::IntArrayRef kinds, at::ArrayRef<double> slopes, int64_t variant, int64_t loss,
                double output_precision,
                int64_t steps, double gamma, double lr, const Elementwise& backend) {
  // The products below read tensors that may require grad: the op is autograd-free.
  const c10::NoGradGuard no_grad;
  const char* op = kInfer;
  check_dim(x, 2, op, "x", "(batch, n_in)");
  check_real(x, op, "x");
  TORCH_CHECK_VALUE(x.size(1) > 0, op, ": x must have at least one feature");
  const std::vector<int64_t> widths = check_layers(x, weights, biases, kMaxLayers, op);
  const int L = static_cast<int>(weights.size());
  const int64_t batch = x.size(0);
  const std::vector<Activation> kind = check_kinds(kinds, slopes, L, op);
  TORCH_CHECK_VALUE(variant >= 0 && variant < kNumVariants, op, ": variant = ", variant,
                    " is not a variant code (0 il, 1 fpa, 2 zil, 3 ipc)");
  TORCH_CHECK_VALUE(loss >= 0 && loss < kNumLosses, op, ": loss = ", loss,
                    " is not a loss code (0 mse, 1 ce)");
  TORCH_CHECK_VALUE(steps >= 0, op, ": steps must be >= 0, got ", steps);
  TORCH_CHECK_VALUE(std::isfinite(output_precision), op, ": output_precision must be finite, got ",
                    output_precision);
  TORCH_CHECK_VALUE(std::isfinite(gamma), op, ": gamma must be finite, got ", gamma);
  TORCH_CHECK_VALUE(std::isfinite(lr), op, ": lr must be finite, got ", lr);
  TORCH_CHECK_VALUE(states.size() == static_cast<size_t>(L - 1), op,
                    ": states must have one tensor per hidden layer (", L - 1, "), got ",
                    states.size());
  TORCH_CHECK_VALUE(errors.size() == static_cast<size_t>(L), op,
                    ": errors must have one tensor per layer (", L, "), got ", errors.size());
  for (int k = 1; k < L; ++k) {
    const std::string name = item("states", k - 1);
    check_tensor(states[k - 1], x, op, name, {batch, widths[k]});
    check_rows_dense(states[k - 1], op, name.c_str());
  }
  for (int i = 0; i < L; ++i) {
    const std::string name = item("errors", i);
    check_tensor(errors[i], x, op, name, {batch, widths[i + 1]});
    check_rows_dense(errors[i], op, name.c_str());
  }
  check_tensor(target, x, op, "target", {batch, widths[L]});
  const Variant v = static_cast<Variant>(variant);
  {
    // The kernels write states and errors while reading the rest, and iPC
    // writes the weights too (the other variants only read them).
    TensorRoles roles;
    roles.input(x, "x");
    roles.input(target, "target");
    for (int k = 1; k < L; ++k) roles.output(states[k - 1], item("states", k - 1));
    for (int i = 0; i < L; ++i) roles.output(errors[i], item("errors", i));
    for (int i = 0; i < L; ++i) {
      if (v == Variant::IPC) {
        roles.output(weights[i], item("weights", i));
        roles.output(biases[i], item("biases", i));
      } else {
        roles.input(weights[i], item("weights", i));
        roles.input(biases[i], item("biases", i));
      }
    }
    roles.check(op);
  }
  if (batch == 0) return;

  const at::Tensor y = rows_dense(target);
  // fx[i] = f_i(a_i), the input of layer i's product; fx[0] stays fixed.
  std::vector<at::Tensor> fx(L), back(L), dfx(L);
  fx[0] = activate_aten(x, kind[0], slopes[0]);
  for (int k = 1; k < L; ++k) {
    fx[k] = at::empty({batch, widths[k]}, x.options());
    fx[k].copy_(activate_aten(states[k - 1], kind[k], slopes[k]));
    back[k - 1] = at::empty({batch, widths[k]}, x.options());
  }

  ErrorParams ep;
  ep.n_layers = L;
  ep.batch = batch;
  ep.loss = static_cast<Loss>(loss);
  ep.output_precision = output_precision;
  ep.target = y.const_data_ptr();
  ep.target_row_stride = y.stride(0);
  StateParams sp;
  sp.n_hidden = L - 1;
  sp.batch = batch;
  sp.gamma = gamma;
  for (int i = 0; i < L; ++i) {
    ep.eps[i] = errors[i].data_ptr();
    ep.eps_row_stride[i] = errors[i].stride(0);
    ep.width[i] = widths[i + 1];
    if (i < L - 1) {
      ep.state[i] = states[i].const_data_ptr();
      ep.state_row_stride[i] = states[i].stride(0);
      sp.state[i] = states[i].data_ptr();
      sp.state_row_stride[i] = states[i].stride(0);
      sp.eps[i] = errors[i].data_ptr();
      sp.eps_row_stride[i] = errors[i].stride(0);
      sp.back[i] = back[i].const_data_ptr();
      sp.width[i] = widths[i + 1];
      sp.kind[i] = kind[i + 1];
      sp.slope[i] = slopes[i + 1];
    }
  }

  auto predict = [&](int i) {
    at::Tensor out = errors[i];
    at::addmm_out(out, biases[i], fx[i], weights[i].t());
  };
  auto run_errors = [&](int first, int last) {  // layers first..last-1
    if (first >= last) return;
    for (int i = 0; i < L; ++i) ep.active[i] = i >= first && i < last;
    backend.errors(ep);
  };
  auto back_of = [&](int k) {  // back[k-1] = eps[k] W_k
    at::Tensor out = back[k - 1];
    at::mm_out(out, errors[k], weights[k]);
  };
  auto run_states = [&](int first, int last) {  // nodes first..last-1
    if (first >= last) return;
    for (int i = 0; i < L - 1; ++i) sp.active[i] = i + 1 >= first && i + 1 < last;
    backend.states(sp);
  };

  if (v == Variant::ZIL) {
    // The wave: node k = L-1-t moves at step t, from its error under the
    // (still feed-forward) prediction and the error above it, read at its
    // own step; its error then follows its move.
    predict(L - 1);
    run_errors(L - 1, L);
    const int n = static_cast<int>(std::min<int64_t>(steps, L - 1));
    sp.refresh_error = true;
    for (int t = 0; t < n; ++t) {
      const int k = L - 1 - t;
      predict(k - 1);
      run_errors(k - 1, k);
      back_of(k);
      run_states(k, k + 1);
    }
    for (int k = 1; k < L - n; ++k) predict(k - 1);
    run_errors(0, L - 1 - n);
    return;
  }
  if (v == Variant::FPA) {
    // Predictions stay at the initial ones: each error moves with its node.
    for (int i = 0; i < L; ++i) predict(i);
    run_errors(0, L);
    for (int k = 1; k < L; ++k) {
      dfx[k - 1] = derivative_aten(states[k - 1], kind[k], slopes[k]).contiguous();
      sp.dfx[k - 1] = dfx[k - 1].const_data_ptr();
    }
    sp.refresh_error = true;
    for (int64_t t = 0; t < steps; ++t) {
      for (int k = 1; k < L; ++k) back_of(k);
      run_states(1, L);
    }
    return;
  }
  for (int k = 1; k < L; ++k) sp.fx[k - 1] = fx[k].data_ptr();
  // IL: the first hidden layer's prediction W_0 f(x) + b_0 is the same every
  // step (x clamped, weights fixed), and for the input-side layer usually the
  // largest product: made once. iPC moves W_0, so it recomputes it.
  at::Tensor drive;
  if (v == Variant::IL && L > 1) {
    drive = at::addmm(biases[0], fx[0], weights[0].t());
    ep.mu[0] = drive.const_data_ptr();
  }
  const int first_predicted = drive.defined() ? 1 : 0;
  for (int64_t t = 0; t < steps; ++t) {
    for (int i = first_predicted; i < L; ++i) predict(i);
    run_errors(0, L);
    for (int k = 1; k < L; ++k) back_of(k);
    if (v == Variant::IPC) {
      // Weights move with the states, from the same errors and activities.
      for (int i = 0; i < L; ++i) {
        at::Tensor w = weights[i], b = biases[i];
        w.addmm_(errors[i].t(), fx[i], /*beta=*/1, /*alpha=*/lr);
        b.add_(errors[i].sum(0), lr);
      }
    }
    run_states(1, L);
  }
  for (int i = first_predicted; i < L; ++i) predict(i);
  run_errors(0, L);
}

void update_impl(const at::Tensor& x, at::TensorList states, at::TensorList errors,
                 at::IntArrayRef kinds, at::ArrayRef<double> slopes, double scale,
                 at::TensorList weight_grads, at::TensorList bias_grads) {
  // The products below read tensors that may require grad: the op is autograd-free.
  const c10::NoGradGuard no_grad;
  const char* op = kUpdate;
  check_dim(x, 2, op, "x", "(batch, n_in)");
  check_real(x, op, "x");
  TORCH_CHECK_VALUE(std::isfinite(scale), op, ": scale must be finite, got ", scale);
  TORCH_CHECK_VALUE(!errors.empty(), op, ": errors must hold at least one layer");
  TORCH_CHECK_VALUE(static_cast<int64_t>(errors.size()) <= kMaxLayers, op, ": at most ",
                    kMaxLayers, " layers, got ", errors.size());
  const size_t L = errors.size();
  const int64_t batch = x.size(0);
  const std::vector<Activation> kind = check_kinds(kinds, slopes, L, op);
  TORCH_CHECK_VALUE(states.size() == L - 1, op, ": states must have one tensor per hidden layer (",
                    L - 1, "), got ", states.size());
  TORCH_CHECK_VALUE(weight_grads.size() == L && bias_grads.size() == L, op,
                    ": weight_grads and bias_grads must have one tensor per layer (", L, "), got ",
                    weight_grads.size(), " and ", bias_grads.size());
  std::vector<int64_t> widths{x.size(1)};
  for (size_t i = 0; i < L; ++i) {
    const std::string name = item("errors", i);
    check_dim(errors[i], 2, op, name.c_str(), "(batch, width)");
    check_tensor(errors[i], x, op, name, {batch, errors[i].size(1)});
    widths.push_back(errors[i].size(1));
  }
  for (size_t k = 1; k < L; ++k) check_tensor(states[k - 1], x, op, item("states", k - 1), {batch, widths[k]});
  TensorRoles roles;
  roles.input(x, "x");
  for (size_t i = 0; i < L; ++i) {
    check_tensor(weight_grads[i], x, op, item("weight_grads", i), {widths[i + 1], widths[i]});
    check_tensor(bias_grads[i], x, op, item("bias_grads", i), {widths[i + 1]});
    roles.output(weight_grads[i], item("weight_grads", i));
    roles.output(bias_grads[i], item("bias_grads", i));
    roles.input(errors[i], item("errors", i));
    if (i + 1 < L) roles.input(states[i], item("states", i));
  }
  roles.check(op);
  for (size_t i = 0; i < L; ++i) {
    at::Tensor gw = weight_grads[i], gb = bias_grads[i];
    const at::Tensor pre = activate_aten(i == 0 ? x : states[i - 1], kind[i], slopes[i]);
    at::mm_out(gw, errors[i].t(), pre);
    gw.mul_(scale);
    at::sum_out(gb, errors[i], {0});
    gb.mul_(scale);
  }
}

}  // namespace localgrad::predictive_coding
