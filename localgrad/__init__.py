"""localgrad: fused CUDA and C++ kernels for biologically plausible learning rules.

    import localgrad
    model = localgrad.convert(model, rule="dfa")   # then train as usual
    localgrad.build_info()                           # what was compiled
"""

from localgrad import activations, data, ops, reference
from localgrad._extension import build_info, has_cuda_kernels, has_extension
from localgrad.activations import Activation
from localgrad.convert import RULES, convert, unconvert

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "RULES",
    "activations",
    "build_info",
    "convert",
    "data",
    "has_cuda_kernels",
    "has_extension",
    "ops",
    "reference",
    "unconvert",
]
