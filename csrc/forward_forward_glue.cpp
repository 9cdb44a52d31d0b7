#include "forward_forward_glue.h"

#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "checks.h"

namespace localgrad::forward_forward {

namespace {

constexpr const char* kOp = "forward_forward_step";

std::string item(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

void check_like(const at::Tensor& t, const at::Tensor& ref, const std::string& name, std::vector<int64_t> shape) {
  TORCH_CHECK_VALUE(t.dim() == static_cast<int64_t>(shape.size()), kOp, ": ", name, " must be ", shape.size(),
                    "-D with shape ", at::IntArrayRef(shape), ", got shape ", t.sizes());
  check_same_dtype(t, ref, kOp, name.c_str(), "x_pos");
  check_same_device(t, ref, kOp, name.c_str(), "x_pos");
  TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(shape), kOp, ": ", name, " must have shape ",
                    at::IntArrayRef(shape), ", got ", t.sizes());
}

void check_count(size_t got, size_t want, const char* name) {
  TORCH_CHECK_VALUE(got == want, kOp, ": ", name, " must have one entry per layer (", want, "), got ", got);
}

}  // namespace

void step_impl(const at::Tensor& x_pos, const at::Tensor& x_neg, at::TensorList weights, at::TensorList biases,
               at::IntArrayRef kinds, at::ArrayRef<double> slopes, at::ArrayRef<double> thresholds,
               int64_t goodness, int64_t loss, int64_t normalize, double alpha, double eps,
               at::TensorList grad_weights, at::TensorList grad_biases, const at::Tensor& goodness_out,
               const at::Tensor& losses, const Kernels& backend) {
  // The products read parameters that may require grad: the op is autograd-free.
  const c10::NoGradGuard no_grad;
  TORCH_CHECK_VALUE(goodness >= 0 && goodness < kNumGoodness, kOp, ": goodness = ", goodness,
                    " is not a goodness code (0 sumsq, 1 meansq, 2 neg_sumsq)");
  TORCH_CHECK_VALUE(loss >= 0 && loss < kNumLosses, kOp, ": loss = ", loss,
                    " is not a loss code (0 threshold, 1 symmetric)");
  TORCH_CHECK_VALUE(normalize >= 0 && normalize < kNumNormalize, kOp, ": normalize = ", normalize,
                    " is not a normalisation code (0 l2, 1 rms, 2 none)");
  check_finite(alpha, kOp, "alpha");
  check_finite(eps, kOp, "eps");
  TORCH_CHECK_VALUE(eps >= 0, kOp, ": eps must be >= 0, got ", eps);
  TORCH_CHECK_VALUE(x_pos.dim() == 2, kOp, ": x_pos must be 2-D (batch, n), got shape ", x_pos.sizes());
  TORCH_CHECK_TYPE(x_pos.scalar_type() == at::kFloat || x_pos.scalar_type() == at::kDouble, kOp,
                   ": x_pos must be float32 or float64, got ", x_pos.scalar_type());
  const int64_t batch = x_pos.size(0), n0 = x_pos.size(1);
  check_like(x_neg, x_pos, "x_neg", {batch, n0});
  const size_t L = weights.size();
  TORCH_CHECK_VALUE(L > 0, kOp, ": weights must hold at least one layer");
  check_count(biases.size(), L, "biases");
  check_count(grad_weights.size(), L, "grad_weights");
  check_count(grad_biases.size(), L, "grad_biases");
  check_count(kinds.size(), L, "kinds");
  check_count(slopes.size(), L, "slopes");
  check_count(thresholds.size(), L, "thresholds");
  const int64_t n_layers = static_cast<int64_t>(L);
  check_like(goodness_out, x_pos, "goodness_out", {n_layers, 2, batch});
  check_like(losses, x_pos, "losses", {n_layers});
  TensorRoles roles;
  roles.input(x_pos, "x_pos");
  roles.input(x_neg, "x_neg");
  int64_t n = n0;
  for (size_t l = 0; l < L; ++l) {
    TORCH_CHECK_VALUE(weights[l].dim() == 2, kOp, ": ", item("weights", l), " must be 2-D (m, n), got shape ",
                      weights[l].sizes());
    const int64_t m = weights[l].size(0);
    TORCH_CHECK_VALUE(m > 0, kOp, ": ", item("weights", l), " must have at least one unit, got shape ",
                      weights[l].sizes());
    check_like(weights[l], x_pos, item("weights", l), {m, n});
    check_like(biases[l], x_pos, item("biases", l), {m});
    check_like(grad_weights[l], x_pos, item("grad_weights", l), {m, n});
    check_like(grad_biases[l], x_pos, item("grad_biases", l), {m});
    TORCH_CHECK_VALUE(kinds[l] >= static_cast<int64_t>(Activation::Identity) && kinds[l] < kNumActivations, kOp,
                      ": kinds[", l, "] = ", kinds[l],
                      " is not an activation (1 identity, 2 relu, 3 leaky relu, 4 tanh, 5 sigmoid)");
    check_finite(slopes[l], kOp, item("slopes", l).c_str());
    check_finite(thresholds[l], kOp, item("thresholds", l).c_str());
    roles.input(weights[l], item("weights", l));
    roles.input(biases[l], item("biases", l));
    roles.output(grad_weights[l], item("grad_weights", l));
    roles.output(grad_biases[l], item("grad_biases", l));
    n = m;
  }
  roles.output(goodness_out, "goodness_out");
  roles.output(losses, "losses");
  roles.check(kOp);

  if (batch == 0) {  // no pairs: no update, no loss
    for (size_t l = 0; l < L; ++l) {
      at::Tensor gw = grad_weights[l], gb = grad_biases[l];
      gw.zero_();
      gb.zero_();
    }
    at::Tensor out = losses;
    out.zero_();
    return;
  }
  const at::ScalarType dtype = x_pos.scalar_type();
  const at::Tensor pos = x_pos.contiguous(), neg = x_neg.contiguous();
  at::Tensor h = at::empty({2 * batch, n0}, x_pos.options());
  NormalizeParams np;
  np.pos = pos.const_data_ptr();
  np.neg = neg.const_data_ptr();
  np.out = h.data_ptr();
  np.batch = batch;
  np.width = n0;
  np.mode = static_cast<Normalize>(normalize);
  np.eps = eps;
  backend.normalize(np, dtype);
  at::Tensor good = at::empty({n_layers, 2 * batch}, x_pos.options());
  at::Tensor pair_loss = at::empty({n_layers, batch}, x_pos.options());
  for (size_t l = 0; l < L; ++l) {
    const int64_t m = weights[l].size(0);
    // Both passes in one product: rows 0..B-1 positive, B..2B-1 negative.
    at::Tensor z = at::addmm(biases[l], h, weights[l].t());
    at::Tensor next = l + 1 < L ? at::empty({2 * batch, m}, x_pos.options()) : at::Tensor();
    LayerParams lp;
    lp.z = z.data_ptr();
    lp.next = next.defined() ? next.data_ptr() : nullptr;
    lp.good = good[l].data_ptr();
    lp.pair_loss = pair_loss[l].data_ptr();
    lp.batch = batch;
    lp.width = m;
    lp.kind = static_cast<Activation>(kinds[l]);
    lp.slope = slopes[l];
    lp.threshold = thresholds[l];
    lp.alpha = alpha;
    lp.eps = eps;
    lp.goodness = static_cast<Goodness>(goodness);
    lp.loss = static_cast<Loss>(loss);
    lp.mode = static_cast<Normalize>(normalize);
    backend.layer(lp, dtype);  // z is now delta
    at::Tensor gw = grad_weights[l], gb = grad_biases[l];
    at::mm_out(gw, z.t(), h);
    at::sum_out(gb, z, {0});
    h = next;
  }
  at::Tensor g = goodness_out, ls = losses;
  g.copy_(good.view({n_layers, 2, batch}));
  // A fixed order (ATen's sum of a contiguous row), whatever the backend.
  at::mean_out(ls, pair_loss, {1});
}

}  // namespace localgrad::forward_forward
