"""predictive_coding_infer and predictive_coding_update: all inference steps
of a predictive-coding MLP in one call, in place in its states (Z-IL's
schedule and iPC's per-step weight updates included), and the weight update
of every layer in one call (schemas: csrc/registration.cpp; the maths:
localgrad.reference.predictive_coding), with their fake kernels."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from localgrad import activations
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, REALS, register_checked_fake, register_missing_cuda
from localgrad._checks import as_float, as_int
from localgrad.reference import predictive_coding as ref
from localgrad.reference.predictive_coding import LOSSES, VARIANTS


def _code(value, table: dict, what: str) -> int:
    op = "predictive_coding_infer"
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"{op}: {what} must be one of {', '.join(table)}, got {value!r}")
        return table[value]
    return as_int(value, op, what)


def _activations(op: str, kinds, slopes) -> tuple[list[int], list[float]]:
    kinds = [as_int(k, op, f"kinds[{i}]") for i, k in enumerate(kinds)]
    if slopes is None:
        return kinds, [0.0] * len(kinds)
    return kinds, [as_float(s, op, f"slopes[{i}]") for i, s in enumerate(slopes)]


def _compiled() -> bool:
    # A build from before this family has the extension but not these ops.
    return has_extension() and hasattr(torch.ops.localgrad, "predictive_coding_infer")


def _compiled_ops():
    return compiled_ops() if _compiled() else None


def predictive_coding_infer(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                            states: Sequence[torch.Tensor], target: torch.Tensor, kinds: Sequence[int],
                            slopes: Sequence[float] | None = None, *, variant: str | int = "il",
                            loss: str | int = "mse", output_precision: float = 1.0, steps: int = 20, gamma: float = 0.1,
                            lr: float = 0.0, errors: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Runs inference in place in `states` (and, for iPC, in `weights` and
    `biases`); writes the errors eps_1..eps_L into `errors` (allocated when
    not given) and returns them. x: (batch, n_0); weights[l]: (n_{l+1}, n_l);
    biases[l]: (n_{l+1},); states: L-1 tensors (batch, n_l), the initial
    hidden value nodes; target: (batch, n_L); kinds/slopes: the activation of
    a_0..a_{L-1} (localgrad.activations codes); output_precision: the
    weight of the output energy (eps_L = -output_precision dloss/dmu_L)."""
    op = "predictive_coding_infer"
    variant = _code(variant, VARIANTS, "variant")
    loss = _code(loss, LOSSES, "loss")
    output_precision = as_float(output_precision, op, "output_precision")
    steps = as_int(steps, op, "steps", minimum=0)
    gamma = as_float(gamma, op, "gamma")
    lr = as_float(lr, op, "lr")
    weights, biases, states = list(weights), list(biases), list(states)
    kinds, slopes = _activations(op, kinds, slopes)
    if errors is None:
        errors = [x.new_empty((x.shape[0], w.shape[0])) for w in weights]
    errors = list(errors)
    if (lib := _compiled_ops()) is not None:
        lib.predictive_coding_infer(
            x, weights, biases, states, errors, target, kinds, slopes, variant, loss, output_precision, steps, gamma,
            lr,
        )
        return errors
    fall_back("predictive_coding_infer", x)
    new_states, eps, w, b = ref.predictive_coding_infer(
        x, weights, biases, states, target, kinds, slopes, variant, loss, output_precision, steps, gamma, lr
    )
    for out, value in zip(states + errors, new_states + eps):
        out.copy_(value)
    if variant == ref.IPC:
        for out, value in zip(weights + biases, w + b):
            out.copy_(value)
    return errors


def predictive_coding_update(x: torch.Tensor, states: Sequence[torch.Tensor], errors: Sequence[torch.Tensor],
                             kinds: Sequence[int], slopes: Sequence[float] | None = None, scale: float = 1.0,
                             weight_grads: Sequence[torch.Tensor] | None = None,
                             bias_grads: Sequence[torch.Tensor] | None = None
                            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """weight_grads[l] = scale * errors[l]^T f_l(a_l), bias_grads[l] = scale *
    sum over the batch of errors[l], a_0 = x, a_l = states[l-1], for every
    layer in one call; allocated when not given. Returns both lists."""
    op = "predictive_coding_update"
    states, errors = list(states), list(errors)
    kinds, slopes = _activations(op, kinds, slopes)
    scale = as_float(scale, op, "scale")
    # The glue checks the shapes; these only size outputs it was not given.
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"{op}: x must be a 2-D tensor (batch, n_in), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    for i, e in enumerate(errors):
        if not isinstance(e, torch.Tensor) or e.dim() != 2:
            raise ValueError(f"{op}: errors[{i}] must be a 2-D tensor (batch, width)")
    widths = [x.shape[1]] + [e.shape[1] for e in errors]
    if weight_grads is None:
        weight_grads = [x.new_empty((widths[l + 1], widths[l])) for l in range(len(errors))]
    if bias_grads is None:
        bias_grads = [x.new_empty((widths[l + 1],)) for l in range(len(errors))]
    weight_grads, bias_grads = list(weight_grads), list(bias_grads)
    if (lib := _compiled_ops()) is not None:
        lib.predictive_coding_update(
            x, states, errors, kinds, slopes, scale, weight_grads, bias_grads
        )
        return weight_grads, bias_grads
    fall_back("predictive_coding_update", x)
    gw, gb = ref.predictive_coding_update(x, states, errors, kinds, slopes, scale)
    for out, value in zip(weight_grads + bias_grads, gw + gb):
        out.copy_(value)
    return weight_grads, bias_grads


_MAX_LAYERS = 16  # kMaxLayers of csrc/predictive_coding.h
_VALUE_NODE_KINDS = (activations.Activation.IDENTITY, activations.Activation.RELU, activations.Activation.LEAKY_RELU,
                     activations.Activation.TANH, activations.Activation.SIGMOID)


def _fake_checks(spec, x, weights, biases, states, errors, kinds, slopes):
    """What csrc/predictive_coding_glue.cpp refuses before touching memory, so
    a traced (meta) call fails as an eager one does. weights and biases are
    None for the update op, whose widths come from the errors."""
    op = spec.op
    spec.tensor(x, "x", ("B", "N0"), floating=REALS)
    if weights is not None:
        if not 1 <= len(weights) <= _MAX_LAYERS:
            spec.fail(f"weights must hold 1 to {_MAX_LAYERS} layers, got {len(weights)}")
        if len(biases) != len(weights):
            spec.fail(f"biases must have one tensor per layer ({len(weights)}), got {len(biases)}")
        widths = [x.shape[1]]
        for i, (w, b) in enumerate(zip(weights, biases)):
            spec.tensor(w, f"weights[{i}]", (None, widths[-1]), like=(x, "x"))
            spec.tensor(b, f"biases[{i}]", (w.shape[0],), like=(x, "x"))
            widths.append(w.shape[0])
    else:
        widths = [x.shape[1]]
        for i, e in enumerate(errors):
            spec.tensor(e, f"errors[{i}]", ("B", None), like=(x, "x"))
            widths.append(e.shape[1])
    L = len(widths) - 1
    torch._check(len(kinds) == L and len(slopes) == L,
                 lambda: f"{op}: kinds and slopes must have one entry per layer ({L})")
    for k in kinds:
        torch._check(int(k) in _VALUE_NODE_KINDS, lambda: f"{op}: kinds holds {k}, not an activation of a value node")
    if len(states) != L - 1:
        spec.fail(f"states must have one tensor per hidden layer ({L - 1}), got {len(states)}")
    if len(errors) != L:
        spec.fail(f"errors must have one tensor per layer ({L}), got {len(errors)}")
    for k, t in enumerate(states):
        spec.tensor(t, f"states[{k}]", ("B", widths[k + 1]), like=(x, "x"))
    for i, e in enumerate(errors):
        spec.tensor(e, f"errors[{i}]", ("B", widths[i + 1]), like=(x, "x"))
    return widths


if _compiled():

    # Through register_checked_fake: a meta tensor among real ones is refused
    # there, where this fake would otherwise run and leave the outputs unwritten.
    def _check_infer(spec, x, weights, biases, states, errors, target, kinds, slopes, variant, loss,
                     output_precision, steps, gamma, lr):
        widths = _fake_checks(spec, x, weights, biases, states, errors, kinds, slopes)
        spec.tensor(target, "target", ("B", widths[-1]), like=(x, "x"))
        torch._check(0 <= variant < len(VARIANTS), lambda: "predictive_coding_infer: bad variant code")
        torch._check(0 <= loss < len(LOSSES), lambda: "predictive_coding_infer: bad loss code")
        torch._check(steps >= 0, lambda: "predictive_coding_infer: steps must be >= 0")

    def _check_update(spec, x, states, errors, kinds, slopes, scale, weight_grads, bias_grads):
        widths = _fake_checks(spec, x, None, None, states, errors, kinds, slopes)
        if len(weight_grads) != len(errors) or len(bias_grads) != len(errors):
            spec.fail(f"weight_grads and bias_grads must have one tensor per layer ({len(errors)}), got "
                      f"{len(weight_grads)} and {len(bias_grads)}")
        for i in range(len(widths) - 1):
            spec.tensor(weight_grads[i], f"weight_grads[{i}]", (widths[i + 1], widths[i]), like=(x, "x"))
            spec.tensor(bias_grads[i], f"bias_grads[{i}]", (widths[i + 1],), like=(x, "x"))

    register_checked_fake("predictive_coding_infer", _check_infer, lambda *args: None)
    register_checked_fake("predictive_coding_update", _check_update, lambda *args: None)

    register_missing_cuda("predictive_coding_infer", "predictive_coding_update")
