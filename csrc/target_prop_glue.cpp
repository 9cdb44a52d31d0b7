#include "target_prop_glue.h"

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "checks.h"

namespace localgrad::target_prop {

namespace {

constexpr const char* kOp = "target_prop_feedback_grads";

void check_like(const at::Tensor& t, const at::Tensor& ref, const std::string& name,
                std::vector<int64_t> shape) {
  TORCH_CHECK_VALUE(t.dim() == static_cast<int64_t>(shape.size()), kOp, ": ", name, " must be ",
                    shape.size(), "-D with shape ", at::IntArrayRef(shape), ", got shape ", t.sizes());
  check_same_dtype(t, ref, kOp, name.c_str(), "inputs[0]");
  check_same_device(t, ref, kOp, name.c_str(), "inputs[0]");
  TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(shape), kOp, ": ", name, " must have shape ",
                    at::IntArrayRef(shape), ", got ", t.sizes());
}

void check_count(size_t got, size_t want, const char* name) {
  TORCH_CHECK_VALUE(got == want, kOp, ": ", name, " must have one entry per map (", want, "), got ",
                    got);
}

}  // namespace

void feedback_grads_impl(at::TensorList inputs, at::TensorList outputs, at::TensorList gates,
                         at::TensorList weights, at::TensorList biases, at::TensorList fb_weights,
                         at::TensorList fb_biases, at::TensorList noise_in, at::TensorList noise_out,
                         at::IntArrayRef kinds, at::ArrayRef<double> slopes, int64_t variant,
                         at::TensorList grad_weights, at::TensorList grad_biases,
                         const at::Tensor& loss, const Kernels& backend) {
  // The products below read parameters that may require grad: the op is autograd-free.
  const c10::NoGradGuard no_grad;
  TORCH_CHECK_VALUE(variant >= 0 && variant < kNumVariants, kOp, ": variant = ", variant,
                    " is not a variant code (0 dtp/tp, 1 ldrl)");
  const Variant v = static_cast<Variant>(variant);
  const size_t K = inputs.size();
  TORCH_CHECK_VALUE(K > 0, kOp, ": inputs must hold at least one map");
  check_count(outputs.size(), K, "outputs");
  check_count(weights.size(), K, "weights");
  check_count(biases.size(), K, "biases");
  check_count(fb_weights.size(), K, "fb_weights");
  check_count(fb_biases.size(), K, "fb_biases");
  check_count(noise_in.size(), K, "noise_in");
  check_count(grad_weights.size(), K, "grad_weights");
  check_count(grad_biases.size(), K, "grad_biases");
  check_count(kinds.size(), K, "kinds");
  check_count(slopes.size(), K, "slopes");
  TORCH_CHECK_VALUE(gates.empty() || gates.size() == K, kOp,
                    ": gates must be empty (linear maps) or have one entry per map (", K, "), got ",
                    gates.size());
  if (v == Variant::Ldrl) {
    check_count(noise_out.size(), K, "noise_out");
  } else {
    TORCH_CHECK_VALUE(noise_out.empty(), kOp, ": noise_out is L-DRL's; dtp takes none, got ",
                      noise_out.size());
  }
  const at::Tensor& ref = inputs[0];
  TORCH_CHECK_VALUE(ref.dim() == 2, kOp, ": inputs[0] must be 2-D (batch, n), got shape ", ref.sizes());
  check_real(ref, kOp, "inputs[0]");
  const int64_t batch = ref.size(0);
  check_like(loss, ref, "loss", {});
  TensorRoles roles;
  std::vector<int64_t> rows(K);
  for (size_t k = 0; k < K; ++k) {
    TORCH_CHECK_VALUE(inputs[k].dim() == 2, kOp, ": ", item("inputs", k),
                      " must be 2-D (batch, n), got shape ", inputs[k].sizes());
    TORCH_CHECK_VALUE(outputs[k].dim() == 2, kOp, ": ", item("outputs", k),
                      " must be 2-D (batch, m), got shape ", outputs[k].sizes());
    const int64_t n = inputs[k].size(1), m = outputs[k].size(1);
    TORCH_CHECK_VALUE(n > 0 && m > 0, kOp, ": map ", k, " needs units on both sides, got n = ", n,
                      ", m = ", m);
    check_like(inputs[k], ref, item("inputs", k), {batch, n});
    check_like(outputs[k], ref, item("outputs", k), {batch, m});
    if (!gates.empty()) check_like(gates[k], ref, item("gates", k), {batch, m});
    check_like(weights[k], ref, item("weights", k), {m, n});
    check_like(biases[k], ref, item("biases", k), {m});
    check_like(fb_weights[k], ref, item("fb_weights", k), {n, m});
    check_like(fb_biases[k], ref, item("fb_biases", k), {n});
    TORCH_CHECK_VALUE(noise_in[k].dim() == 2, kOp, ": ", item("noise_in", k),
                      " must be 2-D (samples * batch, n), got shape ", noise_in[k].sizes());
    rows[k] = noise_in[k].size(0);
    TORCH_CHECK_VALUE(batch > 0 ? rows[k] % batch == 0 : rows[k] == 0, kOp, ": ", item("noise_in", k),
                      " must have a whole number of samples of ", batch, " rows, got ", rows[k]);
    check_like(noise_in[k], ref, item("noise_in", k), {rows[k], n});
    if (v == Variant::Ldrl) check_like(noise_out[k], ref, item("noise_out", k), {rows[k], m});
    check_like(grad_weights[k], ref, item("grad_weights", k), {n, m});
    check_like(grad_biases[k], ref, item("grad_biases", k), {n});
    TORCH_CHECK_VALUE(kinds[k] >= static_cast<int64_t>(Activation::Identity) && kinds[k] < kNumActivations,
                      kOp, ": kinds[", k, "] = ", kinds[k],
                      " is not an activation (1 identity, 2 relu, 3 leaky relu, 4 tanh, 5 sigmoid)");
    check_finite(slopes[k], kOp, item("slopes", k).c_str());
    roles.input(inputs[k], item("inputs", k));
    roles.input(outputs[k], item("outputs", k));
    if (!gates.empty()) roles.input(gates[k], item("gates", k));
    roles.input(weights[k], item("weights", k));
    roles.input(biases[k], item("biases", k));
    roles.input(fb_weights[k], item("fb_weights", k));
    roles.input(fb_biases[k], item("fb_biases", k));
    roles.input(noise_in[k], item("noise_in", k));
    if (v == Variant::Ldrl) roles.input(noise_out[k], item("noise_out", k));
    roles.output(grad_weights[k], item("grad_weights", k));
    roles.output(grad_biases[k], item("grad_biases", k));
  }
  roles.output(loss, "loss");
  roles.check(kOp);

  const at::ScalarType dtype = ref.scalar_type();
  at::Tensor total = at::zeros({}, ref.options());
  for (size_t k = 0; k < K; ++k) {
    at::Tensor gw = grad_weights[k], gb = grad_biases[k];
    const int64_t n = inputs[k].size(1), m = outputs[k].size(1), R = rows[k];
    if (R == 0) {  // an empty batch: no samples, no gradient
      gw.zero_();
      gb.zero_();
      continue;
    }
    const double scale = 1.0 / static_cast<double>(R);
    const at::Tensor h_in = inputs[k].contiguous(), eps = noise_in[k].contiguous();
    const at::Tensor q = gates.empty() ? at::Tensor() : gates[k].contiguous();
    const at::Tensor V = fb_weights[k];
    at::Tensor x = at::empty({R, n}, ref.options());
    NoisyParams np;
    np.h = h_in.const_data_ptr();
    np.eps = eps.const_data_ptr();
    np.x = x.data_ptr();
    np.rows = R;
    np.batch = batch;
    np.width = n;
    backend.noisy(np, dtype);
    // a = x W^T + b: layer l's pre-activation at every noisy input, all samples in one product.
    at::Tensor a = at::addmm(biases[k], x, weights[k].t());
    GateParams gp;
    gp.a = a.data_ptr();
    gp.gate = q.defined() ? q.const_data_ptr() : nullptr;
    gp.rows = R;
    gp.batch = batch;
    gp.width = m;
    gp.kind = static_cast<Activation>(kinds[k]);
    gp.slope = slopes[k];
    gp.variant = v;
    const int64_t chunks = reduce_chunks(R);
    ReduceParams rp;
    at::Tensor sums = at::empty({chunks, n}, ref.options());
    at::Tensor squares = at::empty({chunks, n}, ref.options());
    rp.sums = sums.data_ptr();
    rp.squares = squares.data_ptr();
    rp.rows = R;
    rp.width = n;
    rp.chunks = chunks;
    if (v == Variant::Dtp) {
      backend.gate(gp, dtype);  // a is now u = q * f
      // r = u V^T + c - x; dV = 2 r^T u, dc = 2 sum r, loss ||r||^2.
      at::Tensor r = at::addmm(fb_biases[k], a, V.t());
      rp.a = r.data_ptr();
      rp.sub = x.const_data_ptr();
      backend.reduce(rp, dtype);
      at::mm_out(gw, r.t(), a);
      gw.mul_(2 * scale);
      at::sum_out(gb, sums, {0});
      gb.mul_(2 * scale);
      total.add_(squares.sum(), scale);
      continue;
    }
    const at::Tensor h_out = outputs[k].contiguous(), eta = noise_out[k].contiguous();
    at::Tensor p = at::empty({R, m}, ref.options());
    gp.h_out = h_out.const_data_ptr();
    gp.eta = eta.const_data_ptr();
    gp.p = p.data_ptr();
    backend.gate(gp, dtype);  // a is now Q = q * (f - h_l), p = q * eta
    // dV = 2 ((P V^T)^T P - eps^T Q), dc = 0, loss ||P V^T||^2 - 2 <eps^T Q, V>.
    at::Tensor pv = at::mm(p, V.t());
    at::Tensor e = at::mm(eps.t(), a);
    rp.a = pv.data_ptr();
    rp.sub = nullptr;
    backend.reduce(rp, dtype);
    at::mm_out(gw, pv.t(), p);
    gw.sub_(e).mul_(2 * scale);
    gb.zero_();
    total.add_(squares.sum(), scale).sub_(at::dot(e.reshape({-1}), V.reshape({-1})), 2 * scale);
  }
  at::Tensor out = loss;
  out.copy_(total);
}

}  // namespace localgrad::target_prop
