// Every op of localgrad, declared once. Backends register their kernels under
// TORCH_LIBRARY_IMPL in their own files; fake (meta) kernels for torch.compile
// live in localgrad/ops/<family>.py. Each family's set_python_module names
// that module for the defs after it: torch then requires the fake kernel to be
// registered from there, and an op traced before it was imported gets an error
// saying which module to import, not "no fake impl".
// The emulated CUDA backend (LOCALGRAD_CUDA_EMULATION, localgrad._C_emulated)
// declares the same list in the namespace localgrad_emulated, for CPU tensors.
#include <torch/library.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

// The names of the ops defined below, for the registrations after the list.
std::vector<std::string>& op_names() {
  static std::vector<std::string> names;
  return names;
}

void def(torch::Library& m, const char* schema) {
  m.def(schema);
  op_names().emplace_back(schema, std::strchr(schema, '(') - schema);
}

// localgrad's ops compute in their inputs' dtype. Under torch.autocast, the
// products the glue runs through ATen would come back in bf16/fp16 into
// buffers that the kernels read as the inputs' dtype: every op runs with
// autocast off instead (its dtype checks then see the tensors as given).
void without_autocast(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  op.callBoxed(stack);
}

void register_without_autocast(torch::Library& m) {
  for (const std::string& name : op_names()) {
    m.impl(name.c_str(), torch::CppFunction::makeFromBoxedFunction<&without_autocast>());
  }
}

// The fake kernels are registered from each family's module for the localgrad
// namespace; the emulated namespace's are registered by localgrad.ops when
// it loads, so its schemas name no module.
void set_module(torch::Library& m, const char* module) {
#if defined(LOCALGRAD_CUDA_EMULATION)
  (void)m;
  (void)module;
#else
  m.set_python_module(module);
#endif
}

void define_ops(torch::Library& m) {
  set_module(m, "localgrad.ops.dfa");
  // Direct Feedback Alignment (Nøkland 2016), all hidden layers in one call:
  //   out[l] = (error @ feedback[:, cols of layer l]) * f'(a_l)
  // error: (batch, n_out); feedback: (n_out, sum of widths), the layers' B_l
  // side by side; activations[l]: (batch, width_l), the layer's output
  // h_l = f(a_l) (or f'(a_l) itself for kind 0; None for identity);
  // kinds/slopes: activation code and LeakyReLU slope per layer
  // (localgrad/activations.py); out[l]: (batch, width_l), written.
  def(m,
      "dfa_project(Tensor error, Tensor feedback, Tensor?[] activations, "
      "int[] kinds, float[] slopes, Tensor(a!)[] out) -> ()");

  set_module(m, "localgrad.ops.sign_feedback");
  // Sign-concordant feedback (Liao, Leibo & Poggio 2016), written into `out`
  // (weight's shape): scale * sign(weight) (uSF), or, with random_magnitude,
  // |R| * sign(weight) with R ~ U(-scale, scale) drawn by the counter-based
  // RNG from (seed, counter, element index) (brSF advances counter, frSF not).
  def(m,
      "sign_feedback(Tensor weight, int seed, int counter, float scale, "
      "bool random_magnitude, Tensor(a!) out) -> ()");

  set_module(m, "localgrad.ops.eqprop");
  // Equilibrium Propagation (Scellier & Bengio 2017), prototypical setting
  // (Ernoult et al. 2019): `steps` relaxation steps of the whole layered
  // network in one call, in place in `states` (states[i]: (batch, n_{i+1}),
  // the initial s_{i+1}; warm starts are just non-zero states):
  //   s_k <- sigma(W_{k-1} s_{k-1} + b_{k-1} + W_k^T s_{k+1}) (s_0 = x),
  // the output nudged by -beta dl/ds_L (nudge 1 mse, 2 cross-entropy of
  // softmax(s_L)) or clamped to target (3, CHL); 0 is the free phase.
  // activation: 0 hardsigmoid clamp(.,0,1), 1 sigmoid, 2 tanh. async_update:
  // even layers, then odd ones. A row that moved less than tol stops.
  // Returns the steps each row ran, (batch,) int64.
  def(m,
      "eqprop_relax(Tensor x, Tensor[] weights, Tensor[] biases, Tensor(a!)[] states, "
      "Tensor? target, float beta, int nudge, int activation, int steps, "
      "bool async_update, float tol) -> Tensor");

  // EqProp / CHL contrastive update of every layer (a_0 = b_0 = x):
  //   weight_grads[i] = scale * (a_{i+1}^T a_i - b_{i+1}^T b_i)
  //   bias_grads[i]   = scale * sum over the batch of (a_{i+1} - b_{i+1})
  def(m,
      "eqprop_update(Tensor x, Tensor[] states_a, Tensor[] states_b, float scale, "
      "Tensor(a!)[] weight_grads, Tensor(b!)[] bias_grads) -> ()");

  set_module(m, "localgrad.ops.rtrl");
  // Online RNN learning of the leaky rate RNN (localgrad/online), θ laid out
  // per unit as rows [W_ih | W_hh | b] of C = I + H + 1 columns
  // (csrc/online_rnn.h); weight_hh is the masked W_hh, hh_mask its pattern.
  // RTRL (Williams & Zipser 1989): influence (batch, H, H*C) -> M_t =
  // (1-α) M + α φ'(a) ⊙ (W_hh M + Ī).
  def(m,
      "rtrl_step(Tensor influence, Tensor weight_hh, Tensor h_prev, Tensor x, "
      "Tensor dphi, Tensor? hh_mask, float alpha) -> Tensor");
  set_module(m, "localgrad.ops.snap");
  // SnAp-n (Menick et al. 2021): the same update on kept entries (unit k,
  // row i), influence (batch, E, C), neighbour lists in CSR form.
  def(m,
      "snap_step(Tensor influence, Tensor weight_hh, Tensor h_prev, Tensor x, "
      "Tensor dphi, Tensor? hh_mask, float alpha, Tensor entry_unit, "
      "Tensor entry_row, Tensor nbr_ptr, Tensor nbr_entry, Tensor nbr_weight, "
      "bool check_indices=True) -> Tensor");
  set_module(m, "localgrad.ops.rflo");
  // RFLO (Murray 2019) / rate e-prop: eligibility traces (batch, H, C) over a
  // chunk of T steps and Σ_t Σ_b signal ⊙ trace -> (trace_T, grad (H, C)).
  def(m,
      "rflo_chunk(Tensor trace, Tensor xs, Tensor h_prevs, Tensor dphis, "
      "Tensor signals, Tensor? hh_mask, float alpha) -> (Tensor, Tensor)");
  set_module(m, "localgrad.ops.uoro");
  // UORO (Tallec & Ollivier 2017): one rank-one update of (s̃ (batch, H),
  // θ̃ (batch, H, C)) with random signs nu.
  def(m,
      "uoro_step(Tensor s_tilde, Tensor theta_tilde, Tensor weight_hh, Tensor nu, "
      "Tensor h_prev, Tensor x, Tensor dphi, Tensor? hh_mask, float alpha, "
      "float eps) -> (Tensor, Tensor)");

  set_module(m, "localgrad.ops.eprop_lif");
  // Spiking e-prop (Bellec et al. 2020), LIF or ALIF (adaptive), a chunk of
  // T steps in one call: neuron dynamics, eligibility traces and the weight
  // update, per localgrad/reference/eprop_lif.py. x: (T, batch, n_in);
  // weights of the network and readout; feedback (n_out, hidden): W_out for
  // symmetric e-prop or a fixed random matrix; target: (T, batch, n_out) for
  // signal_mode 0 (mse), int64 (T, batch) for signal_mode 1 (cross-entropy, < 0 = no loss
  // that step); signal: (T, batch, hidden) for signal_mode 2 (given learning signal,
  // unfiltered traces); neuron = (alpha, rho, beta, v_th, gamma, kappa);
  // state (v .. out_trace) updated in place; grad_w (hidden, n_in + hidden)
  // and grad_out (n_out, hidden + 1) accumulated; outputs (T, batch, n_out)
  // written with the readout of every step.
  def(m,
      "eprop_lif_chunk(Tensor x, Tensor weight_in, Tensor weight_rec, Tensor weight_out, "
      "Tensor bias_out, Tensor feedback, Tensor? target, Tensor? signal, float[] neuron, "
      "bool adaptive, int signal_mode, float loss_scale, Tensor(a!) v, Tensor(b!) a, Tensor(c!) z, "
      "Tensor(d!) psi, Tensor(e!) y, Tensor(f!) pre_trace, Tensor(g!) adapt_trace, "
      "Tensor(h!) filt_trace, Tensor(i!) out_trace, Tensor(j!) grad_w, Tensor(k!) grad_out, "
      "Tensor(l!) outputs) -> ()");

  set_module(m, "localgrad.ops.hebbian");
  // Hebbian learning without feedback (localgrad/reference/hebbian.py,
  // csrc/hebbian.h), one whole step of one layer in one call. rule: 0 Oja,
  // 1 Sanger (GHA), 2 BCM (needs theta (n_out,)), 3 SoftHebb, 4 Krotov-Hopfield.
  // x: (batch, n_in); weight: (n_out, n_in). Writes u (batch, n_out), the
  // pre-activations (Krotov: the p-currents), and grad (n_out, n_in) =
  // -rate_k dW_k / (max |dW| if normalize), rate_k = lr (| |w_k|_p - 1 | +
  // 1e-10)^lr_power; dW the batch mean of the rule's update.
  def(m,
      "hebbian_update(Tensor x, Tensor weight, Tensor? theta, int rule, float temperature, "
      "float p, int rank, float anti, float lr, float lr_power, bool normalize, "
      "Tensor(a!) u, Tensor(b!) grad) -> ()");
  set_module(m, "localgrad.ops.predictive_coding");
  // Predictive coding (Whittington & Bogacz 2017; localgrad/reference/
  // predictive_coding.py): all inference steps of an MLP in one call, in
  // place in `states` (a_1..a_{L-1}, the hidden value nodes) and `errors`
  // (eps_1..eps_L, written), with mu_{i+1} = W_i f_i(a_i) + b_i, kinds/slopes
  // the activation of each a_i (codes 1..5 of localgrad/activations.py),
  // target the clamped output (loss 0 mse) or the cross-entropy target (1 ce),
  // the output error eps_L = -output_precision dloss/dmu_L.
  // variant: 0 IL (`steps` steps of size gamma), 1 FPA (predictions fixed at
  // the initial state), 2 Z-IL (node L-1-t moves at step t, errors read at
  // their step), 3 iPC (weights and biases also move every step by lr times
  // the batch-summed update, in place).
  def(m,
      "predictive_coding_infer(Tensor x, Tensor(a!)[] weights, Tensor(b!)[] biases, "
      "Tensor(c!)[] states, Tensor(d!)[] errors, Tensor target, int[] kinds, float[] slopes, "
      "int variant, int loss, float output_precision, int steps, float gamma, float lr) -> ()");
  // The update of every layer: weight_grads[i] = scale * errors[i]^T f_i(a_i),
  // bias_grads[i] = scale * sum over the batch of errors[i] (a_0 = x,
  // a_i = states[i-1]).
  def(m,
      "predictive_coding_update(Tensor x, Tensor[] states, Tensor[] errors, int[] kinds, "
      "float[] slopes, float scale, Tensor(a!)[] weight_grads, Tensor(b!)[] bias_grads) -> ()");

  set_module(m, "localgrad.ops.kfrtrl");
  // KF-RTRL (Mujika et al. 2018; localgrad/reference/online_rnn.py
  // kfrtrl_step): u (batch, r, C), A (batch, r, H, H), signs (batch, r+1) ±1.
  // Rank 1: the reduced (u, A) of the step, (batch, 1, C) and (batch, 1, H, H).
  // Rank r ≥ 2: the r + 1 unreduced terms [u | v], [J A | α D], (batch, r+1, C)
  // and (batch, r+1, H, H), for the OK reduction in ATen (ok_reduce).
  def(m,
      "kfrtrl_step(Tensor u, Tensor A, Tensor weight_hh, Tensor signs, Tensor h_prev, Tensor x, "
      "Tensor dphi, float alpha, float eps, bool check_signs=True) -> (Tensor, Tensor)");
  set_module(m, "localgrad.ops.meta");
  // Plastic layers of differentiable plasticity (Miconi et al. 2018;
  // localgrad/reference/meta.py, csrc/meta.h), a whole episode of T steps:
  //   y_t = f(u_t + (W + alpha ⊙ H_{t-1}) p_t),  H_t = (1-eta) H_{t-1} + eta y_t p_tᵀ
  // u: (T, batch, n_out); x: (T, batch, n_in) plastic inputs, or None for the
  // recurrent layer (p_t = y_{t-1}, y_{-1} = 0); weight, alpha: (n_out, n_in);
  // h0: (batch, n_out, n_in); eta in [0, 1); activation 1 identity, 4 tanh.
  // modulation: (T, batch) m, each step's rate eta m (in [0, 1)) in place of
  // eta; None: eta. Returns (ys, h_T, traces): traces (T, batch, n_out, n_in),
  // H before each step, when store_traces, else (0,).
  def(m,
      "plastic_episode(Tensor u, Tensor? x, Tensor weight, Tensor alpha, Tensor h0, float eta, "
      "int activation, bool store_traces, Tensor? modulation=None) -> (Tensor, Tensor, Tensor)");
  // Its backward, recomputing H_{t-1} = (H_t - eta y_t p_tᵀ) / (1 - eta) from
  // h_T step by step (or reading traces): (grad_u, grad_x ((0,) when
  // recurrent), grad_weight, grad_alpha, grad_eta (0-d), grad_h0,
  // grad_modulation ((0,) without modulation)).
  def(m,
      "plastic_episode_backward(Tensor grad_ys, Tensor? grad_h, Tensor? x, Tensor weight, "
      "Tensor alpha, Tensor ys, Tensor h_T, Tensor? traces, float eta, int activation, "
      "Tensor? modulation=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // --- target propagation (localgrad/ops/target_prop.py) ---
  set_module(m, "localgrad.ops.target_prop");
  // Target propagation's feedback training (Lee 2015 DTP, Ernoult 2022 L-DRL;
  // localgrad/reference/target_prop.py map_feedback_gradients): every linear
  // or gated feedback map g(h) = V (q * h) + c in one call, the closed-form
  // gradient of its feedback loss, the S noise samples (noise_in (S B, n),
  // noise_out (S B, m), ldrl only) stacked into one product per map. Map k:
  // inputs h_{l-1} (B, n), outputs h_l (B, m), gates q (B, m) or [] (q = 1),
  // weights W_l (m, n), biases b_l, fb_weights V (n, m), fb_biases c (n,),
  // kinds/slopes layer l's activation. variant 0 dtp/tp, 1 ldrl. Writes the
  // batch means grad_weights[k] = dV, grad_biases[k] = dc and loss (summed over maps).
  def(m,
      "target_prop_feedback_grads(Tensor[] inputs, Tensor[] outputs, Tensor[] gates, Tensor[] weights, "
      "Tensor[] biases, Tensor[] fb_weights, Tensor[] fb_biases, Tensor[] noise_in, Tensor[] noise_out, "
      "int[] kinds, float[] slopes, int variant, Tensor(a!)[] grad_weights, Tensor(b!)[] grad_biases, "
      "Tensor(c!) loss) -> ()");

  // --- Forward-Forward (localgrad/ops/forward_forward.py) ---
  set_module(m, "localgrad.ops.forward_forward");
  // Forward-Forward (Hinton 2022; localgrad/reference/forward_forward.py
  // step): every layer's local update for a positive batch x_pos (B, n_0)
  // and its negative batch x_neg in one call. Layer l: z = n(h) W_l^T + b_l
  // over both passes in one product, a = f(z) (kinds/slopes), goodness of a
  // row g = sigma s (goodness 0 sumsq, 1 meansq, 2 neg_sumsq), logit
  // u = sigma (s - thresholds[l]), loss 0 threshold (softplus(-u+) +
  // softplus(u-)) or 1 symmetric (softplus(-alpha (u+ - u-))), normalize
  // 0 l2, 1 rms, 2 none of every layer's input (eps in the divisor). Writes
  // the batch means grad_weights[l] (m, n), grad_biases[l] (m,), each row's
  // goodness goodness_out (L, 2, B) (positive, negative) and losses (L,).
  def(m,
      "forward_forward_step(Tensor x_pos, Tensor x_neg, Tensor[] weights, Tensor[] biases, int[] kinds, "
      "float[] slopes, float[] thresholds, int goodness, int loss, int normalize, float alpha, float eps, "
      "Tensor(a!)[] grad_weights, Tensor(b!)[] grad_biases, Tensor(c!) goodness_out, Tensor(d!) losses) -> ()");
}

}  // namespace

#if defined(LOCALGRAD_CUDA_EMULATION)
TORCH_LIBRARY(localgrad_emulated, m) { define_ops(m); }
TORCH_LIBRARY_IMPL(localgrad_emulated, AutocastCPU, m) { register_without_autocast(m); }
#else
TORCH_LIBRARY(localgrad, m) { define_ops(m); }
TORCH_LIBRARY_IMPL(localgrad, AutocastCPU, m) { register_without_autocast(m); }
TORCH_LIBRARY_IMPL(localgrad, AutocastCUDA, m) { register_without_autocast(m); }
#endif
