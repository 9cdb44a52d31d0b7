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
}
