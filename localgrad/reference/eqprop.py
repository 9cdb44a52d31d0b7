"""Equilibrium Propagation, reference implementation.

Scellier & Bengio, "Equilibrium Propagation: Bridging the Gap between
Energy-Based Models and Backpropagation", Front. Comput. Neurosci. 2017, in the
discrete-time "prototypical" setting of Ernoult et al., "Updates of
Equilibrium Prop Match Gradients of Backprop Through Time in an RNN with Static
Input", NeurIPS 2019, eq. (3)-(5), and Laborieux et al., "Scaling Equilibrium
Propagation to Deep ConvNets by Drastically Reducing its Gradient Estimator
Bias", Front. Neurosci. 2021, eq. (1)-(4) (centered estimate).

Layers s_0 = x (clamped), s_1 ... s_L; weights W_i: (n_{i+1}, n_i), biases
b_i: (n_{i+1},) (layer i maps s_i to s_{i+1}, as nn.Linear). Primitive function

    Phi(x, s, theta) = sum_i s_{i+1}^T (W_i s_i + b_i).

One relaxation step sets every updated layer to

    s_k <- sigma(dPhi/ds_k) = sigma(W_{k-1} s_{k-1} + b_{k-1} + W_k^T s_{k+1})

(the last term absent for the output layer k = L), where the output layer in a
nudged phase adds -beta * dl/ds_L: l = 1/2 ||s_L - y||^2 (mse, dl/ds_L =
s_L - y) or the cross-entropy of softmax(s_L) (ce, dl/ds_L = softmax(s_L) - y).
A clamped phase (contrastive Hebbian learning, Movellan 1991) instead fixes
s_L = y. sigma is the hard sigmoid clamp(., 0, 1) (the default), the
logistic sigmoid, or tanh.

Synchronous steps compute every layer from the previous state; asynchronous
steps update the even layers (k = 2, 4, ...) first and then the odd layers
from the fresh even ones (Scellier et al. 2023).

Early exit, per row: a row whose units all moved by less than `tol` (max abs
over every updated layer) in a step is frozen from then on; the relaxation
stops when every row is frozen or `steps` steps ran. What is returned per row
is the number of steps it ran. tol <= 0 never freezes.

Update (the contrastive estimate of -dl/dtheta, per sample): with
dPhi/dW_i = s_{i+1} s_i^T and dPhi/db_i = s_{i+1},

    eqprop_update:  grad W_i = scale * sum_n (a_{i+1} a_i^T - b_{i+1} b_i^T)
                    grad b_i = scale * sum_n (a_{i+1} - b_{i+1})

for two phases' states a and b (a_0 = b_0 = x). One-sided EqProp takes
a = s^0, b = s^beta, scale = 1/(beta N); centered takes a = s^-beta,
b = s^beta, scale = 1/(2 beta N); CHL takes a = free, b = clamped, scale 1/N.
Then grad approximates dl/dtheta of the batch-mean loss at the free fixed
point (Scellier & Bengio 2017, Theorem 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Codes shared with the kernels (csrc/eqprop.h); append, never renumber.
HARDSIGMOID, SIGMOID, TANH = 0, 1, 2
ACTIVATIONS = {"hardsigmoid": HARDSIGMOID, "sigmoid": SIGMOID, "tanh": TANH}
FREE, NUDGE_MSE, NUDGE_CE, CLAMP = 0, 1, 2, 3


def sigma(u: torch.Tensor, activation: int) -> torch.Tensor:
    if activation == HARDSIGMOID:
        return u.clamp(0.0, 1.0)
    if activation == SIGMOID:
        return torch.sigmoid(u)
    if activation == TANH:
        return torch.tanh(u)
    raise ValueError(f"eqprop: unknown activation code {activation}")


def loss_gradient(s_out: torch.Tensor, target: torch.Tensor, nudge: int) -> torch.Tensor:
    """dl/ds_L per sample: mse 1/2||s_L - y||^2, or cross-entropy of softmax(s_L)."""
    if nudge == NUDGE_MSE:
        return s_out - target
    return torch.softmax(s_out, dim=1) - target


def eqprop_relax(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    states: Sequence[torch.Tensor],
    target: torch.Tensor | None = None,
    beta: float = 0.0,
    nudge: int = FREE,
    activation: int = HARDSIGMOID,
    steps: int = 20,
    async_update: bool = False,
    tol: float = 0.0,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """`steps` relaxation steps from `states`.

    x: (batch, n_0). weights[i]: (n_{i+1}, n_i); biases[i]: (n_{i+1},).
    states[i]: (batch, n_{i+1}), the initial s_{i+1} (not modified).
    target: (batch, n_L), y (one-hot or any float target); needed when
    nudge is NUDGE_MSE, NUDGE_CE or CLAMP. Returns the new states and the
    steps each row ran, (batch,) int64.
    """
    n_layers = len(weights)
    s = [t.clone() for t in states]
    drive = x @ weights[0].T + biases[0]  # constant across steps
    if nudge == CLAMP:
        s[-1] = target.to(s[-1].dtype).clone()
    updated = list(range(n_layers - 1 if nudge == CLAMP else n_layers))
    if async_update:
        # state index j holds layer k = j + 1: even layers have odd j.
        groups = [[j for j in updated if (j + 1) % 2 == 0], [j for j in updated if (j + 1) % 2 == 1]]
    else:
        groups = [updated]
    batch = x.shape[0]
    ran = torch.zeros(batch, dtype=torch.int64, device=x.device)
    active = torch.ones(batch, dtype=torch.bool, device=x.device)
    for _ in range(steps):
        if not bool(active.any()):
            break
        delta = torch.zeros(batch, dtype=x.dtype, device=x.device)
        for group in groups:
            new = {}
            for j in group:
                pre = drive if j == 0 else s[j - 1] @ weights[j].T + biases[j]
                if j < n_layers - 1:
                    pre = pre + s[j + 1] @ weights[j + 1]
                elif nudge in (NUDGE_MSE, NUDGE_CE):
                    pre = pre - beta * loss_gradient(s[j], target, nudge)
                new[j] = sigma(pre, activation)
            for j, value in new.items():
                delta = torch.maximum(delta, (value - s[j]).abs().amax(dim=1))
                s[j] = torch.where(active[:, None], value, s[j])
        ran += active.to(torch.int64)
        active = active & ~(delta < tol)
    return s, ran


def eqprop_update(
    x: torch.Tensor,
    states_a: Sequence[torch.Tensor],
    states_b: Sequence[torch.Tensor],
    scale: float,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """scale * (dPhi/dtheta(a) - dPhi/dtheta(b)), summed over the batch, for
    every layer: returns (weight grads (n_{i+1}, n_i), bias grads (n_{i+1},))."""
    a = [x, *states_a]
    b = [x, *states_b]
    grad_w = [scale * (a[i + 1].T @ a[i] - b[i + 1].T @ b[i]) for i in range(len(states_a))]
    grad_b = [scale * (a[i + 1] - b[i + 1]).sum(0) for i in range(len(states_a))]
    return grad_w, grad_b
