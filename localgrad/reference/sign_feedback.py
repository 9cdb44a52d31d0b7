"""Sign-concordant feedback, reference implementation.

Liao, Leibo & Poggio, "How Important Is Weight Symmetry in Backpropagation?",
AAAI 2016, Sec. 3: the backward pass sends errors through a matrix B that
shares only the signs of the forward weights W,

    uSF (uniform sign-concordant feedback):          B = sign(W)
    brSF (batchwise random magnitude, sign-concordant): B = |R| * sign(W), R redrawn every update
    frSF (fixed random magnitude, sign-concordant):     B = |R| * sign(W), R fixed

(Moskovitz, Litwin-Kumar & Abbott 2018 revisit uSF at scale.) Here B is
multiplied by `scale` for uSF, and R ~ U(-scale, scale) i.i.d. for the random
magnitudes, so |R| = scale * u with u uniform on [0, 1) drawn by the
counter-based RNG from (seed, counter, element index): a new counter is a new
R, and no R is ever stored.
"""

from __future__ import annotations

import torch

from localgrad.reference.counter_rng import uniform


def sign_feedback(weight: torch.Tensor, seed: int, counter: int, scale: float, random_magnitude: bool) -> torch.Tensor:
    """B of weight's shape and dtype (computed in float64, as the kernels do)."""
    if random_magnitude:
        magnitude = uniform(seed, counter, weight.numel()).view(weight.shape).to(weight.device) * scale
    else:
        magnitude = torch.full(weight.shape, float(scale), dtype=torch.float64, device=weight.device)
    return (torch.sign(weight.double()) * magnitude).to(weight.dtype)
