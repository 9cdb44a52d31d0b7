"""The Hebbian rules under the Learner API: a stock MLP whose hidden Linear
layers learn without labels by the rule and whose output layer is a probe
trained on their features by its exact (delta-rule) gradient, all in one
step, as the demo's rows do greedily."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from localgrad.hebbian.layers import HebbianLinear
from localgrad.learner import Learner, StepOutput, UnsupportedModelError, add_to_grad, register_rule
from localgrad.training import check_labels, output_loss

# Elementwise and shape-only modules a Hebbian MLP may hold besides its Linear layers.
_PARAMETER_FREE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Identity, nn.Flatten,
                   nn.Hardsigmoid, nn.Softplus, nn.ReLU6)


class HebbianLearner(Learner):
    """oja, sanger, bcm, krotov, softhebb.

    model: an nn.Sequential of Linear layers and parameter-free modules,
    ending in a Linear (the probe). Each hidden Linear's weight learns from
    its own input by the rule (localgrad.ops.hebbian_update: the update is
    the rule's, from the layer's input alone, without labels or feedback);
    its bias, which the rules do not have, gets a zero `.grad` and stays.
    The output layer learns by the gradient of the loss ("ce" or "mse") of
    its own output on the hidden features (no gradient crosses into the
    hidden layers). Options: the rule's knobs (temperature, p, rank, anti,
    lr_power, normalize, theta_rate, normalize_input) with the published
    defaults of localgrad.hebbian.layers.DEFAULTS; lr is the rate inside the
    rule (1: the optimizer's learning rate sets the step, as for every rule).
    BCM's thresholds are the learner's state."""

    def __init__(self, model, *, rule: str, seed: int = 0, process_group=None, hebbian_rule: str = "oja",
                 loss: str = "ce", lr: float = 1.0, normalize_input: bool | None = None, **knobs):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        if loss not in ("ce", "mse"):
            raise ValueError(f"{rule}: loss must be 'ce' or 'mse', got {loss!r}")
        self.loss = loss
        if not isinstance(model, nn.Sequential):
            raise UnsupportedModelError(f"{rule}: the model must be an nn.Sequential of Linear layers and "
                                        f"activations ending in a Linear (the probe), got {type(model).__name__}")
        for i, m in enumerate(model):
            if type(m) is not nn.Linear and not isinstance(m, _PARAMETER_FREE):
                raise UnsupportedModelError(f"{rule}: model[{i}] ({type(m).__name__}) is neither a Linear layer nor "
                                            "a parameter-free activation; the Hebbian learner trains stock MLPs")
        linears = [m for m in model if type(m) is nn.Linear]
        if not linears or type(model[-1]) is not nn.Linear:
            raise UnsupportedModelError(f"{rule}: the model must end with an nn.Linear layer (the probe)")
        self.hidden, self.output = linears[:-1], linears[-1]
        if normalize_input is None:  # Journe et al. and Krotov & Hopfield feed unit-norm inputs
            normalize_input = hebbian_rule in ("softhebb", "krotov")
        self.engines = nn.ModuleList()
        for layer in self.hidden:
            w = layer.weight
            engine = HebbianLinear(layer.in_features, layer.out_features, hebbian_rule, lr=lr,
                                   normalize_input=normalize_input, device=w.device, dtype=w.dtype, **knobs)
            engine.weight = w  # the model's own weight learns; the engine's init is dropped
            self.engines.append(engine)

    def _step(self, x, y):
        if not y.is_floating_point():  # before any layer writes .grad
            check_labels(y, x.shape[0], self.output.out_features, self.rule)
        inputs = {}
        hooks = [layer.register_forward_pre_hook(lambda m, a: inputs.__setitem__(id(m), a[0]))
                 for layer in [*self.hidden, self.output]]
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            for h in hooks:
                h.remove()
        for layer, engine in zip(self.hidden, self.engines):
            engine.train()
            engine._hebbian_step(engine._prepare_input(inputs[id(layer)].flatten(1)))
            if layer.bias is not None:
                add_to_grad(layer.bias, torch.zeros_like(layer.bias), owned=True)
        features = inputs[id(self.output)].detach()
        with torch.enable_grad():
            out = F.linear(features, self.output.weight, self.output.bias)
            loss = output_loss(out, y, self.loss, self.rule)
            params = [p for p in self.output.parameters() if p.requires_grad]
            grads = torch.autograd.grad(loss, params) if params else ()
        for p, g in zip(params, grads):
            add_to_grad(p, g, owned=True)
        return StepOutput(loss.detach(), out.detach())

    def state_dict(self):
        return {**super().state_dict(), "theta": [e.theta.clone() for e in self.engines if e.theta is not None]}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        with torch.no_grad():
            for engine, theta in zip([e for e in self.engines if e.theta is not None], state["theta"]):
                engine.theta.copy_(theta)


_RULES = {
    "oja": ("Oja's rule: each unit converges to the top principal component", "Oja 1982, J. Math. Biology 15:267"),
    "sanger": ("Sanger's generalised Hebbian algorithm: the top principal components",
               "Sanger 1989, Neural Networks 2:459"),
    "bcm": ("BCM: Hebbian with a sliding threshold, the running mean of y^2",
            "Bienenstock, Cooper & Munro 1982, J. Neuroscience 2:32"),
    "krotov": ("Krotov-Hopfield: competing units, anti-Hebbian for the rank-th winner",
               "Krotov & Hopfield 2019, PNAS 116:7723"),
    "softhebb": ("SoftHebb: soft winner-take-all Hebbian learning", "Journe, Rodriguez, Guo & Moraitis 2023, ICLR"),
}
for _name, (_summary, _paper) in _RULES.items():
    register_rule(_name, family="hebbian", summary=_summary, paper=_paper, hebbian_rule=_name)(HebbianLearner)
