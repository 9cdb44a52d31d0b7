"""nn.Conv2d as a hidden layer of a DFA-trained network."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from localgrad.feedback_alignment.fa_conv2d import _conv_kwargs, explicit_padding, unsupported_reason
from localgrad.feedback_alignment.feedback import share_parameters


class DFAConv2d(nn.Conv2d):
    """An nn.Conv2d whose weight gradient comes from Direct Feedback Alignment.

    Made by `localgrad.convert(model, rule="dfa", example_input=...)`. Its
    `feedback` buffer (n_outputs_of_model, C*H*W) sends the output error to its
    whole output map, whose shape (C, H, W) is fixed at conversion; its weight
    gradient is the convolution's weight gradient for that map's delta.
    Outside of training (grad disabled) it is a plain nn.Conv2d.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dfa_rule = None
        self.dfa_index = -1
        self.output_map: tuple[int, int, int] | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "DFAConv2d":
        reason = unsupported_reason(conv)
        if reason is not None:
            raise ValueError(f"DFAConv2d: unsupported convolution ({reason})")
        return share_parameters(cls(**_conv_kwargs(conv), device="meta"), conv)

    def to_plain(self) -> nn.Conv2d:
        return share_parameters(nn.Conv2d(**_conv_kwargs(self), device="meta"), self)

    @property
    def dfa_width(self) -> int:
        return math.prod(self.output_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dfa_rule is None or not torch.is_grad_enabled():
            return super().forward(x)
        return self.dfa_rule.forward_layer(self, x)

    def dfa_compute(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, self.stride, explicit_padding(self), self.dilation, self.groups)
        if self.output_map is not None and tuple(y.shape[1:]) != self.output_map:
            raise RuntimeError(
                f"DFA: this Conv2d's feedback was sized at conversion for output maps {self.output_map}, "
                f"got {tuple(y.shape[1:])}; DFA's feedback to a conv layer is fixed to its output map"
            )
        return y

    def dfa_weight_grads(self, delta: torch.Tensor, x: torch.Tensor):
        """(grad_weight, grad_bias) for delta: (batch, C*H*W) at the output."""
        # The weight gradient does not read the weight, only its shape: an
        # stand-in, since in backward the weight may be resharded (FSDP2).
        _, grad_w, grad_b = torch.ops.aten.convolution_backward(
            delta.view(x.shape[0], *self.output_map),
            x,
            delta.new_zeros(self.weight.shape),
            [self.out_channels] if self.bias is not None else None,
            list(self.stride),
            list(explicit_padding(self)),
            list(self.dilation),
            False,
            [0, 0],
            self.groups,
            [False, True, self.bias is not None],
        )
        return grad_w, grad_b

    def extra_repr(self) -> str:
        role = "output" if getattr(self, "feedback", None) is None else "hidden"
        return f"{super().extra_repr()}, dfa={role}"
