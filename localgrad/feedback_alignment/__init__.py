"""The feedback-alignment family: credit assignment through fixed or
sign-tied feedback matrices instead of the transposed forward weights.

    model = localgrad.convert(model, rule="dfa")   # or fa, usf, brsf, frsf, ba
    loss.backward(); optimizer.step()              # the training loop stays as it is

Layers (FALinear, FAConv2d: fa/usf/brsf/frsf; DFALinear, DFAConv2d: dfa/ba),
the DFA broadcast rule (DirectFeedbackAlignment) and the conversion of a
stock model (convert, unconvert). Ops: dfa_project, sign_feedback.
"""

from localgrad.feedback_alignment.conversion import CONVERT_RULES, convert, unconvert
from localgrad.feedback_alignment.dfa import DirectFeedbackAlignment
from localgrad.feedback_alignment.dfa_conv2d import DFAConv2d
from localgrad.feedback_alignment.dfa_linear import DFALinear
from localgrad.feedback_alignment.fa_conv2d import FAConv2d
from localgrad.feedback_alignment.fa_linear import FALinear

__all__ = [
    "DFAConv2d",
    "DFALinear",
    "DirectFeedbackAlignment",
    "FAConv2d",
    "FALinear",
    "CONVERT_RULES",
    "convert",
    "unconvert",
]
