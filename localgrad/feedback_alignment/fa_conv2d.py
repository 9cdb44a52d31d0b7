"""nn.Conv2d trained by a feedback-alignment-family rule."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from localgrad.feedback_alignment.feedback import FeedbackMixin, share_parameters


def explicit_padding(conv: nn.Conv2d) -> tuple[int, int] | None:
    """The conv's padding as two ints, or None when it has no symmetric
    equivalent (padding="same" with an even receptive field)."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0)
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            return None
        return tuple(t // 2 for t in total)
    return tuple(conv.padding)


def unsupported_reason(conv: nn.Conv2d) -> str | None:
    """Why a conv cannot take a substituted backward matrix, or None."""
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r}"
    if explicit_padding(conv) is None:
        return "padding='same' with an even receptive field"
    return None


class _FeedbackConv2dFunction(torch.autograd.Function):
    """A convolution whose backward sends grad_y through B instead of W; one
    ATen convolution_backward gives grad_x (with B) and the true grad_W and
    grad_b (which do not depend on the weight's values)."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer, padding):
        ctx.save_for_backward(x)
        ctx.layer = layer
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, layer.stride, padding, layer.dilation, layer.groups)

    @staticmethod
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        layer = ctx.layer
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        matrix = layer.backward_matrix() if need_x else layer.weight
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_y,
            x,
            matrix.to(grad_y.dtype),
            [layer.out_channels] if ctx.has_bias else None,
            list(layer.stride),
            list(ctx.padding),
            list(layer.dilation),
            False,
            [0, 0],
            layer.groups,
            [need_x, need_w, need_b],
        )
        return grad_x, grad_w, grad_b, None, None


class FAConv2d(FeedbackMixin, nn.Conv2d):
    """An nn.Conv2d whose backward pass uses the matrix `feedback` (weight's
    shape) in place of its weight, per `feedback_rule` ("fa", "usf", "brsf",
    "frsf"; see localgrad.feedback_alignment.feedback). Any stride, padding, dilation and
    groups; zero padding only. Made by localgrad.convert."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rule: str, seed: int = 0, scale: float | None = None) -> "FAConv2d":
        reason = unsupported_reason(conv)
        if reason is not None:
            raise ValueError(f"FAConv2d: unsupported convolution ({reason})")
        layer = cls(**_conv_kwargs(conv), device="meta")
        share_parameters(layer, conv)
        layer.init_feedback(rule, seed, scale)
        return layer

    def to_plain(self) -> nn.Conv2d:
        return share_parameters(nn.Conv2d(**_conv_kwargs(self), device="meta"), self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return super().forward(x)
        return _FeedbackConv2dFunction.apply(x, self.weight, self.bias, self, explicit_padding(self))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.feedback_repr()}"


def _conv_kwargs(conv: nn.Conv2d) -> dict:
    return dict(
        in_channels=conv.in_channels,
        out_channels=conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
