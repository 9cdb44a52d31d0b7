"""PEPITA: Present the Error to Perturb the Input To modulate Activity
(Dellaferrera & Kreiman 2022, "Error-driven Input Modulation: Solving the
Credit Assignment Problem without a Backward Pass", ICML, Algorithm 1).

Two forward passes and no backward pass. The first, on the input x:
h_0 = x, h_l = s_l(W_l h_{l-1} + b_l), output h_L (logits), error
e = softmax(h_L) - onehot(y) for cross-entropy (h_L - y for "mse"). The
second on the input modulated by a fixed random projection F (n_in, n_out)
of the error:

    h_0^mod = x + F e,      h_l^mod = s_l(W_l h_{l-1}^mod + b_l),

and the updates (the minus-update written into .grad, batch-mean):

    dW_l = (h_l - h_l^mod) (h_{l-1}^mod)^T     hidden layers l < L
    dW_L = e (h_{L-1}^mod)^T                   output layer
    db_l = h_l - h_l^mod,  db_L = e            (the paper's nets have no
                                                biases; this is their analogue)

with h the block outputs after the activation. F's entries are uniform in
+-feedback_scale * sqrt(6 / n_out), feedback_scale 0.05 (the authors' code,
Srinivasan et al.'s repository); the paper writes the modulation x + F e,
and since F is symmetric about zero, x - F e is the same rule in law.
With F = 0 the second pass equals the first and every hidden update
vanishes; the output layer's update is then cross-entropy's gradient.

Weight decay: dW_l += weight_decay * W_l (Dellaferrera & Kreiman train with
weight decay; Srinivasan et al. 2024 find it needed in deeper nets).

Adaptive feedback (Srinivasan, Mignacco, Sorbaro, Refinetti, Cooper,
Kreiman & Dellaferrera 2024, "Forward Learning with Top-Down Feedback:
Empirical and Analytical Characterization", ICLR, sec. 5, weight mirroring
after Akrout et al. 2019): F = B_1 B_2 ... B_L with B_l (n_{l-1}, n_l),
and each B_l is driven toward the transpose of its layer by zero-mean noise
xi_l (mirror_batch, n_{l-1}) of amplitude sigma through the block:

    dB_1 = + xi_1^T s_1(W_1 xi_1 + b_1) / mirror_batch
    dB_l = - xi_l^T s_l(W_l xi_l + b_l) / mirror_batch      (l > 1)

(the .grad of B; descending it grows B_1 along -W_1^T and the others along
W_l^T, so F aligns with -(W_L ... W_1)^T and the modulation x + F e pushes
the output against its error). B_l start normal with standard deviation
(feedback_scale sqrt(2 / n_in) / sqrt(prod of hidden widths))^(1/L), so
their product has the fixed F's scale (the authors' code).

Shapes: x: (batch, n_in); e: (batch, n_out); F: (n_in, n_out);
h_l: (batch, n_l); W_l: (n_l, n_{l-1}).
"""

from __future__ import annotations

from typing import Callable

import torch

Layer = tuple[torch.Tensor, torch.Tensor | None, Callable[[torch.Tensor], torch.Tensor]]


def forward(layers: list[Layer], x: torch.Tensor) -> list[torch.Tensor]:
    """[h_0, h_1, ..., h_L] for layers [(W, b, s)]: h_l = s(h_{l-1} W^T + b)."""
    hs = [x]
    for w, b, s in layers:
        z = hs[-1] @ w.T + (0 if b is None else b)
        hs.append(s(z))
    return hs


def output_error(out: torch.Tensor, target: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """e: (batch, n_out), target as (batch, n_out) one-hot rows or probabilities."""
    return torch.softmax(out, 1) - target if loss == "ce" else out - target


def pepita_updates(layers: list[Layer], x: torch.Tensor, target: torch.Tensor, feedback: torch.Tensor,
                   loss: str = "ce", weight_decay: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(dW_l, db_l)]: the batch-mean PEPITA update of every layer (the
    minus-update, as .grad takes it)."""
    hs = forward(layers, x)
    e = output_error(hs[-1], target, loss)
    hs_mod = forward(layers, x + e @ feedback.T)
    batch = x.shape[0]
    updates = []
    for l, (w, _, _) in enumerate(layers):
        delta = e if l == len(layers) - 1 else hs[l + 1] - hs_mod[l + 1]
        updates.append((delta.T @ hs_mod[l] / batch + weight_decay * w, delta.mean(0)))
    return updates


def mirror_updates(layers: list[Layer], noise: list[torch.Tensor]) -> list[torch.Tensor]:
    """[dB_l]: weight mirroring's .grad for each B_l from its noise xi_l."""
    out = []
    for l, ((w, b, s), xi) in enumerate(zip(layers, noise)):
        y = s(xi @ w.T + (0 if b is None else b))
        out.append((1.0 if l == 0 else -1.0) * xi.T @ y / xi.shape[0])
    return out
