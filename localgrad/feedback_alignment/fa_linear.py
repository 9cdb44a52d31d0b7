"""nn.Linear trained by a feedback-alignment-family rule."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from localgrad.feedback_alignment.feedback import FeedbackMixin, share_parameters


class _FeedbackLinearFunction(torch.autograd.Function):
    """y = x W^T + b, whose backward sends grad_y through B instead of W:
    grad_x = grad_y B; grad_W and grad_b are the true ones."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        ctx.save_for_backward(x)
        ctx.layer = layer
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        layer = ctx.layer
        g = grad_y.reshape(-1, grad_y.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ layer.backward_matrix().to(g.dtype)).view(x.shape)
        if ctx.needs_input_grad[1]:
            grad_w = g.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b, None


class FALinear(FeedbackMixin, nn.Linear):
    """An nn.Linear whose backward pass uses the matrix `feedback` (weight's
    shape) in place of its weight, per `feedback_rule` ("fa", "usf", "brsf",
    "frsf"; see localgrad.feedback_alignment.feedback). Made by localgrad.convert."""

    @classmethod
    def from_linear(cls, linear: nn.Linear, rule: str, seed: int = 0, scale: float | None = None) -> "FALinear":
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        share_parameters(layer, linear)
        layer.init_feedback(rule, seed, scale)
        return layer

    def to_plain(self) -> nn.Linear:
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        return share_parameters(plain, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        return _FeedbackLinearFunction.apply(x, self.weight, self.bias, self)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.feedback_repr()}"
