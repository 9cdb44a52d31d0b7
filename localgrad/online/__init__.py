"""Online learning of recurrent networks (issue 6)."""

from localgrad.online.eprop_spiking import SpikingBPTT, SpikingEProp
from localgrad.online.lif import ALIF, LIF

__all__ = ["ALIF", "LIF", "SpikingBPTT", "SpikingEProp"]
