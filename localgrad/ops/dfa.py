"""dfa_project: the Direct Feedback Alignment error of every hidden layer in one
call (schema: csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, FLOATS, register_checked_fake, register_missing_cuda
from localgrad._checks import as_float, as_int

N_ACTIVATIONS = 6  # csrc/activation.h kNumActivations


def dfa_project(
    error: torch.Tensor,
    feedback: torch.Tensor,
    activations: Sequence[torch.Tensor | None],
    kinds: Sequence[int],
    slopes: Sequence[float] | None = None,
    out: Sequence[torch.Tensor] | None = None,
    widths: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """Direct Feedback Alignment error of every hidden layer, in one call:

        out[l] = (error @ feedback[:, cols_l]) * f'(a_l)

    error: (batch, n_out). feedback: (n_out, sum of widths), the layers'
    feedback matrices side by side. activations[l]: (batch, width_l), the
    layer's output f(a_l) (f'(a_l) itself for Activation.DERIVATIVE; None for
    Activation.IDENTITY). kinds: localgrad.activations.Activation per layer;
    slopes: LeakyReLU slopes (default 0). out: preallocated (batch, width_l)
    outputs; allocated as column blocks of one buffer when omitted, with widths
    taken from `widths` or the activations. Returns out.
    """
    kinds = [as_int(k, "dfa_project", f"kinds[{i}]") for i, k in enumerate(kinds)]
    slopes = (
        [0.0] * len(kinds)
        if slopes is None
        else [as_float(s, "dfa_project", f"slopes[{i}]") for i, s in enumerate(slopes)]
    )
    activations = list(activations)
    if out is None:
        if widths is None:
            if any(a is None for a in activations):
                raise ValueError("dfa_project: pass `widths` or `out` when an activation is None")
            widths = [a.shape[-1] for a in activations]
        widths = [as_int(w, "dfa_project", f"widths[{i}]", minimum=0) for i, w in enumerate(widths)]
        buffer = error.new_empty((error.shape[0], sum(widths)))
        out = list(buffer.split(list(widths), dim=1))
    out = list(out)
    if (lib := compiled_ops()) is not None:
        lib.dfa_project(error, feedback, activations, kinds, slopes, out)
        return out
    fall_back("dfa_project", error)
    widths = [o.shape[1] for o in out]
    for o, r in zip(out, reference.dfa_project(error, feedback, activations, kinds, slopes, widths)):
        o.copy_(r)
    return out




def _check_project(spec, error, feedback, activations, kinds, slopes, out):
    """The checks of csrc/dfa_glue.cpp that read no data."""
    spec.tensor(error, "error", ("B", "K"), floating=FLOATS)
    spec.tensor(feedback, "feedback", ("K", "W"), like=(error, "error"))
    n = len(out)
    if not len(activations) == len(kinds) == len(slopes) == n:
        spec.fail(
            "activations, kinds, slopes and out must have one entry per layer, got "
            f"{len(activations)}, {len(kinds)}, {len(slopes)} and {n}"
        )
    total = 0
    for l, o in enumerate(out):
        spec.tensor(o, f"out[{l}]", ("B", None), like=(error, "error"), dense_rows=True)
        if not 0 <= kinds[l] < N_ACTIVATIONS:
            spec.fail(f"kinds[{l}] = {kinds[l]} is not an activation code (0..{N_ACTIVATIONS - 1})")
        a = activations[l]
        if a is None:
            if kinds[l] != 1:
                spec.fail(f"activations[{l}] is None, which only an identity layer (kinds[{l}] = 1) allows")
        else:
            spec.tensor(a, f"activations[{l}]", tuple(o.shape), like=(error, "error"))
        total += o.shape[1]
    if total != spec.size["W"]:
        spec.fail(f"the widths of out sum to {total} but feedback has {spec.size['W']} columns")


if has_extension():
    # Writes into `out` only; nothing to allocate.
    register_checked_fake("dfa_project", _check_project, lambda *args: None)
    register_missing_cuda("dfa_project")
