"""Learning rules that replace backprop's credit assignment in a converted model."""

from localgrad.rules.dfa import DirectFeedbackAlignment

__all__ = ["DirectFeedbackAlignment"]
