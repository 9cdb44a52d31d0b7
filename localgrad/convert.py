"""Turning a stock PyTorch model into one trained by a local learning rule."""

from __future__ import annotations

from torch import nn

from localgrad import activations as act
from localgrad.nn.dfa_linear import DFALinear
from localgrad.rules.dfa import DirectFeedbackAlignment

RULES = ("backprop", "dfa")


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def convert(model: nn.Module, rule: str = "dfa", *, seed: int = 0, feedback_scale: float = 1.0) -> nn.Module:
    """Converts `model` in place to train with `rule` and returns it.

    rule="dfa" (Nøkland 2016): the model's nn.Linear layers, in registration
    order, are its layers in forward order; the last is the output layer and
    keeps its true gradient, every other one becomes a hidden DFALinear with a
    fixed random `feedback` buffer (n_outputs, out_features) drawn from a
    generator seeded with `seed` (see DirectFeedbackAlignment for the scale).
    Between hidden layers, activations must be modules (nn.ReLU, nn.LeakyReLU,
    nn.Tanh, nn.Sigmoid, nn.Identity): the error enters after them. The
    training loop stays `loss.backward(); optimizer.step()`. Parameters are
    kept, so optimizers built before conversion keep working.

    rule="backprop" leaves the model as it is (the baseline).
    """
    if rule not in RULES:
        raise ValueError(f"convert: unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if any(isinstance(m, DFALinear) for m in model.modules()):
        raise ValueError("convert: model is already converted; call localgrad.unconvert(model) first")
    if rule == "backprop":
        return model
    if isinstance(model, nn.Linear):
        raise ValueError("convert: pass the model that contains the Linear layers, not a layer itself")

    linears = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    if not linears:
        raise ValueError("convert(rule='dfa'): the model has no nn.Linear layer to train")
    layers = []
    for name, linear in linears:
        layer = DFALinear.from_linear(linear)
        _replace(model, name, layer)
        layers.append(layer)
    rule_obj = DirectFeedbackAlignment(layers[:-1], layers[-1], seed=seed, feedback_scale=feedback_scale)
    for module in model.modules():
        if act.from_module(module) is not None:
            rule_obj._hooks.append(module.register_forward_hook(rule_obj.observe_activation))
    return model


def unconvert(model: nn.Module) -> nn.Module:
    """Returns `model` (in place) with plain nn.Linear layers sharing the
    converted layers' parameters; feedback matrices are dropped."""
    for name, module in list(model.named_modules()):
        if isinstance(module, DFALinear):
            if module.dfa_rule is not None:
                module.dfa_rule.remove_hooks()
            _replace(model, name, module.to_linear())
    return model
