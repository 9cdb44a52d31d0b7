"""Drop-in layers whose weight updates come from local learning rules."""

from localgrad.nn.dfa_linear import DFALinear

__all__ = ["DFALinear"]
