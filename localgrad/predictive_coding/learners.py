"""Predictive coding under the Learner API: PredictiveCoding behind the
registered names pc (inference learning), pc-ipc, pc-zil and pc-fpa."""

from __future__ import annotations

from localgrad.learner import Learner, register_rule
from localgrad.predictive_coding.learner import PredictiveCoding


class PredictiveCodingLearner(Learner):
    """The model (an nn.Sequential of Linear layers and activations, or a
    conv net of Conv2d blocks ending in a Linear) trained by predictive
    coding's inference and local updates (see PredictiveCoding for the
    variants). Options: steps, gamma, loss ("ce" default here, as the
    demo trains; or "mse"), ipc_lr (pc-ipc). Deterministic: no state."""

    def __init__(self, model, *, rule: str, seed: int = 0, process_group=None, variant: str = "il",
                 loss: str = "ce", **options):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        self._adopt(PredictiveCoding(model, variant=variant, loss=loss, **options))


_PAPERS = {
    "pc": ("il", "inference learning: relax the value nodes, then local weight updates",
           "Whittington & Bogacz 2017, Neural Computation 29:1229"),
    "pc-ipc": ("ipc", "incremental predictive coding: weights move at every inference step",
               "Salvatori et al. 2024, ICLR (incremental predictive coding)"),
    "pc-zil": ("zil", "zero-divergence inference learning: equals backprop exactly",
               "Song, Lukasiewicz, Xu & Bogacz 2020, NeurIPS"),
    "pc-fpa": ("fpa", "fixed-prediction assumption: equals backprop at the fixed point",
               "Millidge, Tschantz & Buckley 2022, Neural Computation 34:1329"),
}
for _name, (_variant, _summary, _paper) in _PAPERS.items():
    register_rule(_name, family="predictive_coding", summary=_summary, paper=_paper,
                  variant=_variant)(PredictiveCodingLearner)
