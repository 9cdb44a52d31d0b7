"""The feedback-alignment family and backprop under the Learner API: the
model is converted in place by `localgrad.convert` (the keep-your-own-loop
tier) and each step is one forward and one autograd backward of the loss."""

from __future__ import annotations

from torch import nn

from localgrad.feedback_alignment.conversion import convert
from localgrad.learner import Learner, StepOutput, register_rule
from localgrad.training import output_loss

LOSSES = ("ce", "mse")


_PAPERS = {
    "backprop": "Rumelhart, Hinton & Williams 1986, Nature 323:533",
    "fa": "Lillicrap, Cownden, Tweed & Akerman 2016, Nature Communications 7:13276",
    "usf": "Liao, Leibo & Poggio 2016, AAAI (uniform sign-concordant feedback)",
    "brsf": "Liao, Leibo & Poggio 2016, AAAI (batchwise random-magnitude sign-concordant feedback)",
    "frsf": "Liao, Leibo & Poggio 2016, AAAI (fixed random-magnitude sign-concordant feedback)",
    "dfa": "Nøkland 2016, NeurIPS (direct feedback alignment)",
    "ba": "Samadi, Lillicrap & Tweed 2017, Neural Computation 29:578 (broadcast alignment)",
}
_SUMMARIES = {
    "backprop": "exact gradient by autograd: the baseline every rule is compared with",
    "fa": "backward pass through fixed random matrices instead of the transposed weights",
    "usf": "backward pass through s*sign(W)",
    "brsf": "backward pass through |R|*sign(W), R redrawn at every update",
    "frsf": "backward pass through |R|*sign(W), R drawn once",
    "dfa": "the output error sent to every hidden layer through a fixed random matrix",
    "ba": "DFA's broadcast of the output error, with or without the derivative term",
}


class ConvertLearner(Learner):
    """backprop, fa, usf, brsf, frsf, dfa, ba: `convert(model, rule, ...)` at
    construction (every nn.Linear / nn.Conv2d replaced in place, parameters
    kept; feedback matrices and brSF's counters become the model's buffers,
    so they travel in model.state_dict()), then each step is the loss's
    autograd backward. Options: loss ("ce" or "mse"), and convert's
    feedback_scale, example_input (required for DFA/BA on conv layers),
    inject, derivative."""

    def __init__(self, model: nn.Module, *, rule: str, seed: int = 0, process_group=None, loss: str = "ce",
                 example_input=None, **convert_options):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        if loss not in LOSSES:
            raise ValueError(f"{rule}: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.loss = loss
        convert(model, rule=rule, seed=self.seed, example_input=example_input, **convert_options)

    def _step(self, x, y):
        out = self.model(x)
        loss = output_loss(out, y, self.loss, self.rule)
        loss.backward()
        return StepOutput(loss.detach(), out.detach())


for _name in _PAPERS:
    register_rule(_name, family="feedback_alignment", summary=_SUMMARIES[_name], paper=_PAPERS[_name],
                  baseline=_name == "backprop")(ConvertLearner)
