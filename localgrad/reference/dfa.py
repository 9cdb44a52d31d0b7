"""Direct Feedback Alignment, reference implementation.

Nøkland, "Direct Feedback Alignment Provides Learning in Deep Neural Networks",
NeurIPS 2016, eq. (3)-(4) (the DFA case of Fig. 1): the output error e is sent
to every hidden layer l through a fixed random matrix B_l,

    delta_l = (e @ B_l) * f'(a_l),        grad W_l = delta_l^T @ h_(l-1),

where a_l is layer l's pre-activation and h_l = f(a_l) its output. (The paper
writes B_l e with column vectors; with row-major batches it is e @ B_l, B_l
of shape (n_out, width_l).) All B_l are stored side by side as one
(n_out, sum of widths) matrix so that one product serves every layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from localgrad.activations import derivative_from_output


def dfa_project(
    error: torch.Tensor,
    feedback: torch.Tensor,
    activations: Sequence[torch.Tensor | None],
    kinds: Sequence[int],
    slopes: Sequence[float],
    widths: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """Every hidden layer's DFA error signal.

    error: (batch, n_out), dL/dy at the model's output.
    feedback: (n_out, total_width), [B_1 | B_2 | ... | B_L].
    activations[l]: (batch, width_l), the layer's output h_l = f(a_l), or
        f'(a_l) itself when kinds[l] is Activation.DERIVATIVE, or None for an
        identity layer.
    kinds[l], slopes[l]: the layer's Activation and LeakyReLU slope.
    widths: the layers' widths; needed only when an activation is None.
    Returns delta_l: (batch, width_l) for each layer, in error's dtype
    (computed in float32 for half types).
    """
    if widths is None:
        widths = [h.shape[1] for h in activations]
    acc = torch.promote_types(error.dtype, torch.float32)
    projected = error.to(acc) @ feedback.to(acc)  # (batch, total_width): B_l e for all l
    deltas = []
    for block, h, kind, slope in zip(projected.split(list(widths), dim=1), activations, kinds, slopes):
        if h is not None:
            block = block * derivative_from_output(h.to(acc), kind, slope)
        deltas.append(block.to(error.dtype))
    return deltas
