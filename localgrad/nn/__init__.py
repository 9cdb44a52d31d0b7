"""Deprecated: the feedback-alignment layers moved to
localgrad.feedback_alignment; this alias goes in the next release."""

import warnings

from localgrad.feedback_alignment import DFAConv2d, DFALinear, FAConv2d, FALinear

warnings.warn(
    "localgrad.nn is deprecated; import the layers from localgrad.feedback_alignment",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["DFAConv2d", "DFALinear", "FAConv2d", "FALinear"]
