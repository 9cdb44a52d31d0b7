"""EqProp and CHL under the Learner API: a stock MLP (nn.Sequential of
nn.Linear layers with activation modules between them) trained as the
layered energy-based network its Linear layers define (EqPropMLP sharing
those layers)."""

from __future__ import annotations

import torch
from torch import nn

from localgrad.eqprop.mlp import EqPropMLP
from localgrad.learner import Learner, StepOutput, UnsupportedModelError, register_rule

# Activation modules EqProp's energy can use as its own non-linearity.
_OWN = {nn.Hardsigmoid: "hardsigmoid", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
# Elementwise modules a stock MLP may have between its Linear layers; the
# energy's non-linearity replaces them (EqProp's dynamics define the network).
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Identity, nn.ReLU6, nn.Hardtanh,
                *_OWN)


def mlp_layers(model: nn.Module, rule: str) -> tuple[list[nn.Linear], list[nn.Module]]:
    """The Linear layers of a stock MLP and the activation modules between
    them; anything else raises UnsupportedModelError naming it."""
    if not isinstance(model, nn.Sequential):
        raise UnsupportedModelError(f"{rule}: the model must be an nn.Sequential of Linear layers and activations "
                                    f"(the energy-based network it defines), got {type(model).__name__}")
    linears, activations = [], []
    for i, m in enumerate(model):
        if isinstance(m, nn.Flatten) and not linears:
            continue
        if type(m) is nn.Linear:
            if m.bias is None:
                raise UnsupportedModelError(f"{rule}: model[{i}] is a Linear without bias; EqProp's energy has one")
            linears.append(m)
        elif isinstance(m, _ELEMENTWISE) and linears:
            activations.append(m)
        else:
            raise UnsupportedModelError(f"{rule}: model[{i}] ({type(m).__name__}) is not a Linear layer or an "
                                        "elementwise activation between two; EqProp takes a stock MLP")
    if not linears or not isinstance(model[-1], nn.Linear):
        raise UnsupportedModelError(f"{rule}: the model must end with an nn.Linear layer (the output units)")
    return linears, activations


class EqPropLearner(Learner):
    """eqprop (centred nudging), eqprop-positive, eqprop-negative and chl.

    The free phase relaxes the layered network whose couplings are the
    model's Linear layers (s_0 = x clamped, s_{k} <- sigma(dPhi/ds_k)); the
    nudged (or clamped) phases follow from its fixed point, and the update
    is the contrast of the phases (localgrad.reference.eqprop). `predict(x)`
    is the free phase's output units, not the model's feed-forward pass.
    activation: the energy's non-linearity; default the model's own when it
    is Hardsigmoid, Sigmoid or Tanh throughout, else hardsigmoid
    (Scellier & Bengio's choice). Other options: EqPropMLP's beta, t_free,
    t_nudge (default 30 and 10, plus 10 per hidden layer beyond one: a
    signal crosses one layer per step), update, loss ("mse" default, or
    "ce"), tol."""

    def __init__(self, model: nn.Module, *, rule: str, seed: int = 0, process_group=None, mode: str = "eqprop",
                 nudging: str = "centered", activation: str | None = None, t_free: int | None = None,
                 t_nudge: int | None = None, beta: float = 0.5, update: str = "sync", loss: str = "mse",
                 tol: float = 0.0):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        linears, activations = mlp_layers(model, rule)
        if activation is None:
            kinds = {_OWN.get(type(a)) for a in activations}
            activation = kinds.pop() if len(kinds) == 1 and None not in kinds else "hardsigmoid"
        sizes = [linears[0].in_features] + [m.out_features for m in linears]
        extra = 10 * max(len(sizes) - 3, 0)
        self.network = EqPropMLP(sizes, activation=activation, beta=beta, nudging=nudging,
                                 t_free=30 + extra if t_free is None else t_free,
                                 t_nudge=10 + extra if t_nudge is None else t_nudge, update=update, loss=loss,
                                 mode=mode, tol=tol)
        self.network.layers = nn.ModuleList(linears)  # the model's own parameters
        self.network.train(model.training)

    def _step(self, x, y):
        loss, _ = self.network.eqprop_step(x, y)
        return StepOutput(loss, self.network.last_output)

    def default_optimizer(self, lr=None):
        """SGD with momentum 0.9, the rate halving from each layer to the next
        towards the output (0.1 at the first unless given): Laborieux et al.
        2021's per-layer rates, which the demo's rows use."""
        lr = 0.1 if lr is None else lr
        groups = [{"params": list(layer.parameters()), "lr": lr / 2**i} for i, layer in enumerate(self.network.layers)]
        return torch.optim.SGD(groups, momentum=0.9)

    @torch.no_grad()
    def predict(self, x):
        return self.network(x)


_PAPER = "Scellier & Bengio 2017, Frontiers in Computational Neuroscience 11:24"
register_rule("eqprop", family="eqprop", summary="equilibrium propagation, centred (symmetric) nudging",
              paper=f"{_PAPER}; centred: Laborieux et al. 2021", nudging="centered")(EqPropLearner)
register_rule("eqprop-positive", family="eqprop", summary="equilibrium propagation, free and +beta phases",
              paper=_PAPER, nudging="positive")(EqPropLearner)
register_rule("eqprop-negative", family="eqprop", summary="equilibrium propagation, -beta and free phases",
              paper=_PAPER, nudging="negative")(EqPropLearner)
register_rule("chl", family="eqprop", summary="contrastive Hebbian learning: free and clamped phases",
              paper="Movellan 1991, Connectionist Models; Xie & Seung 2003", mode="chl")(EqPropLearner)
