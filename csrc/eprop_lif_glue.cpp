#include "eprop_lif_glue.h"

#include <ATen/ATen.h>

#include "checks.h"

namespace localgrad::eprop_lif {

namespace {
constexpr const char* kOp = "eprop_lif_chunk";

void check_shape(const at::Tensor& t, at::IntArrayRef shape, const char* name,
                 const char* meaning) {
  TORCH_CHECK_VALUE(t.sizes() == shape, kOp, ": ", name, " must have shape ", shape,
                    " ", meaning, ", got ", t.sizes());
}

// Same dtype and device as x, the given shape.
void check_like_x(const at::Tensor& t, const at::Tensor& x, at::IntArrayRef shape,
                  const char* name, const char* meaning) {
  check_same_dtype(t, x, kOp, name, "x");
  check_same_device(t, x, kOp, name, "x");
  check_shape(t, shape, name, meaning);
}

// State and outputs are written in place, so a copy would lose the writes.
void check_state(const at::Tensor& t, const at::Tensor& x, at::IntArrayRef shape,
                 const char* name, const char* meaning) {
  check_like_x(t, x, shape, name, meaning);
  TORCH_CHECK_VALUE(t.is_contiguous(), kOp, ": ", name,
                    " must be contiguous (it is written in place), got strides ", t.strides());
}
}  // namespace

PreparedChunk prepare_chunk(const at::Tensor& x, const at::Tensor& weight_in,
                            const at::Tensor& weight_rec, const at::Tensor& weight_out,
                            const at::Tensor& bias_out, const at::Tensor& feedback,
                            const std::optional<at::Tensor>& target,
                            const std::optional<at::Tensor>& signal,
                            at::ArrayRef<double> neuron, bool adaptive, int64_t mode,
                            double loss_scale, const at::Tensor& v, const at::Tensor& a,
                            const at::Tensor& z, const at::Tensor& psi, const at::Tensor& y,
                            const at::Tensor& pre_trace, const at::Tensor& adapt_trace,
                            const at::Tensor& filt_trace, const at::Tensor& out_trace,
                            const at::Tensor& grad_w, const at::Tensor& grad_out,
                            const at::Tensor& outputs) {
  check_dim(x, 3, kOp, "x", "(T, batch, n_in)");
  check_real(x, kOp, "x");
  TORCH_CHECK_VALUE(mode >= 0 && mode < kNumSignalModes, kOp, ": signal_mode must be 0 (mse), 1 "
                    "(cross-entropy) or 2 (given signal), got ", mode);
  TORCH_CHECK_VALUE(neuron.size() == 6, kOp, ": neuron must hold (alpha, rho, beta, v_th, "
                    "gamma, kappa), got ", neuron.size(), " values");
  static const char* const kNeuronNames[6] = {"alpha (neuron[0])", "rho (neuron[1])",
                                               "beta (neuron[2])", "v_th (neuron[3])",
                                               "gamma (neuron[4])", "kappa (neuron[5])"};
  for (int i = 0; i < 6; ++i) check_finite(neuron[i], kOp, kNeuronNames[i]);
  TORCH_CHECK_VALUE(neuron[3] > 0, kOp, ": v_th (neuron[3]) must be positive, got ", neuron[3]);
  check_finite(loss_scale, kOp, "loss_scale");
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  check_dim(weight_rec, 2, kOp, "weight_rec", "(hidden, hidden)");
  const int64_t H = weight_rec.size(0);
  check_dim(weight_out, 2, kOp, "weight_out", "(n_out, hidden)");
  const int64_t K = weight_out.size(0);
  const int64_t P = I + H;
  check_like_x(weight_in, x, {H, I}, "weight_in", "(hidden, n_in)");
  check_like_x(weight_rec, x, {H, H}, "weight_rec", "(hidden, hidden)");
  check_like_x(weight_out, x, {K, H}, "weight_out", "(n_out, hidden)");
  check_like_x(bias_out, x, {K}, "bias_out", "(n_out,)");
  check_like_x(feedback, x, {K, H}, "feedback", "(n_out, hidden)");

  PreparedChunk p;
  p.mode = static_cast<SignalMode>(mode);
  p.adaptive = adaptive;
  if (p.mode == SignalMode::Given) {
    TORCH_CHECK_VALUE(signal.has_value() && signal->defined(), kOp,
                      ": signal_mode 2 (given signal) needs signal (T, batch, hidden)");
    check_like_x(*signal, x, {T, B, H}, "signal", "(T, batch, hidden)");
    p.signal = signal->detach().contiguous();
  } else {
    TORCH_CHECK_VALUE(target.has_value() && target->defined(), kOp, ": signal_mode ", mode,
                      " needs target");
    if (p.mode == SignalMode::Mse) {
      check_like_x(*target, x, {T, B, K}, "target", "(T, batch, n_out) for mse");
    } else {
      TORCH_CHECK_VALUE(K >= 1, kOp, ": cross-entropy needs at least one output (weight_out has 0 rows)");
      TORCH_CHECK_TYPE(target->scalar_type() == at::kLong, kOp,
                       ": target must be int64 class indices for cross-entropy, got ",
                       target->scalar_type());
      check_same_device(*target, x, kOp, "target", "x");
      check_shape(*target, {T, B}, "target", "(T, batch) for cross-entropy");
      // The kernels would read a label >= n_out as "no class" (the reference
      // raises): refuse it here, for both backends (one sync on CUDA).
      if (target->numel() > 0) {
        const int64_t top = target->max().item<int64_t>();
        TORCH_CHECK_VALUE(top < K, kOp, ": target holds class ", top, " but weight_out has ", K,
                          " outputs (labels must lie in [0, ", K, "), or < 0 for no loss)");
      }
    }
    p.target = target->detach().contiguous();
  }

  check_state(v, x, {B, H}, "v", "(batch, hidden)");
  check_state(z, x, {B, H}, "z", "(batch, hidden)");
  check_state(y, x, {B, K}, "y", "(batch, n_out)");
  check_state(pre_trace, x, {B, P}, "pre_trace", "(batch, n_in + hidden)");
  check_state(out_trace, x, {B, H + 1}, "out_trace", "(batch, hidden + 1)");
  check_state(grad_w, x, {H, P}, "grad_w", "(hidden, n_in + hidden)");
  check_state(outputs, x, {T, B, K}, "outputs", "(T, batch, n_out)");
  if (adaptive) {
    check_state(a, x, {B, H}, "a", "(batch, hidden)");
    check_state(psi, x, {B, H}, "psi", "(batch, hidden)");
    check_state(adapt_trace, x, {B, H, P}, "adapt_trace", "(batch, hidden, n_in + hidden)");
  }
  if (p.mode != SignalMode::Given) {
    check_state(filt_trace, x, {B, H, P}, "filt_trace", "(batch, hidden, n_in + hidden)");
    check_state(grad_out, x, {K, H + 1}, "grad_out", "(n_out, hidden + 1)");
  }

  TensorRoles roles;
  roles.input(x, "x");
  roles.input(weight_in, "weight_in");
  roles.input(weight_rec, "weight_rec");
  roles.input(weight_out, "weight_out");
  roles.input(bias_out, "bias_out");
  roles.input(feedback, "feedback");
  if (p.target.defined()) roles.input(*target, "target");
  if (p.signal.defined()) roles.input(*signal, "signal");
  roles.output(v, "v");
  roles.output(z, "z");
  roles.output(y, "y");
  roles.output(pre_trace, "pre_trace");
  roles.output(out_trace, "out_trace");
  roles.output(grad_w, "grad_w");
  roles.output(outputs, "outputs");
  if (adaptive) {
    roles.output(a, "a");
    roles.output(psi, "psi");
    roles.output(adapt_trace, "adapt_trace");
  }
  if (p.mode != SignalMode::Given) {
    roles.output(filt_trace, "filt_trace");
    roles.output(grad_out, "grad_out");
  }
  roles.check(kOp);

  // Inputs may require grad: the op reads their data and records nothing.
  p.x = x.detach().contiguous();
  p.weight_rec = weight_rec.detach().contiguous();
  p.weight_out = weight_out.detach().contiguous();
  p.bias_out = bias_out.detach().contiguous();
  p.feedback = feedback.detach().contiguous();
  p.in_current = at::matmul(p.x, weight_in.detach().t()).contiguous();

  ChunkParams& c = p.params;
  c.in_current = p.in_current.const_data_ptr();
  c.weight_rec = p.weight_rec.const_data_ptr();
  c.weight_out = p.weight_out.const_data_ptr();
  c.bias_out = p.bias_out.const_data_ptr();
  c.feedback = p.feedback.const_data_ptr();
  c.x = p.x.const_data_ptr();
  c.target = p.target.defined() ? p.target.const_data_ptr() : nullptr;
  c.signal = p.signal.defined() ? p.signal.const_data_ptr() : nullptr;
  c.v = v.data_ptr();
  c.z = z.data_ptr();
  c.y = y.data_ptr();
  c.pre_trace = pre_trace.data_ptr();
  c.out_trace = out_trace.data_ptr();
  c.grad_w = grad_w.data_ptr();
  c.outputs = outputs.data_ptr();
  if (adaptive) {
    c.a = a.data_ptr();
    c.psi = psi.data_ptr();
    c.adapt_trace = adapt_trace.data_ptr();
  }
  if (p.mode != SignalMode::Given) {
    c.filt_trace = filt_trace.data_ptr();
    c.grad_out = grad_out.data_ptr();
  }
  c.steps = T;
  c.batch = B;
  c.n_in = I;
  c.hidden = H;
  c.n_out = K;
  c.alpha = neuron[0];
  c.rho = neuron[1];
  c.beta = adaptive ? neuron[2] : 0.0;
  c.v_th = neuron[3];
  c.gamma = neuron[4];
  c.kappa = neuron[5];
  c.loss_scale = loss_scale;
  return p;
}

}  // namespace localgrad::eprop_lif
