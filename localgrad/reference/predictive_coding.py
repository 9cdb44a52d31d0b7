"""Predictive coding (discriminative), reference implementation.

Whittington & Bogacz, "An Approximation of the Error Backpropagation
Algorithm in a Predictive Coding Network with Local Hebbian Synaptic
Plasticity", Neural Computation 29(5), 2017, eq. (2.5)-(2.9), with the
variants of
  - Millidge, Tschantz & Buckley, "Predictive Coding Approximates Backprop
    along Arbitrary Computation Graphs", Neural Computation 2022 (arXiv 2020),
    sec. 3, the fixed-prediction assumption (FPA);
  - Song, Lukasiewicz, Xu & Bogacz, "Can the Brain Do Backpropagation? Exact
    Implementation of Backpropagation in Predictive Coding Networks",
    NeurIPS 2020, Theorem 1 (zero-divergence inference learning, Z-IL);
  - Salvatori, Song, Yordanov, Millidge, Xu, Sha, Emde, Bogacz &
    Lukasiewicz, "A Stable, Fast, and Fully Automatic Learning Algorithm for
    Predictive Coding Networks", ICLR 2024, Alg. 1 (incremental PC, iPC).

Layers l = 1..L of an MLP; value nodes a_0 = x (clamped), a_1 .. a_{L-1}
(the `states`, each (batch, n_l)); W_l: (n_l, n_{l-1}), b_l: (n_l,) as
nn.Linear; f_l the activation applied to a_l before layer l+1 (kinds[l],
codes of localgrad.activations; kinds[0] acts on the input). Predictions and
errors, per sample:

    mu_l  = W_l f_{l-1}(a_{l-1}) + b_l                         (eq. 2.5)
    eps_l = a_l - mu_l                       for l < L
    eps_L = -pi dloss/dmu_L = pi (y - mu_L)  (mse: the output clamped to y)
          = pi (y - softmax(mu_L))           (ce: the output energy is the
                                              cross-entropy, pcx's PC-CE)
    F     = sum_{l<L} 1/2 ||eps_l||^2 + pi loss(mu_L, y)

pi is the output's precision (Whittington & Bogacz's 1/Sigma_L; 1 by
default); a small pi is a weakly nudged output, under which IL at
equilibrium gives pi times backprop's update up to O(pi^2) (Millidge et al.,
"Backpropagation at the Infinitesimal Inference Limit of Energy-Based
Models", 2022).

Inference (gradient descent on F in the value nodes, eq. 2.7):

    a_l <- a_l + gamma * (-eps_l + f'_l(a_l) * (W_{l+1}^T eps_{l+1}))

every hidden layer at once from the previous state. Learning (eq. 2.9,
local: post-synaptic error times pre-synaptic activity):

    dW_l = eps_l f_{l-1}(a_{l-1})^T,   db_l = eps_l,   -dF/dW_l = dW_l.

Variants (codes shared with csrc/predictive_coding.h):
  IL  (0): `steps` inference steps, errors taken at the final state.
  FPA (1): the predictions mu_l and derivatives f'_l(a_l) stay at their
           values at the initial state (the feed-forward pass): then
           eps_l <- f'(a_l) * W_{l+1}^T eps_{l+1} each step with gamma = 1,
           and after L-1 steps every eps_l is backprop's -dloss/dmu_l.
  ZIL (2): gamma = 1, states start at the feed-forward values, and layer l's
           error is read at step L-l (Song et al.'s schedule). Only the layer
           at the front of the wave (l = L-1-t at step t) changes at step t:
           the updates of the other layers in the paper's dynamics change no
           error that the schedule reads, so the recorded errors, and the
           weight update, are the same (Song et al., proof of Theorem 1).
           min(steps, L-1) steps run; layers the wave did not reach keep the
           error of their initial state.
  IPC (3): the weights move at every step together with the states:
           W_l <- W_l + lr * sum_n eps_l f(a_{l-1})^T, b_l <- b_l + lr *
           sum_n eps_l, from the same errors as the state step; errors at the
           final state (and weights).

The errors returned by `predictive_coding_infer`, with the pre-synaptic
activities, give the update (`predictive_coding_update`):

    grad W_l = scale * sum_n eps_l f_{l-1}(a_{l-1})^T,
    grad b_l = scale * sum_n eps_l

(scale = -1/N for .grad of the batch mean). For Z-IL and FPA the
pre-synaptic activities are the feed-forward ones; then grad equals the
gradient of the batch-mean loss exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from localgrad.activations import Activation
from localgrad.activations import apply as activate
from localgrad.activations import derivative_at as activate_derivative

IL, FPA, ZIL, IPC = 0, 1, 2, 3
VARIANTS = {"il": IL, "fpa": FPA, "zil": ZIL, "ipc": IPC}
MSE, CE = 0, 1
LOSSES = {"mse": MSE, "ce": CE}


def forward(x, weights, biases, kinds, slopes) -> list[torch.Tensor]:
    """The feed-forward values [a_1, ..., a_L] (a_L = mu_L, the model output)."""
    a = [x]
    for l in range(len(weights)):
        a.append(activate(a[l], kinds[l], slopes[l]) @ weights[l].T + biases[l])
    return a[1:]


def output_error(mu_out: torch.Tensor, target: torch.Tensor, loss: int, precision: float = 1.0) -> torch.Tensor:
    """eps_L = -precision * dloss/dmu_L."""
    if loss == MSE:
        return precision * (target - mu_out)
    return precision * (target - torch.softmax(mu_out, dim=1))


def _prediction(l, a, weights, biases, kinds, slopes):
    # mu of layer l+1 (0-based weight index l) from value node a_l.
    return activate(a[l], kinds[l], slopes[l]) @ weights[l].T + biases[l]


def energy(x, weights, biases, states, target, kinds, slopes, loss: int = MSE,
           output_precision: float = 1.0) -> torch.Tensor:
    """F summed over the batch (IL's objective)."""
    a = [x, *states]
    L = len(weights)
    total = x.new_zeros(())
    for l in range(L - 1):
        total = total + 0.5 * (a[l + 1] - _prediction(l, a, weights, biases, kinds, slopes)).pow(2).sum()
    mu = _prediction(L - 1, a, weights, biases, kinds, slopes)
    if loss == MSE:
        return total + output_precision * 0.5 * (target - mu).pow(2).sum()
    return total - output_precision * (target * torch.log_softmax(mu, dim=1)).sum()


def predictive_coding_infer(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    states: Sequence[torch.Tensor],
    target: torch.Tensor,
    kinds: Sequence[int],
    slopes: Sequence[float],
    variant: int = IL,
    loss: int = MSE,
    output_precision: float = 1.0,
    steps: int = 20,
    gamma: float = 0.1,
    lr: float = 0.0,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Inference from `states` (not modified).

    x: (batch, n_0). weights[l]: (n_{l+1}, n_l); biases[l]: (n_{l+1},).
    states: L-1 tensors (batch, n_l), l = 1..L-1, the initial hidden value
    nodes (the feed-forward values for FPA and Z-IL). target: (batch, n_L).
    kinds, slopes: L entries, the activation of a_0 .. a_{L-1}. lr: iPC's
    weight step (ignored by the other variants).
    Returns (states, errors eps_1..eps_L, weights, biases) after inference;
    the weights differ from the input only for iPC.
    """
    L = len(weights)
    a = [x, *[s.clone() for s in states]]
    W = [w.clone() for w in weights]
    b = [v.clone() for v in biases]

    def pred(l):
        return _prediction(l, a, W, b, kinds, slopes)

    def errors_now():
        eps = [a[l + 1] - pred(l) for l in range(L - 1)]
        eps.append(output_error(pred(L - 1), target, loss, output_precision))
        return eps

    if variant == ZIL:
        eps = [None] * L
        eps[L - 1] = output_error(pred(L - 1), target, loss, output_precision)
        for t in range(min(steps, L - 1)):
            j = L - 1 - t  # value node a_j, error eps_j (index j - 1)
            e = a[j] - pred(j - 1)
            back = eps[j] @ W[j]
            a[j] = a[j] + gamma * (-e + activate_derivative(a[j], kinds[j], slopes[j]) * back)
            eps[j - 1] = a[j] - pred(j - 1)
        for l in range(L - 1):
            if eps[l] is None:
                eps[l] = a[l + 1] - pred(l)
        return a[1:], eps, W, b

    if variant == FPA:
        mu_fixed = [pred(l) for l in range(L)]
        dfx_fixed = [activate_derivative(a[l], kinds[l], slopes[l]) for l in range(L)]
        out = output_error(mu_fixed[L - 1], target, loss, output_precision)

        def errors_fpa():
            return [a[l + 1] - mu_fixed[l] for l in range(L - 1)] + [out]

        for _ in range(steps):
            eps = errors_fpa()
            for l in range(1, L):
                a[l] = a[l] + gamma * (-eps[l - 1] + dfx_fixed[l] * (eps[l] @ W[l]))
        return a[1:], errors_fpa(), W, b

    for _ in range(steps):
        eps = errors_now()
        fx = [activate(a[l], kinds[l], slopes[l]) for l in range(L)]
        new = [a[l] + gamma * (-eps[l - 1] + activate_derivative(a[l], kinds[l], slopes[l]) * (eps[l] @ W[l]))
               for l in range(1, L)]
        if variant == IPC:
            for l in range(L):
                W[l] = W[l] + lr * (eps[l].T @ fx[l])
                b[l] = b[l] + lr * eps[l].sum(0)
        a[1:] = new
    return a[1:], errors_now(), W, b


def predictive_coding_update(
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    errors: Sequence[torch.Tensor],
    kinds: Sequence[int],
    slopes: Sequence[float],
    scale: float,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """grad W_l = scale * eps_l^T f(a_{l-1}), grad b_l = scale * sum_n eps_l,
    a_0 = x, a_l = states[l-1] (pre-synaptic activities). Returns (weight
    grads (n_l, n_{l-1}), bias grads (n_l,))."""
    a = [x, *states]
    gw = [scale * (errors[l].T @ activate(a[l], kinds[l], slopes[l])) for l in range(len(errors))]
    gb = [scale * errors[l].sum(0) for l in range(len(errors))]
    return gw, gb
