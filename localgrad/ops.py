"""Typed Python entry points to localgrad's ops, and their fake kernels.

Each op lives in torch.ops.localgrad (schemas: csrc/registration.cpp). The
functions here add defaults and output allocation, fall back to the reference
implementation when the extension is missing (CPU only), and register the fake
kernels that let torch.compile trace the ops.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from localgrad import reference
from localgrad._extension import cuda_build_missing_error, has_cuda_kernels, has_extension

_OPS = ("dfa_project", "sign_feedback")
_warned_fallback = False


def _fallback_warning(op: str) -> None:
    global _warned_fallback
    if not _warned_fallback:
        warnings.warn(
            f"localgrad.ops.{op}: the compiled extension is not loaded; running the "
            "pure-PyTorch reference (slow). Install with `pip install --no-build-isolation -e .`",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned_fallback = True


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
    if has_extension():
        torch.ops.localgrad.dfa_project(error, feedback, activations, kinds, slopes, out)
        return out
    if error.is_cuda:
        raise cuda_build_missing_error("dfa_project")
    _fallback_warning("dfa_project")
    widths = [o.shape[1] for o in out]
    for o, r in zip(out, reference.dfa_project(error, feedback, activations, kinds, slopes, widths)):
        o.copy_(r)
    return out


def sign_feedback(
    weight: torch.Tensor,
    *,
    seed: int = 0,
    counter: int = 0,
    scale: float = 1.0,
    random_magnitude: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sign-concordant feedback matrix of `weight` (Liao, Leibo & Poggio 2016):
    scale * sign(weight) (uSF), or with random_magnitude |R| * sign(weight),
    R ~ U(-scale, scale) drawn from (seed, counter, element index) by the
    counter-based RNG (brSF: a new counter each update; frSF: a fixed one).
    Writes into `out` (weight's shape, contiguous) when given; returns it."""
    if out is None:
        out = torch.empty_like(weight, memory_format=torch.contiguous_format)
    if has_extension():
        torch.ops.localgrad.sign_feedback(weight, int(seed), int(counter), float(scale), bool(random_magnitude), out)
        return out
    if weight.is_cuda:
        raise cuda_build_missing_error("sign_feedback")
    _fallback_warning("sign_feedback")
    return out.copy_(reference.sign_feedback(weight, seed, counter, scale, random_magnitude))


def _register_fakes() -> None:
    @torch.library.register_fake("localgrad::dfa_project")
    def _dfa_project_fake(error, feedback, activations, kinds, slopes, out):
        # Writes into `out` only; nothing to allocate.
        return None

    @torch.library.register_fake("localgrad::sign_feedback")
    def _sign_feedback_fake(weight, seed, counter, scale, random_magnitude, out):
        return None


def _register_missing_cuda() -> None:
    """Without the CUDA backend, CUDA calls get instructions, not the
    dispatcher's 'could not run ... with arguments from the CUDA backend'."""
    for op in _OPS:

        def refuse(*args, _op=op, **kwargs):
            raise cuda_build_missing_error(_op)

        torch.library.impl(f"localgrad::{op}", "CUDA", refuse)


if has_extension():
    _register_fakes()
    if not has_cuda_kernels():
        _register_missing_cuda()
