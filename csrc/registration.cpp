// Every op of localgrad, declared once. Backends register their kernels under
// TORCH_LIBRARY_IMPL in their own files; fake (meta) kernels for torch.compile
// live in localgrad/ops.py.
#include <torch/library.h>

TORCH_LIBRARY(localgrad, m) {
  // Direct Feedback Alignment (Nøkland 2016), all hidden layers in one call:
  //   out[l] = (error @ feedback[:, cols of layer l]) * f'(a_l)
  // error: (batch, n_out); feedback: (n_out, sum of widths), the layers' B_l
  // side by side; activations[l]: (batch, width_l), the layer's output
  // h_l = f(a_l) (or f'(a_l) itself for kind 0; None for identity);
  // kinds/slopes: activation code and LeakyReLU slope per layer
  // (localgrad/activations.py); out[l]: (batch, width_l), written.
  m.def(
      "dfa_project(Tensor error, Tensor feedback, Tensor?[] activations, "
      "int[] kinds, float[] slopes, Tensor(a!)[] out) -> ()");

  // Sign-concordant feedback (Liao, Leibo & Poggio 2016), written into `out`
  // (weight's shape): scale * sign(weight) (uSF), or, with random_magnitude,
  // |R| * sign(weight) with R ~ U(-scale, scale) drawn by the counter-based
  // RNG from (seed, counter, element index) (brSF advances counter, frSF not).
  m.def(
      "sign_feedback(Tensor weight, int seed, int counter, float scale, "
      "bool random_magnitude, Tensor(a!) out) -> ()");
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
  m.def(
      "eprop_lif_chunk(Tensor x, Tensor weight_in, Tensor weight_rec, Tensor weight_out, "
      "Tensor bias_out, Tensor feedback, Tensor? target, Tensor? signal, float[] neuron, "
      "bool adaptive, int signal_mode, float loss_scale, Tensor(a!) v, Tensor(b!) a, Tensor(c!) z, "
      "Tensor(d!) psi, Tensor(e!) y, Tensor(f!) pre_trace, Tensor(g!) adapt_trace, "
      "Tensor(h!) filt_trace, Tensor(i!) out_trace, Tensor(j!) grad_w, Tensor(k!) grad_out, "
      "Tensor(l!) outputs) -> ()");
}
