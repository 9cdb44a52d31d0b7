#include "hebbian_glue.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include "checks.h"

namespace localgrad::hebbian {

namespace {
constexpr const char* kOp = "hebbian_update";
}  // namespace

void hebbian_update(const at::Tensor& x, const at::Tensor& weight,
                    const std::optional<at::Tensor>& theta_arg, int64_t rule_code,
                    double temperature, double p, int64_t rank, double anti,
                    double lr, double lr_power, bool normalize, const at::Tensor& u,
                    const at::Tensor& grad, const Kernels& kernels) {
  check_dim(x, 2, kOp, "x", "(batch, n_in)");
  check_float(x, kOp, "x");
  check_dim(weight, 2, kOp, "weight", "(n_out, n_in)");
  check_same_dtype(weight, x, kOp, "weight", "x");
  check_same_device(weight, x, kOp, "weight", "x");
  TORCH_CHECK_VALUE(weight.size(1) == x.size(1), kOp, ": weight must have ", x.size(1),
                    " columns (n_in, the columns of x), got ", weight.size(1));
  TORCH_CHECK_VALUE(rule_code >= 0 && rule_code < kNumRules, kOp, ": rule = ", rule_code,
                    " is not a rule code (0 oja, 1 sanger, 2 bcm, 3 softhebb, 4 krotov)");
  const auto rule = static_cast<Rule>(rule_code);
  const int64_t batch = x.size(0), n_in = x.size(1), n_out = weight.size(0);

  check_finite(temperature, kOp, "temperature");
  check_finite(p, kOp, "p");
  check_finite(anti, kOp, "anti");
  check_finite(lr, kOp, "lr");
  check_finite(lr_power, kOp, "lr_power");
  TORCH_CHECK_VALUE(temperature > 0, kOp, ": temperature must be > 0, got ", temperature);
  TORCH_CHECK_VALUE(p >= 1, kOp, ": p must be >= 1, got ", p);
  TORCH_CHECK_VALUE(rank >= 1, kOp, ": rank must be >= 1, got ", rank);
  TORCH_CHECK_VALUE(lr_power >= 0, kOp, ": lr_power must be >= 0, got ", lr_power);

  at::Tensor theta;
  if (theta_arg.has_value() && theta_arg->defined()) theta = *theta_arg;
  if (rule == Rule::BCM) {
    TORCH_CHECK_VALUE(theta.defined(), kOp, ": rule bcm needs theta (n_out,), got None");
    check_dim(theta, 1, kOp, "theta", "(n_out,)");
    check_same_dtype(theta, x, kOp, "theta", "x");
    check_same_device(theta, x, kOp, "theta", "x");
    TORCH_CHECK_VALUE(theta.size(0) == n_out, kOp, ": theta must have ", n_out,
                      " entries (n_out, the rows of weight), got ", theta.size(0));
  }

  check_dim(u, 2, kOp, "u", "(batch, n_out)");
  check_same_dtype(u, x, kOp, "u", "x");
  check_same_device(u, x, kOp, "u", "x");
  TORCH_CHECK_VALUE(u.size(0) == batch && u.size(1) == n_out, kOp, ": u must have shape (",
                    batch, ", ", n_out, ") (batch, n_out), got ", u.sizes());
  check_dim(grad, 2, kOp, "grad", "(n_out, n_in)");
  check_same_dtype(grad, x, kOp, "grad", "x");
  check_same_device(grad, x, kOp, "grad", "x");
  TORCH_CHECK_VALUE(grad.sizes() == weight.sizes(), kOp, ": grad must have the shape of weight ",
                    weight.sizes(), ", got ", grad.sizes());
  check_rows_dense(u, kOp, "u");
  check_rows_dense(grad, kOp, "grad");
  // u is written before grad is computed from x and weight: an output that
  // shares memory with anything else changes what is read next.
  TensorRoles roles;
  roles.input(x, "x");
  roles.input(weight, "weight");
  roles.input(theta, "theta");
  roles.output(u, "u");
  roles.output(grad, "grad");
  roles.check(kOp);
  if (n_out == 0) return;

  const auto acc = at::toOpMathType(x.scalar_type());
  const bool is_double = acc == at::kDouble;
  const at::Tensor xa = x.to(acc).contiguous();
  const at::Tensor wa = weight.to(acc).contiguous();

  at::Tensor weff = wa;
  if (rule == Rule::Krotov && p != 2.0 && wa.numel() > 0) {
    weff = at::empty_like(wa);
    PowerParams pp;
    pp.weight = wa.const_data_ptr();
    pp.out = weff.data_ptr();
    pp.n = wa.numel();
    pp.p = p;
    kernels.power(pp, is_double);
  }

  const at::Tensor ua = at::mm(xa, weff.t());
  if (batch > 0) u.copy_(ua);

  at::Tensor ya = ua;
  if ((rule == Rule::BCM || rule == Rule::SoftHebb || rule == Rule::Krotov) && batch > 0) {
    ya = at::empty_like(ua);
    at::Tensor theta_a;
    ActivateParams ap;
    ap.u = ua.const_data_ptr();
    ap.y = ya.data_ptr();
    if (rule == Rule::BCM) {
      theta_a = theta.to(acc).contiguous();
      ap.theta = theta_a.const_data_ptr();
    }
    ap.batch = batch;
    ap.n_out = n_out;
    ap.u_row_stride = ua.stride(0);
    ap.y_row_stride = ya.stride(0);
    ap.rule = rule;
    ap.inv_temperature = 1.0 / temperature;
    ap.rank = rank;
    ap.anti = anti;
    kernels.activate(ap, is_double);
  }

  const at::Tensor hebb = at::mm(ya.t(), xa);
  at::Tensor correction;
  if (rule == Rule::Sanger) correction = at::mm(at::tril(at::mm(ya.t(), ya)), wa);

  const at::Tensor delta = at::empty_like(wa);
  const at::Tensor row_peak = at::empty({n_out}, wa.options());
  const at::Tensor rate = at::empty({n_out}, wa.options());
  CombineParams cp;
  cp.hebb = hebb.const_data_ptr();
  cp.weight = wa.const_data_ptr();
  cp.weight_eff = weff.const_data_ptr();
  cp.correction = correction.defined() ? correction.const_data_ptr() : nullptr;
  cp.delta = delta.data_ptr();
  cp.row_peak = row_peak.data_ptr();
  cp.rate = rate.data_ptr();
  cp.n_out = n_out;
  cp.n_in = n_in;
  cp.row_stride = n_in;
  cp.rule = rule;
  cp.inv_batch = 1.0 / static_cast<double>(batch > 0 ? batch : 1);
  cp.lr = lr;
  cp.lr_power = lr_power;
  cp.p = rule == Rule::Krotov ? p : 2.0;
  kernels.combine(cp, is_double);
  if (n_in == 0) return;

  FinalizeParams fp;
  fp.delta = delta.const_data_ptr();
  fp.row_peak = row_peak.const_data_ptr();
  fp.rate = rate.const_data_ptr();
  fp.grad = grad.data_ptr();
  fp.n_out = n_out;
  fp.n_in = n_in;
  fp.delta_row_stride = n_in;
  fp.grad_row_stride = grad.stride(0);
  fp.normalize = normalize;
  kernels.finalize(fp, is_double, scalar_kind(grad.scalar_type()));
}

}  // namespace localgrad::hebbian
