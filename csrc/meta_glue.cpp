#include "meta_glue.h"

#include <cmath>

#include <ATen/ATen.h>

#include "checks.h"

namespace localgrad::meta {

namespace {
constexpr const char* kForward = "plastic_episode";
constexpr const char* kBackward = "plastic_episode_backward";

void check_like(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name,
                const char* ref_name) {
  check_same_dtype(t, ref, op, name, ref_name);
  check_same_device(t, ref, op, name, ref_name);
}

void check_shape(const at::Tensor& t, at::IntArrayRef want, const char* op, const char* name,
                 const char* meaning) {
  TORCH_CHECK_VALUE(t.sizes() == want, op, ": ", name, " must have shape ", want, " ", meaning, ", got ",
                    t.sizes());
}

// eta = 1 forgets H_{t-1} entirely, so the backward could not recompute it.
void check_eta(double eta, const char* op) {
  TORCH_CHECK_VALUE(std::isfinite(eta) && eta >= 0.0 && eta < 1.0, op,
                    ": eta must be in [0, 1) (the backward recomputes H_{t-1} = (H_t - eta y p^T) / (1 - eta)), got ",
                    eta);
}

PlasticActivation check_activation(int64_t code, const char* op) {
  TORCH_CHECK_VALUE(code == static_cast<int64_t>(PlasticActivation::Identity) ||
                        code == static_cast<int64_t>(PlasticActivation::Tanh),
                    op, ": activation must be 1 (identity) or 4 (tanh), got ", code);
  return static_cast<PlasticActivation>(code);
}

std::optional<at::Tensor> given(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t : std::nullopt;
}

// The sizes every call shares, from u (or grad_ys), x and weight.
struct Sizes {
  int64_t steps, batch, n_out, n_in;
};

Sizes check_layer(const at::Tensor& u, const char* u_name, const std::optional<at::Tensor>& x,
                  const at::Tensor& weight, const at::Tensor& alpha, const char* op) {
  check_dim(u, 3, op, u_name, "(T, batch, n_out)");
  check_real(u, op, u_name);
  check_dim(weight, 2, op, "weight", "(n_out, n_in)");
  check_like(weight, u, op, "weight", u_name);
  const Sizes s{u.size(0), u.size(1), u.size(2), weight.size(1)};
  TORCH_CHECK_VALUE(weight.size(0) == s.n_out, op, ": weight must have ", s.n_out, " rows (n_out, the last size of ",
                    u_name, "), got ", weight.size(0));
  if (x.has_value()) {
    check_dim(*x, 3, op, "x", "(T, batch, n_in)");
    check_like(*x, u, op, "x", u_name);
    check_shape(*x, {s.steps, s.batch, s.n_in}, op, "x", "(T, batch, n_in)");
  } else {
    TORCH_CHECK_VALUE(s.n_in == s.n_out, op, ": the recurrent layer (x = None) needs a square weight, got ",
                      weight.sizes());
  }
  check_like(alpha, u, op, "alpha", u_name);
  check_shape(alpha, weight.sizes(), op, "alpha", "(the shape of weight)");
  return s;
}

// The modulated rates e = eta m, (T, B) and contiguous, after checking m
// (the same check in both ops: the backward divides by 1 - e); undefined
// without modulation. Reads m's extremes (one device sync when modulated).
at::Tensor rates(const std::optional<at::Tensor>& modulation, const at::Tensor& ref, const char* ref_name,
                 const Sizes& s, double eta, const char* op) {
  if (!modulation.has_value()) return at::Tensor();
  const at::Tensor& m = *modulation;
  check_like(m, ref, op, "modulation", ref_name);
  check_shape(m, {s.steps, s.batch}, op, "modulation", "(T, batch)");
  const at::Tensor e = (m * eta).contiguous();
  if (e.numel() > 0) {
    const auto [low, high] = at::aminmax(e);
    const double lo = low.item<double>(), hi = high.item<double>();
    TORCH_CHECK_VALUE(std::isfinite(lo) && std::isfinite(hi) && lo >= 0.0 && hi < 1.0, op,
                      ": eta * modulation must be in [0, 1) at every step (the backward divides by 1 - eta * m), "
                      "got values from ", lo, " to ", hi);
  }
  return e;
}
}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> plastic_episode(
    const at::Tensor& u_arg, const std::optional<at::Tensor>& x_arg, const at::Tensor& weight_arg,
    const at::Tensor& alpha_arg, const at::Tensor& h0, double eta, int64_t activation, bool store_traces,
    const std::optional<at::Tensor>& modulation, const Kernels& kernels) {
  const auto x_given = given(x_arg);
  const Sizes s = check_layer(u_arg, "u", x_given, weight_arg, alpha_arg, kForward);
  check_like(h0, u_arg, kForward, "h0", "u");
  check_shape(h0, {s.batch, s.n_out, s.n_in}, kForward, "h0", "(batch, n_out, n_in)");
  check_eta(eta, kForward);
  const PlasticActivation act = check_activation(activation, kForward);
  const at::Tensor rate = rates(given(modulation), u_arg, "u", s, eta, kForward);

  const at::Tensor u = u_arg.contiguous(), weight = weight_arg.contiguous(), alpha = alpha_arg.contiguous();
  at::Tensor h = h0.contiguous().clone();
  at::Tensor ys = at::empty({s.steps, s.batch, s.n_out}, u.options());
  at::Tensor traces = store_traces ? at::empty({s.steps, s.batch, s.n_out, s.n_in}, u.options())
                                   : at::empty({0}, u.options());
  if (s.steps == 0 || s.batch == 0 || s.n_out == 0) return {ys, h, traces};

  // Feed-forward: W x_t for every step in one product.
  at::Tensor x, drive_all;
  if (x_given.has_value()) {
    x = x_given->contiguous();
    const int64_t rows = s.steps * s.batch;
    drive_all = at::addmm(u.view({rows, s.n_out}), x.view({rows, s.n_in}), weight.t()).view(u.sizes());
  }
  const at::Tensor zeros = at::zeros({s.batch, s.n_in}, u.options());
  ForwardStepParams q{StepSizes{s.batch, s.n_out, s.n_in, eta}};
  q.alpha = alpha.const_data_ptr();
  q.h = h.data_ptr();
  q.activation = act;
  for (int64_t t = 0; t < s.steps; ++t) {
    at::Tensor p, drive;
    if (x.defined()) {
      p = x[t];
      drive = drive_all[t];
    } else {
      p = t > 0 ? ys[t - 1] : zeros;
      drive = at::addmm(u[t], p, weight.t());
    }
    q.drive = drive.const_data_ptr();
    q.p = p.const_data_ptr();
    q.trace = store_traces ? traces[t].data_ptr() : nullptr;
    q.rate = rate.defined() ? rate[t].const_data_ptr() : nullptr;
    q.y = ys[t].data_ptr();
    kernels.forward_step(q, u.scalar_type() == at::kDouble);
  }
  return {ys, h, traces};
}

BackwardResult plastic_episode_backward(const at::Tensor& grad_ys_arg, const std::optional<at::Tensor>& grad_h_arg,
                                        const std::optional<at::Tensor>& x_arg, const at::Tensor& weight_arg,
                                        const at::Tensor& alpha_arg, const at::Tensor& ys_arg, const at::Tensor& h_T,
                                        const std::optional<at::Tensor>& traces_arg, double eta, int64_t activation,
                                        const std::optional<at::Tensor>& modulation_arg, const Kernels& kernels) {
  const auto x_given = given(x_arg);
  const Sizes s = check_layer(grad_ys_arg, "grad_ys", x_given, weight_arg, alpha_arg, kBackward);
  check_like(ys_arg, grad_ys_arg, kBackward, "ys", "grad_ys");
  check_shape(ys_arg, grad_ys_arg.sizes(), kBackward, "ys", "(the shape of grad_ys)");
  check_like(h_T, grad_ys_arg, kBackward, "h_T", "grad_ys");
  check_shape(h_T, {s.batch, s.n_out, s.n_in}, kBackward, "h_T", "(batch, n_out, n_in)");
  const auto grad_h_given = given(grad_h_arg);
  if (grad_h_given.has_value()) {
    check_like(*grad_h_given, grad_ys_arg, kBackward, "grad_h", "grad_ys");
    check_shape(*grad_h_given, h_T.sizes(), kBackward, "grad_h", "(the shape of h_T)");
  }
  const auto traces_given = given(traces_arg);
  if (traces_given.has_value()) {
    check_like(*traces_given, grad_ys_arg, kBackward, "traces", "grad_ys");
    check_shape(*traces_given, {s.steps, s.batch, s.n_out, s.n_in}, kBackward, "traces",
                "(T, batch, n_out, n_in)");
  }
  check_eta(eta, kBackward);
  const PlasticActivation act = check_activation(activation, kBackward);
  const auto modulation = given(modulation_arg);
  const at::Tensor rate = rates(modulation, grad_ys_arg, "grad_ys", s, eta, kBackward);

  const auto options = grad_ys_arg.options();
  const bool is_double = grad_ys_arg.scalar_type() == at::kDouble;
  const at::Tensor grad_ys = grad_ys_arg.contiguous(), ys = ys_arg.contiguous();
  const at::Tensor weight = weight_arg.contiguous(), alpha = alpha_arg.contiguous();
  at::Tensor g = grad_h_given.has_value() ? grad_h_given->contiguous().clone()
                                          : at::zeros({s.batch, s.n_out, s.n_in}, options);
  at::Tensor grad_u = at::empty({s.steps, s.batch, s.n_out}, options);
  at::Tensor grad_x = x_given.has_value() ? at::zeros({s.steps, s.batch, s.n_in}, options) : at::empty({0}, options);
  at::Tensor grad_alpha = at::zeros({s.n_out, s.n_in}, options);
  // dL/de of every step and row; dη and dm are its sums.
  at::Tensor rate_rows = at::zeros({s.steps, s.batch, s.n_out}, options);
  const auto finish_rates = [&](const at::Tensor& grad_weight) -> BackwardResult {
    const at::Tensor grad_rate = rate_rows.sum(-1);  // (T, B)
    if (!modulation.has_value()) {
      return {grad_u, grad_x, grad_weight, grad_alpha, grad_rate.sum(), g, at::empty({0}, options)};
    }
    return {grad_u, grad_x, grad_weight, grad_alpha, (grad_rate * *modulation).sum(), g, grad_rate * eta};
  };
  if (s.steps == 0 || s.batch == 0 || s.n_out == 0) {
    grad_u.zero_();
    return finish_rates(at::zeros({s.n_out, s.n_in}, options));
  }
  const at::Tensor traces = traces_given.has_value() ? traces_given->contiguous() : at::Tensor();
  at::Tensor h = traces.defined() ? at::Tensor() : h_T.contiguous().clone();
  const at::Tensor x = x_given.has_value() ? x_given->contiguous() : at::Tensor();
  // Recurrent: the plastic inputs are the outputs one step back.
  const at::Tensor zeros = at::zeros({s.batch, s.n_in}, options);
  at::Tensor carry;  // dL/dp_{t+1}, recurrent only
  const StepSizes sizes{s.batch, s.n_out, s.n_in, eta};

  for (int64_t t = s.steps - 1; t >= 0; --t) {
    const at::Tensor p = x.defined() ? x[t] : (t > 0 ? ys[t - 1] : zeros);
    const at::Tensor y = ys[t], ga = grad_u[t];
    BackwardRowParams r{sizes};
    r.grad_y = grad_ys[t].const_data_ptr();
    r.carry = carry.defined() ? carry.const_data_ptr() : nullptr;
    r.y = y.const_data_ptr();
    r.p = p.const_data_ptr();
    r.grad_h = g.const_data_ptr();
    r.h = h.defined() ? h.data_ptr() : nullptr;
    r.trace = traces.defined() ? traces[t].const_data_ptr() : nullptr;
    r.grad_a = ga.data_ptr();
    r.grad_rate = rate_rows[t].data_ptr();
    const void* rate_t = rate.defined() ? rate[t].const_data_ptr() : nullptr;
    r.rate = rate_t;
    r.activation = act;
    kernels.backward_rows(r, is_double);
    const void* h_prev = traces.defined() ? traces[t].const_data_ptr() : h.const_data_ptr();

    // Feed-forward: Wᵀ ga for every step comes in one product after the loop.
    at::Tensor grad_p = x.defined() ? grad_x[t] : at::mm(ga, weight);
    BackwardInputParams in{sizes};
    in.alpha = alpha.const_data_ptr();
    in.h_prev = h_prev;
    in.grad_h = g.const_data_ptr();
    in.grad_a = ga.const_data_ptr();
    in.y = y.const_data_ptr();
    in.grad_p = grad_p.data_ptr();
    in.rate = rate_t;
    kernels.backward_inputs(in, is_double);

    BackwardWeightParams w{sizes};
    w.alpha = alpha.const_data_ptr();
    w.h_prev = h_prev;
    w.grad_a = ga.const_data_ptr();
    w.p = p.const_data_ptr();
    w.grad_h = g.data_ptr();
    w.grad_alpha = grad_alpha.data_ptr();
    w.rate = rate_t;
    kernels.backward_weights(w, is_double);
    if (!x.defined()) carry = grad_p;
  }

  const int64_t rows = s.steps * s.batch;
  const at::Tensor ga_rows = grad_u.view({rows, s.n_out});
  at::Tensor grad_weight;
  if (x.defined()) {
    grad_x.view({rows, s.n_in}).addmm_(ga_rows, weight);
    grad_weight = at::mm(ga_rows.t(), x.view({rows, s.n_in}));
  } else {
    const at::Tensor ps = at::cat({zeros.unsqueeze(0), ys.narrow(0, 0, s.steps - 1)}, 0);
    grad_weight = at::mm(ga_rows.t(), ps.view({rows, s.n_in}));
  }
  return finish_rates(grad_weight);
}

}  // namespace localgrad::meta
