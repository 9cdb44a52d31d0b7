"""eqprop_relax and eqprop_update: Equilibrium Propagation's relaxation of a
whole layered network in one call, and its contrastive update of every layer
(schemas: csrc/registration.cpp), with their fake kernels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, REALS, register_checked_fake, register_missing_cuda
from localgrad._checks import as_bool, as_float, as_int
from localgrad.reference.eqprop import ACTIVATIONS, CLAMP, FREE, NUDGE_CE, NUDGE_MSE

NUDGES = {"free": FREE, "mse": NUDGE_MSE, "ce": NUDGE_CE, "clamp": CLAMP}


def _code(value, table: dict, what: str) -> int:
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"eqprop_relax: {what} must be one of {', '.join(table)}, got {value!r}")
        return table[value]
    return as_int(value, "eqprop_relax", what)


def eqprop_relax(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                 states: Sequence[torch.Tensor], target: torch.Tensor | None = None, *, beta: float = 0.0,
                 nudge: str | int = "free", activation: str | int = "hardsigmoid", steps: int = 20,
                 async_update: bool = False, tol: float = 0.0) -> torch.Tensor:
    """Runs `steps` relaxation steps in place in `states` (see
    localgrad.reference.eqprop for the model). x: (batch, n_0); weights[i]:
    (n_{i+1}, n_i); biases[i]: (n_{i+1},); states[i]: (batch, n_{i+1}), the
    starting point (zeros for a cold start); target: (batch, n_L) for nudge
    "mse", "ce" or "clamp". Returns the steps each row ran, (batch,) int64
    (fewer than `steps` once a row moves less than `tol`)."""
    nudge = _code(nudge, NUDGES, "nudge")
    activation = _code(activation, ACTIVATIONS, "activation")
    op = "eqprop_relax"
    beta = as_float(beta, op, "beta")
    steps = as_int(steps, op, "steps", minimum=0)
    async_update = as_bool(async_update, op, "async_update")
    tol = as_float(tol, op, "tol", finite=False)
    weights, biases, states = list(weights), list(biases), list(states)
    if (lib := compiled_ops()) is not None:
        return lib.eqprop_relax(
            x, weights, biases, states, target, beta, nudge, activation, steps, async_update, tol
        )
    fall_back("eqprop_relax", x)
    new, ran = reference.eqprop_relax(
        x, weights, biases, states, target, beta, nudge, activation, steps, async_update, tol
    )
    for s, n in zip(states, new):
        s.copy_(n)
    return ran


def eqprop_update(x: torch.Tensor, states_a: Sequence[torch.Tensor], states_b: Sequence[torch.Tensor], scale: float,
                  weight_grads: Sequence[torch.Tensor] | None = None, bias_grads: Sequence[torch.Tensor] | None = None
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """weight_grads[i] = scale * (a_{i+1}^T a_i - b_{i+1}^T b_i), bias_grads[i]
    = scale * sum_batch (a_{i+1} - b_{i+1}), with a_0 = b_0 = x, for every
    layer in one call; allocated when not given. Returns both lists."""
    scale = as_float(scale, "eqprop_update", "scale")
    states_a, states_b = list(states_a), list(states_b)
    for name, t in [("x", x)] + [(f"states_a[{i}]", s) for i, s in enumerate(states_a)]:
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"eqprop_update: {name} must be 2-D (batch, width), got {shape}")
    widths = [x.shape[1]] + [s.shape[1] for s in states_a]
    if weight_grads is None:
        weight_grads = [x.new_empty((widths[i + 1], widths[i])) for i in range(len(states_a))]
    if bias_grads is None:
        bias_grads = [x.new_empty((widths[i + 1],)) for i in range(len(states_a))]
    weight_grads, bias_grads = list(weight_grads), list(bias_grads)
    if (lib := compiled_ops()) is not None:
        lib.eqprop_update(x, states_a, states_b, scale, weight_grads, bias_grads)
        return weight_grads, bias_grads
    fall_back("eqprop_update", x)
    gw, gb = reference.eqprop_update(x, states_a, states_b, scale)
    for o, r in zip(weight_grads + bias_grads, gw + gb):
        o.copy_(r)
    return weight_grads, bias_grads


MAX_LAYERS = 16  # csrc/eqprop.h kMaxLayers


def _check_layers(spec, x, weights, biases):
    if not weights:
        spec.fail("weights must hold at least one layer")
    if len(weights) > MAX_LAYERS:
        spec.fail(f"at most {MAX_LAYERS} layers, got {len(weights)}")
    if len(biases) != len(weights):
        spec.fail(f"biases must have one tensor per layer ({len(weights)}), got {len(biases)}")
    widths = [x.shape[1]]
    for i, (w, b) in enumerate(zip(weights, biases)):
        spec.tensor(w, f"weights[{i}]", (None, widths[-1]), like=(x, "x"))
        if w.shape[0] == 0:
            spec.fail(f"weights[{i}] has no rows: every layer needs a unit")
        spec.tensor(b, f"biases[{i}]", (w.shape[0],), like=(x, "x"))
        widths.append(w.shape[0])
    return widths


def _check_states(spec, states, x, widths, name, dense_rows=False):
    if len(states) != len(widths) - 1:
        spec.fail(f"{name} must have one tensor per layer ({len(widths) - 1}), got {len(states)}")
    for i, s in enumerate(states):
        spec.tensor(s, f"{name}[{i}]", (x.shape[0], widths[i + 1]), like=(x, "x"), dense_rows=dense_rows)


def _check_relax(spec, x, weights, biases, states, target, beta, nudge, activation, steps, async_update, tol):
    """The checks of csrc/eqprop_glue.cpp that read no data."""
    spec.tensor(x, "x", ("B", None), floating=REALS)
    if x.shape[1] == 0:
        spec.fail("x must have at least one feature")
    widths = _check_layers(spec, x, weights, biases)
    _check_states(spec, states, x, widths, "states", dense_rows=True)
    if not 0 <= nudge < 4:
        spec.fail(f"nudge = {nudge} is not a nudge code (0 free, 1 mse, 2 ce, 3 clamp)")
    if not 0 <= activation < 3:
        spec.fail(f"activation = {activation} is not an activation code (0 hardsigmoid, 1 sigmoid, 2 tanh)")
    if steps < 0:
        spec.fail(f"steps must be >= 0, got {steps}")
    if not math.isfinite(beta):
        spec.fail(f"beta must be finite, got {beta}")
    if math.isnan(tol):
        spec.fail("tol must not be NaN")
    if nudge != FREE:
        if target is None:
            spec.fail(f"a nudged or clamped phase (nudge = {nudge}) needs a target")
        spec.tensor(target, "target", (x.shape[0], widths[-1]), like=(x, "x"))


def _check_update(spec, x, states_a, states_b, scale, weight_grads, bias_grads):
    spec.tensor(x, "x", ("B", None), floating=REALS)
    if not math.isfinite(scale):
        spec.fail(f"scale must be finite, got {scale}")
    if not states_a:
        spec.fail("states_a must hold at least one layer")
    widths = [x.shape[1]] + [s.shape[1] if s.dim() == 2 else -1 for s in states_a]
    _check_states(spec, states_a, x, widths, "states_a")
    _check_states(spec, states_b, x, widths, "states_b")
    n = len(states_a)
    if len(weight_grads) != n or len(bias_grads) != n:
        spec.fail(
            f"weight_grads and bias_grads must have one tensor per layer ({n}), got "
            f"{len(weight_grads)} and {len(bias_grads)}"
        )
    for i in range(n):
        spec.tensor(weight_grads[i], f"weight_grads[{i}]", (widths[i + 1], widths[i]), like=(x, "x"))
        spec.tensor(bias_grads[i], f"bias_grads[{i}]", (widths[i + 1],), like=(x, "x"))


if has_extension():
    # States are written in place; the only new tensor is the step count.
    register_checked_fake(
        "eqprop_relax", _check_relax, lambda x, *args: x.new_empty((x.shape[0],), dtype=torch.int64)
    )
    register_checked_fake("eqprop_update", _check_update, lambda *args: None)
    register_missing_cuda("eqprop_relax", "eqprop_update")
