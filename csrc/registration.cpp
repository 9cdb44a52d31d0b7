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

  // Online RNN learning of the leaky rate RNN (localgrad/online), θ laid out
  // per unit as rows [W_ih | W_hh | b] of C = I + H + 1 columns
  // (csrc/online_rnn.h); weight_hh is the masked W_hh, hh_mask its pattern.
  // RTRL (Williams & Zipser 1989): influence (batch, H, H*C) -> M_t =
  // (1-α) M + α φ'(a) ⊙ (W_hh M + Ī).
  m.def(
      "rtrl_step(Tensor influence, Tensor weight_hh, Tensor h_prev, Tensor x, "
      "Tensor dphi, Tensor? hh_mask, float alpha) -> Tensor");
  // SnAp-n (Menick et al. 2021): the same update on kept entries (unit k,
  // row i), influence (batch, E, C), neighbour lists in CSR form.
  m.def(
      "snap_step(Tensor influence, Tensor weight_hh, Tensor h_prev, Tensor x, "
      "Tensor dphi, Tensor? hh_mask, float alpha, Tensor entry_unit, "
      "Tensor entry_row, Tensor nbr_ptr, Tensor nbr_entry, Tensor nbr_weight) -> Tensor");
  // RFLO (Murray 2019) / rate e-prop: eligibility traces (batch, H, C) over a
  // chunk of T steps and Σ_t Σ_b signal ⊙ trace -> (trace_T, grad (H, C)).
  m.def(
      "rflo_chunk(Tensor trace, Tensor xs, Tensor h_prevs, Tensor dphis, "
      "Tensor signals, Tensor? hh_mask, float alpha) -> (Tensor, Tensor)");
  // UORO (Tallec & Ollivier 2017): one rank-one update of (s̃ (batch, H),
  // θ̃ (batch, H, C)) with random signs nu.
  m.def(
      "uoro_step(Tensor s_tilde, Tensor theta_tilde, Tensor weight_hh, Tensor nu, "
      "Tensor h_prev, Tensor x, Tensor dphi, Tensor? hh_mask, float alpha, "
      "float eps) -> (Tensor, Tensor)");
}
