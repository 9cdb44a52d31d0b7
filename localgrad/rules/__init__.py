"""Deprecated: DirectFeedbackAlignment moved to localgrad.feedback_alignment;
this alias goes in the next release."""

import warnings

from localgrad.feedback_alignment import DirectFeedbackAlignment

warnings.warn(
    "localgrad.rules is deprecated; import DirectFeedbackAlignment from localgrad.feedback_alignment",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["DirectFeedbackAlignment"]
