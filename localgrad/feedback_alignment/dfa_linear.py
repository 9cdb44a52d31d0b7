"""nn.Linear as a layer of a DFA-trained network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from localgrad.feedback_alignment.feedback import share_parameters


class DFALinear(nn.Linear):
    """An nn.Linear whose weight gradient comes from Direct Feedback Alignment.

    Made by `localgrad.convert(model, rule="dfa")`, which wires it to the
    model's `localgrad.feedback_alignment.DirectFeedbackAlignment`. A hidden layer holds the
    buffer `feedback` (n_outputs_of_model, out_features), its fixed random B_l;
    the output layer holds none and keeps its true gradient. Outside of
    training (grad disabled) it is a plain nn.Linear.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.dfa_rule = None  # set by convert; a plain attribute, not a submodule
        self.dfa_index = -1

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "DFALinear":
        """A DFALinear sharing `linear`'s parameters (optimizers holding them keep working)."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        return share_parameters(layer, linear)

    def to_plain(self) -> nn.Linear:
        """A plain nn.Linear sharing this layer's parameters."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        return share_parameters(linear, self)

    @property
    def dfa_width(self) -> int:
        return self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dfa_rule is None or not torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        return self.dfa_rule.forward_layer(self, x)

    def dfa_compute(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def dfa_weight_grads(self, delta: torch.Tensor, x: torch.Tensor):
        """(grad_weight, grad_bias) for delta: (rows, out_features) at the
        output; leading dimensions of x count as batch."""
        grad_w = delta.t() @ x.reshape(-1, self.in_features).to(delta.dtype)
        return grad_w, (delta.sum(0) if self.bias is not None else None)

    def extra_repr(self) -> str:
        role = "output" if getattr(self, "feedback", None) is None else "hidden"
        return f"{super().extra_repr()}, dfa={role}"
