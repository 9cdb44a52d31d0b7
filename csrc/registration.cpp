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
}
