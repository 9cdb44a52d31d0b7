"""sign_feedback: sign-concordant feedback matrices (uSF, brSF, frSF) from a
counter-based RNG (schema: csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, register_fake, register_missing_cuda


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
    if (lib := compiled_ops()) is not None:
        lib.sign_feedback(weight, int(seed), int(counter), float(scale), bool(random_magnitude), out)
        return out
    fall_back("sign_feedback", weight)
    return out.copy_(reference.sign_feedback(weight, seed, counter, scale, random_magnitude))



if has_extension():

    @register_fake("sign_feedback")
    def _sign_feedback_fake(weight, seed, counter, scale, random_magnitude, out):
        return None

    register_missing_cuda("sign_feedback")
