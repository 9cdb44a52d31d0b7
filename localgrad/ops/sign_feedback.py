"""sign_feedback: sign-concordant feedback matrices (uSF, brSF, frSF) from a
counter-based RNG (schema: csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import math

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, FLOATS, register_checked_fake, register_missing_cuda
from localgrad._checks import as_bool, as_float, as_int


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
    weight: any shape, float64, float32, float16 or bfloat16; the result has
    its shape and dtype. Writes into `out` (weight's shape, contiguous) when
    given; returns it."""
    op = "sign_feedback"
    seed, counter = as_int(seed, op, "seed"), as_int(counter, op, "counter")
    scale, random_magnitude = as_float(scale, op, "scale"), as_bool(random_magnitude, op, "random_magnitude")
    if out is None:
        out = torch.empty_like(weight, memory_format=torch.contiguous_format)
    if (lib := compiled_ops()) is not None:
        lib.sign_feedback(weight, seed, counter, scale, random_magnitude, out)
        return out
    fall_back("sign_feedback", weight)
    return out.copy_(reference.sign_feedback(weight, seed, counter, scale, random_magnitude))



def _check(spec, weight, seed, counter, scale, random_magnitude, out):
    """The checks of csrc/sign_feedback_glue.cpp that read no data."""
    spec.tensor(weight, "weight", floating=FLOATS)
    spec.tensor(out, "out", like=(weight, "weight"))
    if out.shape != weight.shape:
        spec.fail(f"out must have the shape of weight {tuple(weight.shape)}, got {tuple(out.shape)}")
    if not out.is_contiguous():
        spec.fail(f"out must be contiguous (an output cannot be copied), got strides {out.stride()}")
    if not math.isfinite(scale):
        spec.fail(f"scale must be finite, got {scale}")


if has_extension():
    register_checked_fake("sign_feedback", _check, lambda *args: None)
    register_missing_cuda("sign_feedback")
