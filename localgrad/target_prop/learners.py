"""Target propagation under the Learner API: TargetProp behind tp, dtp,
ddtp, ldrl and gait; the feedback maps are the learner's parameters."""

from __future__ import annotations

import torch

from localgrad.learner import Learner, register_rule
from localgrad.target_prop.learner import TargetProp


class TargetPropLearner(Learner):
    """Each step writes the forward weights' updates (on backprop's scale)
    and the feedback maps' gradients (their batch-mean reconstruction
    losses) into `.grad`; give `parameters()` (the feedback) to the
    optimizer with the model's. Options: TargetProp's beta, noise, loss,
    lam, gamma, feedback, ortho, samples. The defaults are the demo's tuned
    settings (beta 0.1, noise 0.1; tp, dtp and ldrl with the gated feedback
    maps, which train the demo's ReLU MLP 1.4 to 6 points closer to
    backprop than the papers' form s(V h + c), feedback="nonlinear")."""

    def __init__(self, model, *, rule: str, seed: int = 0, process_group=None, variant: str = "dtp", **options):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        self._adopt(TargetProp(model, variant=variant, seed=self.seed, **options))

    def parameters(self):
        return self.inner.feedback_parameters()

    def default_optimizer(self, lr=None):
        """Adam, the feedback at ten times the forward weights' rate (1e-3
        and 1e-2 unless given): the demo's tuning, in the range of
        Meulemans et al. 2020's and Ernoult et al. 2022's searches."""
        lr = 1e-3 if lr is None else lr
        return torch.optim.Adam([{"params": list(self.model.parameters()), "lr": lr},
                                 {"params": self.parameters(), "lr": 10 * lr}])


_RULES = {
    "tp": ("targets through learned approximate inverses", "Bengio 2014, arXiv:1407.7906",
           {"feedback": "gated"}),
    "dtp": ("difference target propagation", "Lee, Zhang, Fischer & Bengio 2015, ECML PKDD",
            {"feedback": "gated"}),
    "ddtp": ("direct difference target propagation (DDTP-linear, difference reconstruction loss)",
             "Meulemans et al. 2020, NeurIPS", {"lam": 0.0}),
    "ldrl": ("DTP with the local difference reconstruction loss", "Ernoult et al. 2022, ICML",
             {"feedback": "gated"}),
    "gait": ("GAIT-prop: targets through exact inverses of square layers", "Ahmad, van Gerven & Ambrogioni 2020, "
             "NeurIPS", {"gamma": 0.1}),
}
for _name, (_summary, _paper, _options) in _RULES.items():
    register_rule(_name, family="target_prop", summary=_summary, paper=_paper, variant=_name, beta=0.1,
                  **({} if _name == "gait" else {"noise": 0.1}), **_options)(TargetPropLearner)
