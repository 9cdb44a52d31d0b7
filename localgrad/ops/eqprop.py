"""eqprop_relax and eqprop_update: Equilibrium Propagation's relaxation of a
whole layered network in one call, and its contrastive update of every layer
(schemas: csrc/registration.cpp), with their fake kernels."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, register_fake, register_missing_cuda
from localgrad.reference.eqprop import ACTIVATIONS, CLAMP, FREE, NUDGE_CE, NUDGE_MSE

NUDGES = {"free": FREE, "mse": NUDGE_MSE, "ce": NUDGE_CE, "clamp": CLAMP}


def _code(value, table: dict, what: str) -> int:
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"eqprop_relax: {what} must be one of {', '.join(table)}, got {value!r}")
        return table[value]
    return int(value)


def eqprop_relax(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    states: Sequence[torch.Tensor],
    target: torch.Tensor | None = None,
    *,
    beta: float = 0.0,
    nudge: str | int = "free",
    activation: str | int = "hardsigmoid",
    steps: int = 20,
    async_update: bool = False,
    tol: float = 0.0,
) -> torch.Tensor:
    """Runs `steps` relaxation steps in place in `states` (see
    localgrad.reference.eqprop for the model). x: (batch, n_0); weights[i]:
    (n_{i+1}, n_i); biases[i]: (n_{i+1},); states[i]: (batch, n_{i+1}), the
    starting point (zeros for a cold start); target: (batch, n_L) for nudge
    "mse", "ce" or "clamp". Returns the steps each row ran, (batch,) int64
    (fewer than `steps` once a row moves less than `tol`)."""
    nudge = _code(nudge, NUDGES, "nudge")
    activation = _code(activation, ACTIVATIONS, "activation")
    weights, biases, states = list(weights), list(biases), list(states)
    if (lib := compiled_ops()) is not None:
        return lib.eqprop_relax(
            x, weights, biases, states, target, float(beta), nudge, activation, int(steps), bool(async_update), float(tol)
        )
    fall_back("eqprop_relax", x)
    new, ran = reference.eqprop_relax(
        x, weights, biases, states, target, beta, nudge, activation, steps, async_update, tol
    )
    for s, n in zip(states, new):
        s.copy_(n)
    return ran


def eqprop_update(
    x: torch.Tensor,
    states_a: Sequence[torch.Tensor],
    states_b: Sequence[torch.Tensor],
    scale: float,
    weight_grads: Sequence[torch.Tensor] | None = None,
    bias_grads: Sequence[torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """weight_grads[i] = scale * (a_{i+1}^T a_i - b_{i+1}^T b_i), bias_grads[i]
    = scale * sum_batch (a_{i+1} - b_{i+1}), with a_0 = b_0 = x, for every
    layer in one call; allocated when not given. Returns both lists."""
    states_a, states_b = list(states_a), list(states_b)
    widths = [x.shape[1]] + [s.shape[1] for s in states_a]
    if weight_grads is None:
        weight_grads = [x.new_empty((widths[i + 1], widths[i])) for i in range(len(states_a))]
    if bias_grads is None:
        bias_grads = [x.new_empty((widths[i + 1],)) for i in range(len(states_a))]
    weight_grads, bias_grads = list(weight_grads), list(bias_grads)
    if (lib := compiled_ops()) is not None:
        lib.eqprop_update(x, states_a, states_b, float(scale), weight_grads, bias_grads)
        return weight_grads, bias_grads
    fall_back("eqprop_update", x)
    gw, gb = reference.eqprop_update(x, states_a, states_b, scale)
    for o, r in zip(weight_grads + bias_grads, gw + gb):
        o.copy_(r)
    return weight_grads, bias_grads


if has_extension():

    @register_fake("eqprop_relax")
    def _eqprop_relax_fake(x, weights, biases, states, target, beta, nudge, activation, steps, async_update, tol):
        # States are written in place; the only new tensor is the step count.
        return x.new_empty((x.shape[0],), dtype=torch.int64)

    @register_fake("eqprop_update")
    def _eqprop_update_fake(x, states_a, states_b, scale, weight_grads, bias_grads):
        return None

    register_missing_cuda("eqprop_relax", "eqprop_update")
