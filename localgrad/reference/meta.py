"""Meta-learned plasticity, reference implementation.

Instead of designing a local learning rule by hand, parameterise it and learn
its parameters (the meta-parameters) with an outer loop, ordinary backprop
through the inner learning loop or evolution strategies ("Don't mess with
backprop", Kirsch & Schmidhuber 2021, VSML). Everything here is plain
differentiable PyTorch: autograd through `episode` is the meta-gradient.

Shapes: pre-synaptic activity x (..., batch, n_in), post-synaptic activity y
(..., batch, n_out), weight W (..., n_out, n_in), W[k, i] from input i to unit
k. Leading dimensions (independent episodes, an ES population) broadcast.
Updates are batch means (a batch of one is the online rule), as in
localgrad.reference.hebbian.
"""

from __future__ import annotations

from typing import Callable

import torch

# Parameterised local rules ---------------------------------------------------
#
# Polynomial rule (Confavreux, Zenke, Agnes, Lillicrap & Vogels 2020, "A
# meta-learning approach to (re)discover plasticity rules that carve a desired
# function into a neural network", NeurIPS, eq. (2)): every term up to second
# order in the pre-synaptic rate, the post-synaptic rate and the weight,
#     dW_ki = lr sum_{a,b,c in {0,1,2}} theta_abc <x_i^a y_k^b>_batch W_ki^c,
# 27 coefficients theta (3, 3, 3), theta[a, b, c] the x^a y^b w^c term.
# Oja's rule (Oja 1982) dw = y x - y^2 w is theta_110 = 1, theta_021 = -1.
#
# ABCD rule (Najarro & Risi 2020, "Meta-learning through Hebbian plasticity in
# random networks", NeurIPS, eq. (1); after Soltoggio et al. 2008), o_i the
# pre-synaptic and o_j the post-synaptic activity:
#     dw_ij = eta_ij (A_ij o_i o_j + B_ij o_i + C_ij o_j + D_ij)
# here dW_ki = eta (A <y_k x_i> + B <x_i> + C <y_k> + D), each coefficient a
# scalar (shared by every synapse) or a tensor broadcasting against W
# (per synapse: (n_out, n_in); per input: (1, n_in); ...). A alone is plain
# Hebb, dW = eta A <y x^T>.

POLYNOMIAL_ORDER = 3  # exponents 0, 1, 2 of x, y and w
OJA_THETA = {(1, 1, 0): 1.0, (0, 2, 1): -1.0}


def polynomial_theta(terms: dict | None = None, *, dtype=torch.float64) -> torch.Tensor:
    """theta (3, 3, 3) with the given {(a, b, c): value} terms, the rest 0;
    polynomial_theta(OJA_THETA) is Oja's rule."""
    theta = torch.zeros(POLYNOMIAL_ORDER, POLYNOMIAL_ORDER, POLYNOMIAL_ORDER, dtype=dtype)
    for (a, b, c), value in (terms or {}).items():
        theta[a, b, c] = value
    return theta


def _batch_mean_outer(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """<y x^T>_batch: (..., n_out, n_in); an empty batch gives zeros."""
    return y.transpose(-1, -2) @ x / max(x.shape[-2], 1)


def polynomial_update(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, theta: torch.Tensor,
                      lr: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Confavreux et al.'s polynomial rule: dW (..., n_out, n_in) =
    lr sum_abc theta_abc <x^a y^b> W^c. theta: (..., 3, 3, 3), its leading
    dimensions broadcasting against W's."""
    n = max(x.shape[-2], 1)
    ones = torch.ones_like
    pre = torch.stack((ones(x), x, x * x), -2)  # (..., batch, 3, n_in): x^a
    post = torch.stack((ones(y), y, y * y), -2)  # (..., batch, 3, n_out): y^b
    moments = torch.einsum("...nbk,...nai->...abki", post, pre) / n  # <x^a y^b>, (..., 3, 3, n_out, n_in)
    powers = torch.stack((ones(weight), weight, weight * weight), -3)  # (..., 3, n_out, n_in): W^c
    factors = torch.einsum("...abc,...cki->...abki", theta, powers)  # sum_c theta_abc W^c
    update = (moments * factors).sum((-4, -3))
    return lr * update


def abcd_update(x: torch.Tensor, y: torch.Tensor, A, B, C, D, lr=1.0) -> torch.Tensor:
    """Najarro & Risi's ABCD rule: dW (..., n_out, n_in) =
    lr (A <y x^T> + B <x> + C <y> + D); A, B, C, D and lr are scalars or
    tensors broadcasting against W."""
    n = max(x.shape[-2], 1)
    mean_x = x.sum(-2, keepdim=True) / n  # (..., 1, n_in): o_i, the pre-synaptic term
    mean_y = (y.sum(-2) / n).unsqueeze(-1)  # (..., n_out, 1): o_j, the post-synaptic term
    return lr * (A * _batch_mean_outer(y, x) + B * mean_x + C * mean_y + D)


def hebb_update(x: torch.Tensor, y: torch.Tensor, lr=1.0) -> torch.Tensor:
    """Plain Hebb, dW = lr <y x^T> (Hebb 1949)."""
    return lr * _batch_mean_outer(y, x)


def episode(update: Callable, weight: torch.Tensor, inputs: torch.Tensor, post: torch.Tensor | None = None,
            activation: Callable | None = None, history: bool = False):
    """The inner loop: T plastic steps of one layer.

    inputs: (T, ..., batch, n_in); post: None, or (T, ..., batch, n_out) the
    post-synaptic activity imposed at each step (a teacher clamping the
    units, as in supervised Hebbian learning). Step t:
        y_t = post[t] if given, else activation(x_t W_t^T) (identity if None)
        W_{t+1} = W_t + update(x_t, y_t, W_t)
    Returns W_T, or the list [W_0, ..., W_T] if history. Autograd through this
    loop stores every step's activations: memory O(T (n_out n_in + batch
    (n_in + n_out))) per episode."""
    weights = [weight]
    for t in range(inputs.shape[0]):
        x = inputs[t]
        if post is not None:
            y = post[t]
        else:
            y = x @ weight.transpose(-1, -2)
            if activation is not None:
                y = activation(y)
        weight = weight + update(x, y, weight)
        if history:
            weights.append(weight)
    return weights if history else weight
