"""target_prop_feedback_grads: every layer-wise feedback map's closed-form
feedback gradient (DTP's reconstruction loss or L-DRL's, linear or gated
maps) in one call, the noise samples stacked into one product per map
(schema: csrc/registration.cpp; the maths:
localgrad.reference.target_prop.map_feedback_gradients), with its fake kernel."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, register_fake, register_missing_cuda
from localgrad._checks import as_float, as_int
from localgrad.reference import target_prop as ref

# Variant codes of the op (the learner's names).
FEEDBACK_VARIANTS = {"dtp": 0, "tp": 0, "ldrl": 1}


def _compiled() -> bool:
    # A build from before this family has the extension but not this op.
    return has_extension() and hasattr(torch.ops.localgrad, "target_prop_feedback_grads")


def _compiled_ops():
    return compiled_ops() if _compiled() else None


def target_prop_feedback_grads(
    variant: str,
    inputs: Sequence[torch.Tensor],
    outputs: Sequence[torch.Tensor],
    gates: Sequence[torch.Tensor] | None,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    kinds: Sequence[int],
    slopes: Sequence[float] | None,
    fb_weights: Sequence[torch.Tensor],
    fb_biases: Sequence[torch.Tensor],
    noise_in: Sequence[torch.Tensor],
    noise_out: Sequence[torch.Tensor] | None = None,
    grad_weights: Sequence[torch.Tensor] | None = None,
    grad_biases: Sequence[torch.Tensor] | None = None,
    loss: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Writes map k's batch-mean dV_k into grad_weights[k] (n, m) and dc_k
    into grad_biases[k] (n,) (allocated when not given) and returns them with
    the batch-mean loss summed over the maps (written into `loss` when given). Map k: inputs[k] = h_{l-1}
    (B, n), outputs[k] = h_l (B, m), gates[k] = s_l'(a_l) (B, m) or gates
    None/[] (linear maps, gate 1), weights[k] = W_l (m, n), biases[k] = b_l,
    kinds[k]/slopes[k] the activation of layer l, fb_weights[k] = V_l (n, m),
    fb_biases[k] = c_l (n,), noise_in[k] (S B, n), noise_out[k] (S B, m; ldrl
    only): S samples, row s B + i on batch row i."""
    if variant not in FEEDBACK_VARIANTS:
        raise ValueError(f"target_prop_feedback_grads: variant must be one of {', '.join(FEEDBACK_VARIANTS)}, "
                         f"got {variant!r}")
    inputs, outputs, weights, biases = list(inputs), list(outputs), list(weights), list(biases)
    fb_weights, fb_biases, noise_in = list(fb_weights), list(fb_biases), list(noise_in)
    gates = list(gates) if gates else []
    noise_out = list(noise_out) if noise_out else []
    op = "target_prop_feedback_grads"
    kinds = [as_int(k, op, f"kinds[{i}]") for i, k in enumerate(kinds)]
    slopes = [0.0] * len(kinds) if slopes is None else [as_float(s, op, f"slopes[{i}]") for i, s in enumerate(slopes)]
    if grad_weights is None:
        grad_weights = [torch.empty_like(v) for v in fb_weights]
    if grad_biases is None:
        grad_biases = [torch.empty_like(c) for c in fb_biases]
    grad_weights, grad_biases = list(grad_weights), list(grad_biases)
    like = inputs[0] if inputs else (fb_weights[0] if fb_weights else torch.zeros(()))
    if loss is None:
        loss = like.new_empty(())
    if (lib := _compiled_ops()) is not None:
        lib.target_prop_feedback_grads(inputs, outputs, gates, weights, biases, fb_weights, fb_biases, noise_in,
                                       noise_out, kinds, slopes, FEEDBACK_VARIANTS[variant], grad_weights,
                                       grad_biases, loss)
        return grad_weights, grad_biases, loss
    if inputs and not has_extension():
        fall_back("target_prop_feedback_grads", inputs[0])
    grads, total = ref.map_feedback_gradients(variant, inputs, outputs, gates or None, weights, biases, kinds,
                                              slopes, fb_weights, fb_biases, noise_in, noise_out)
    for (gv, gc), ov, oc in zip(grads, grad_weights, grad_biases):
        ov.copy_(gv)
        oc.copy_(gc)
    loss.copy_(total)
    return grad_weights, grad_biases, loss


def _fake_checks(inputs, outputs, gates, weights, biases, fb_weights, fb_biases, noise_in, noise_out, kinds,
                 slopes, variant, grad_weights, grad_biases, loss):
    # What the glue (csrc/target_prop_glue.cpp) refuses before touching memory,
    # in its order, so a traced call fails the same way as an eager one.
    op = "target_prop_feedback_grads"
    torch._check(variant in (0, 1), lambda: f"{op}: variant = {variant} is not a variant code (0 dtp/tp, 1 ldrl)")
    k = len(inputs)
    torch._check(k > 0, lambda: f"{op}: inputs must hold at least one map")
    for name, lst in (("outputs", outputs), ("weights", weights), ("biases", biases), ("fb_weights", fb_weights),
                      ("fb_biases", fb_biases), ("noise_in", noise_in), ("grad_weights", grad_weights),
                      ("grad_biases", grad_biases), ("kinds", kinds), ("slopes", slopes)):
        torch._check(len(lst) == k, lambda name=name, lst=lst: f"{op}: {name} must have one entry per map ({k}), "
                                                               f"got {len(lst)}")
    torch._check(len(gates) in (0, k), lambda: f"{op}: gates must be empty (linear maps) or have one entry per map")
    if variant == 1:
        torch._check(len(noise_out) == k, lambda: f"{op}: noise_out must have one entry per map ({k})")
    else:
        torch._check(len(noise_out) == 0, lambda: f"{op}: noise_out is L-DRL's; dtp takes none")
    ref0 = inputs[0]
    torch._check(ref0.dim() == 2, lambda: f"{op}: inputs[0] must be 2-D (batch, n)")
    torch._check(ref0.dtype in (torch.float32, torch.float64), lambda: f"{op}: inputs[0] must be float32 or float64")
    batch = ref0.shape[0]

    def like(t, name, shape):
        torch._check(t.dim() == len(shape), lambda: f"{op}: {name} must be {len(shape)}-D, got {tuple(t.shape)}")
        torch._check_type(t.dtype == ref0.dtype, lambda: f"{op}: {name} must have the dtype of inputs[0]")
        torch._check(t.device == ref0.device, lambda: f"{op}: {name} must be on the device of inputs[0]")
        torch._check(tuple(t.shape) == tuple(shape), lambda: f"{op}: {name} must have shape {tuple(shape)}")

    like(loss, "loss", ())
    for i in range(k):
        torch._check(inputs[i].dim() == 2, lambda i=i: f"{op}: inputs[{i}] must be 2-D (batch, n)")
        torch._check(outputs[i].dim() == 2, lambda i=i: f"{op}: outputs[{i}] must be 2-D (batch, m)")
        n, m = inputs[i].shape[1], outputs[i].shape[1]
        torch._check(n > 0 and m > 0, lambda i=i: f"{op}: map {i} needs units on both sides")
        like(inputs[i], f"inputs[{i}]", (batch, n))
        like(outputs[i], f"outputs[{i}]", (batch, m))
        if len(gates):
            like(gates[i], f"gates[{i}]", (batch, m))
        like(weights[i], f"weights[{i}]", (m, n))
        like(biases[i], f"biases[{i}]", (m,))
        like(fb_weights[i], f"fb_weights[{i}]", (n, m))
        like(fb_biases[i], f"fb_biases[{i}]", (n,))
        torch._check(noise_in[i].dim() == 2, lambda i=i: f"{op}: noise_in[{i}] must be 2-D (samples * batch, n)")
        rows = noise_in[i].shape[0]
        torch._check(rows % batch == 0 if batch > 0 else rows == 0,
                     lambda i=i: f"{op}: noise_in[{i}] must have a whole number of samples of {batch} rows")
        like(noise_in[i], f"noise_in[{i}]", (rows, n))
        if variant == 1:
            like(noise_out[i], f"noise_out[{i}]", (rows, m))
        like(grad_weights[i], f"grad_weights[{i}]", (n, m))
        like(grad_biases[i], f"grad_biases[{i}]", (n,))
        torch._check(1 <= int(kinds[i]) <= 5, lambda i=i: f"{op}: kinds[{i}] = {kinds[i]} is not an activation")
        torch._check(math.isfinite(slopes[i]), lambda i=i: f"{op}: slopes[{i}] must be finite")


if _compiled():

    @register_fake("target_prop_feedback_grads")
    def _feedback_grads_fake(*args):
        _fake_checks(*args)
        return None

    register_missing_cuda("target_prop_feedback_grads")
