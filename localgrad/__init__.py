"""localgrad: fused CUDA and C++ kernels for biologically plausible learning rules.

    import localgrad
    learner = localgrad.learner(model, "dfa")        # any name of localgrad.rules()
    opt = torch.optim.Adam([*model.parameters(), *learner.parameters()])
    opt.zero_grad(); learner.step(x, y); opt.step()  # one minibatch, every rule the same way

    model = localgrad.convert(model, rule="dfa")     # feedback alignment in your own loop
    localgrad.build_info()                           # what was compiled

One subpackage per learning-rule family, imported on first use:
localgrad.feedback_alignment, localgrad.eqprop, localgrad.online,
localgrad.hebbian, localgrad.predictive_coding, localgrad.synthetic_gradients,
localgrad.target_prop, localgrad.meta.
"""

import importlib

from localgrad import activations, data, metrics, ops, reference
from localgrad._extension import build_info, has_cuda_kernels, has_extension
from localgrad.activations import Activation
from localgrad.learner import Learner, StepOutput, UnsupportedModelError, learner, register_rule, rule_info, rules
from localgrad.feedback_alignment import convert, unconvert

__version__ = "0.1.0"

# The families' subpackages (and the shared training helpers), loaded when
# first named: `import localgrad; localgrad.online.LeakyRNN` works without
# importing every family at start-up.
FAMILIES = ("feedback_alignment", "eqprop", "online", "hebbian", "predictive_coding", "synthetic_gradients",
            "target_prop", "meta", "forward_forward", "forward_gradient", "pepita")
_LAZY = (*FAMILIES, "training")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"localgrad.{name}")
    raise AttributeError(f"module 'localgrad' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Activation",
    "Learner",
    "StepOutput",
    "UnsupportedModelError",
    "learner",
    "register_rule",
    "rule_info",
    "rules",
    "FAMILIES",
    "activations",
    "build_info",
    "convert",
    "data",
    "eqprop",
    "feedback_alignment",
    "forward_gradient",
    "has_cuda_kernels",
    "has_extension",
    "hebbian",
    "meta",
    "metrics",
    "online",
    "pepita",
    "predictive_coding",
    "target_prop",
    "ops",
    "reference",
    "synthetic_gradients",
    "training",
    "unconvert",
]
