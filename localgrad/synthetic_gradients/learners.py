"""Synthetic gradients under the Learner API: DNI and cDNI on a stock
nn.Sequential; the synthetic-gradient modules are the learner's parameters."""

from __future__ import annotations

from torch import nn

from localgrad.learner import Learner, UnsupportedModelError, register_rule
from localgrad.synthetic_gradients.learner import DNI


class DNILearner(Learner):
    """Every layer decoupled by default (split="pre-activation": a linear
    synthetic-gradient module at each hidden layer's output before its
    activation, which beat the activations' interfaces on the demo's MLP,
    92.3 against 88.1 %). Options: DNI's split, lam, sg_hidden, loss,
    example_input."""

    def __init__(self, model, *, rule: str, seed: int = 0, process_group=None, conditioned: bool = False,
                 split="pre-activation", loss: str = "ce", **options):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        conv = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
        if conv is not None:
            # A dense module over a conv map of C*H*W units holds (C*H*W)^2 weights (GiBs on LeNet); the
            # convolutional modules of the DNI paper are not written yet.
            raise UnsupportedModelError(f"{rule}: model.{conv} is a Conv2d; synthetic gradients on conv feature "
                                        "maps need convolutional synthetic-gradient modules, which localgrad does "
                                        "not have yet (MLPs only)")
        self._adopt(DNI(model, split=split, conditioned=conditioned, loss=loss, **options))

    def parameters(self):
        return list(self.inner.sg_parameters())


_PAPER = "Jaderberg et al. 2017, ICML (decoupled neural interfaces using synthetic gradients)"
register_rule("dni", family="synthetic_gradients", paper=_PAPER,
              summary="each block learns from a predicted gradient of the loss at its output")(DNILearner)
register_rule("cdni", family="synthetic_gradients", paper=_PAPER, conditioned=True,
              summary="DNI with the synthetic-gradient modules also seeing the label")(DNILearner)
