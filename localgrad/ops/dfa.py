"""dfa_project: the Direct Feedback Alignment error of every hidden layer in one
call (schema: csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, register_fake, register_missing_cuda


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
    kinds = [int(k) for k in kinds]
    slopes = [0.0] * len(kinds) if slopes is None else [float(s) for s in slopes]
    activations = list(activations)
    if out is None:
        if widths is None:
            if any(a is None for a in activations):
                raise ValueError("dfa_project: pass `widths` or `out` when an activation is None")
            widths = [a.shape[-1] for a in activations]
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




if has_extension():

    @register_fake("dfa_project")
    def _dfa_project_fake(error, feedback, activations, kinds, slopes, out):
        # Writes into `out` only; nothing to allocate.
        return None

    register_missing_cuda("dfa_project")
