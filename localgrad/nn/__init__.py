"""Drop-in layers whose weight updates come from local learning rules."""

from localgrad.nn.dfa_conv2d import DFAConv2d
from localgrad.nn.dfa_linear import DFALinear
from localgrad.nn.fa_conv2d import FAConv2d
from localgrad.nn.fa_linear import FALinear

__all__ = ["DFAConv2d", "DFALinear", "FAConv2d", "FALinear"]
