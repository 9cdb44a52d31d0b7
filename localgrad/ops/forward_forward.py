"""forward_forward_step: every layer's Forward-Forward update, goodness and
loss for a positive and a negative batch in one call (schema:
csrc/registration.cpp; the maths: localgrad.reference.forward_forward.step),
with its checked fake kernel."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from localgrad._checks import as_float, as_int
from localgrad._extension import has_extension
from localgrad.ops._common import REALS, compiled_ops, fall_back, register_checked_fake, register_missing_cuda
from localgrad.reference import forward_forward as ref

# The op's codes (csrc/forward_forward.h): position in the reference's tuples.
GOODNESS = {name: i for i, name in enumerate(ref.GOODNESS)}
LOSSES = {name: i for i, name in enumerate(ref.LOSSES)}
NORMALIZE = {name: i for i, name in enumerate(ref.NORMALIZE)}

_OP = "forward_forward_step"


def _compiled() -> bool:
    # A build from before this family has the extension but not this op.
    return has_extension() and hasattr(torch.ops.localgrad, _OP)


def _compiled_ops():
    return compiled_ops() if _compiled() else None


def _name(value, table: dict, what: str) -> str:
    if value not in table:
        raise ValueError(f"{_OP}: {what} must be one of {', '.join(table)}, got {value!r}")
    return value


def forward_forward_step(
    x_pos: torch.Tensor,
    x_neg: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    kinds: Sequence[int],
    slopes: Sequence[float] | None = None,
    thresholds: Sequence[float] | None = None,
    goodness: str = "sumsq",
    loss: str = "threshold",
    normalize: str = "l2",
    alpha: float = 1.0,
    eps: float = 1e-8,
    grad_weights: Sequence[torch.Tensor] | None = None,
    grad_biases: Sequence[torch.Tensor] | None = None,
    goodness_out: torch.Tensor | None = None,
    losses: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Layer l (weights[l] (m, n), biases[l] (m,), activation kinds[l] /
    slopes[l], threshold thresholds[l], default 0) trained on x_pos (B, n_0)
    against x_neg (B, n_0), each layer on the previous one's normalised
    output. Writes (allocating those not given) the batch means
    grad_weights[l] = dL_l/dW_l, grad_biases[l], every row's goodness
    goodness_out (L, 2, B) (positive pass, then negative) and the layers'
    losses (L,), and returns them."""
    goodness, loss = _name(goodness, GOODNESS, "goodness"), _name(loss, LOSSES, "loss")
    normalize = _name(normalize, NORMALIZE, "normalize")
    weights, biases = list(weights), list(biases)
    kinds = [as_int(k, _OP, f"kinds[{i}]") for i, k in enumerate(kinds)]
    slopes = [0.0] * len(kinds) if slopes is None else [as_float(s, _OP, f"slopes[{i}]") for i, s in enumerate(slopes)]
    thresholds = [0.0] * len(weights) if thresholds is None else \
        [as_float(t, _OP, f"thresholds[{i}]") for i, t in enumerate(thresholds)]
    alpha = as_float(alpha, _OP, "alpha")
    eps = as_float(eps, _OP, "eps", nonnegative=True)
    if grad_weights is None:
        grad_weights = [torch.empty_like(w) for w in weights]
    if grad_biases is None:
        grad_biases = [torch.empty_like(b) for b in biases]
    grad_weights, grad_biases = list(grad_weights), list(grad_biases)
    if goodness_out is None:
        goodness_out = x_pos.new_empty(len(weights), 2, x_pos.shape[0])
    if losses is None:
        losses = x_pos.new_empty(len(weights))
    if (lib := _compiled_ops()) is not None:
        lib.forward_forward_step(x_pos, x_neg, weights, biases, kinds, slopes, thresholds, GOODNESS[goodness],
                                 LOSSES[loss], NORMALIZE[normalize], alpha, eps, grad_weights, grad_biases,
                                 goodness_out, losses)
        return grad_weights, grad_biases, goodness_out, losses
    if not has_extension():
        fall_back(_OP, x_pos)
    gw, gb, good, ls = ref.step(x_pos, x_neg, weights, biases, kinds, slopes, goodness, loss, thresholds, alpha,
                                normalize, eps)
    for out, value in zip([*grad_weights, *grad_biases], [*gw, *gb]):
        out.copy_(value)
    goodness_out.copy_(good)
    losses.copy_(ls)
    return grad_weights, grad_biases, goodness_out, losses


def _check(spec, x_pos, x_neg, weights, biases, kinds, slopes, thresholds, goodness, loss, normalize, alpha, eps,
           grad_weights, grad_biases, goodness_out, losses):
    # What the glue (csrc/forward_forward_glue.cpp) refuses before touching
    # memory, so a traced call fails as an eager one does.
    torch._check(0 <= goodness < len(GOODNESS), lambda: f"{_OP}: goodness = {goodness} is not a goodness code")
    torch._check(0 <= loss < len(LOSSES), lambda: f"{_OP}: loss = {loss} is not a loss code")
    torch._check(0 <= normalize < len(NORMALIZE), lambda: f"{_OP}: normalize = {normalize} is not a code")
    torch._check(math.isfinite(alpha), lambda: f"{_OP}: alpha must be finite")
    torch._check(math.isfinite(eps) and eps >= 0, lambda: f"{_OP}: eps must be finite and >= 0")
    spec.tensor(x_pos, "x_pos", ("B", "N0"), floating=REALS)
    spec.tensor(x_neg, "x_neg", ("B", "N0"), like=(x_pos, "x_pos"))
    n_layers = len(weights)
    torch._check(n_layers > 0, lambda: f"{_OP}: weights must hold at least one layer")
    for name, lst in (("biases", biases), ("grad_weights", grad_weights), ("grad_biases", grad_biases),
                      ("kinds", kinds), ("slopes", slopes), ("thresholds", thresholds)):
        torch._check(len(lst) == n_layers,
                     lambda name=name, lst=lst: f"{_OP}: {name} must have one entry per layer ({n_layers}), "
                                                f"got {len(lst)}")
    spec.tensor(goodness_out, "goodness_out", (n_layers, 2, "B"), like=(x_pos, "x_pos"))
    spec.tensor(losses, "losses", (n_layers,), like=(x_pos, "x_pos"))
    width = "N0"
    for i in range(n_layers):
        spec.tensor(weights[i], f"weights[{i}]", (f"M{i}", width), like=(x_pos, "x_pos"))
        torch._check(weights[i].shape[0] > 0, lambda i=i: f"{_OP}: weights[{i}] must have at least one unit")
        spec.tensor(biases[i], f"biases[{i}]", (f"M{i}",), like=(x_pos, "x_pos"))
        spec.tensor(grad_weights[i], f"grad_weights[{i}]", (f"M{i}", width), like=(x_pos, "x_pos"))
        spec.tensor(grad_biases[i], f"grad_biases[{i}]", (f"M{i}",), like=(x_pos, "x_pos"))
        torch._check(1 <= int(kinds[i]) <= 5, lambda i=i: f"{_OP}: kinds[{i}] = {kinds[i]} is not an activation")
        torch._check(math.isfinite(slopes[i]), lambda i=i: f"{_OP}: slopes[{i}] must be finite")
        torch._check(math.isfinite(thresholds[i]), lambda i=i: f"{_OP}: thresholds[{i}] must be finite")
        width = f"M{i}"


if _compiled():
    register_checked_fake(_OP, _check, lambda *args: None)
    register_missing_cuda(_OP)
