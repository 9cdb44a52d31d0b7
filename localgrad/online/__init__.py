"""Online learning of recurrent networks: the leaky rate RNN and the rules
that train it without storing the past (RTRL, SnAp-n, RFLO, e-prop, UORO,
KF-RTRL), spiking LIF/ALIF networks trained by e-prop, plus BPTT as the
baseline."""

from localgrad.online.bptt import BPTT
from localgrad.online.eprop import EProp
from localgrad.online.eprop_spiking import SpikingBPTT, SpikingEProp
from localgrad.online.kfrtrl import KFRTRL
from localgrad.online.leaky_rnn import LeakyRNN
from localgrad.online.learner import OnlineLearner
from localgrad.online.lif import ALIF, LIF
from localgrad.online.rflo import RFLO
from localgrad.online.rtrl import RTRL
from localgrad.online.snap import SnAp, snap_pattern
from localgrad.online.uoro import UORO

__all__ = [
    "ALIF",
    "BPTT",
    "EProp",
    "KFRTRL",
    "LIF",
    "LeakyRNN",
    "OnlineLearner",
    "RFLO",
    "RTRL",
    "SnAp",
    "SpikingBPTT",
    "SpikingEProp",
    "UORO",
    "snap_pattern",
]
