"""What every layer of the feedback-alignment family shares: the matrix B its
backward pass uses in place of its weight, and how B is made.

    fa    Lillicrap et al. 2016: B fixed and random, drawn once.
    usf   Liao, Leibo & Poggio 2016: B = s * sign(W), recomputed at every backward.
    brsf  B = |R| * sign(W), R ~ U(-s, s) redrawn at every backward.
    frsf  B = |R| * sign(W), R ~ U(-s, s) drawn once.

R is never stored: the sign_feedback op draws it from a counter-based RNG
keyed by the layer's seed and a counter (brSF advances the counter at every
backward and keeps it in state_dict, so a resumed run draws the same R).
The `feedback` buffer always holds the B of the latest backward.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from localgrad import ops

FEEDBACK_RULES = ("fa", "usf", "brsf", "frsf")
RANDOM_MAGNITUDE = ("brsf", "frsf")


def default_bound(weight: torch.Tensor) -> float:
    """1/sqrt(fan_in): the bound of PyTorch's default U(-b, b) init of
    Linear and Conv2d weights, so B starts at the weight's scale."""
    fan_in = weight[0].numel()
    return 1.0 / math.sqrt(max(fan_in, 1))


class FeedbackMixin:
    """Adds B (`feedback`) and its bookkeeping to a Linear or Conv2d."""

    feedback_rule: str
    feedback_scale: float

    def init_feedback(self, rule: str, seed: int, scale: float | None) -> None:
        if rule not in FEEDBACK_RULES:
            raise ValueError(f"unknown feedback rule {rule!r}; choose one of {', '.join(FEEDBACK_RULES)}")
        self.feedback_rule = rule
        bound = default_bound(self.weight) if scale is None else float(scale)
        # uSF's B = s * sign(W) matches the standard deviation of U(-b, b).
        self.feedback_scale = bound / math.sqrt(3.0) if (rule == "usf" and scale is None) else bound
        weight = self.weight.detach()
        if rule in RANDOM_MAGNITUDE:
            self.register_buffer("feedback_seed", torch.tensor(seed, dtype=torch.int64))
            self.register_buffer("feedback_step", torch.tensor(0, dtype=torch.int64))
        if rule == "fa":
            generator = torch.Generator().manual_seed(seed)
            b = (torch.rand(weight.shape, generator=generator, dtype=torch.float64) * 2 - 1) * self.feedback_scale
            self.register_buffer("feedback", b.to(device=weight.device, dtype=weight.dtype))
        else:
            self.register_buffer("feedback", torch.empty_like(weight, memory_format=torch.contiguous_format))
            self._draw_feedback(counter=0)

    def _draw_feedback(self, counter: int) -> None:
        ops.sign_feedback(
            self.weight.detach(),
            seed=int(self.feedback_seed) if self.feedback_rule in RANDOM_MAGNITUDE else 0,
            counter=counter,
            scale=self.feedback_scale,
            random_magnitude=self.feedback_rule in RANDOM_MAGNITUDE,
            out=self.feedback,
        )

    def backward_matrix(self) -> torch.Tensor:
        """B for the backward running now (advances brSF's counter)."""
        rule = self.feedback_rule
        if rule == "usf" or rule == "frsf":
            self._draw_feedback(counter=0)
        elif rule == "brsf":
            self.feedback_step += 1
            self._draw_feedback(counter=int(self.feedback_step))
        return self.feedback

    def feedback_repr(self) -> str:
        return f"rule={self.feedback_rule}, feedback_scale={self.feedback_scale:.4g}"


def share_parameters(new: nn.Module, old: nn.Module) -> nn.Module:
    """Points `new` at `old`'s parameters (optimizers holding them keep working)."""
    new.weight = old.weight
    new.bias = old.bias
    new.train(old.training)
    return new
