"""localgrad: fused CUDA and C++ kernels for biologically plausible learning rules.

    import localgrad
    model = localgrad.convert(model, rule="dfa")   # or fa, usf, brsf, frsf; then train as usual
    localgrad.metrics.alignment(model, x, y)         # how close the updates are to backprop's
    localgrad.build_info()                           # what was compiled
"""

from localgrad import activations, data, metrics, ops, reference
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
    "metrics",
    "has_cuda_kernels",
    "has_extension",
    "ops",
    "reference",
    "unconvert",
]
