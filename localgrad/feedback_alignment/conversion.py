"""Turning a stock PyTorch model into one trained by a local learning rule."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from localgrad import activations as act
from localgrad._checks import as_bool, as_float, as_int
from localgrad.feedback_alignment.dfa_conv2d import DFAConv2d
from localgrad.feedback_alignment.dfa_linear import DFALinear
from localgrad.feedback_alignment.fa_conv2d import FAConv2d, unsupported_reason
from localgrad.feedback_alignment.fa_linear import FALinear
from localgrad.feedback_alignment.feedback import FEEDBACK_RULES
from localgrad.feedback_alignment.dfa import DirectFeedbackAlignment

CONVERT_RULES = ("backprop", *FEEDBACK_RULES, "dfa", "ba")
_CONVERTED = (DFALinear, DFAConv2d, FALinear, FAConv2d)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _names_of(model: nn.Module) -> dict[int, list[str]]:
    """Every name under which each module is reachable (a module shared by
    several parents, e.g. weight tying by module reuse, has several)."""
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), []).append(name)
    return names


def layer_seed(seed: int, index: int) -> int:
    """Each layer's own seed: distinct per layer, fixed by the model's seed."""
    return seed * 65_537 + index


def convert(
    model: nn.Module,
    rule: str = "dfa",
    *,
    seed: int = 0,
    feedback_scale: float | None = None,
    example_input: torch.Tensor | None = None,
    inject: str = "activation",
    derivative: bool = True,
) -> nn.Module:
    """Converts `model` in place to train with `rule` and returns it. The
    training loop stays `loss.backward(); optimizer.step()`; parameters are
    kept, so optimizers built before conversion keep working.

    rule="backprop": the model is left as it is (the baseline).

    rule="fa", "usf", "brsf", "frsf" (the feedback-alignment family): every
    nn.Linear and nn.Conv2d backpropagates through a matrix B (its buffer
    `feedback`, the weight's shape) instead of its weight: fixed random (fa,
    Lillicrap 2016), s*sign(W) (usf), |R|*sign(W) with R redrawn every update
    (brsf) or fixed (frsf) (Liao, Leibo & Poggio 2016). Other modules with
    parameters keep plain backprop, with a warning naming them.
    feedback_scale: the bound s of U(-s, s) for B and R (uSF: B = s*sign(W));
    default: the weight's own init scale, 1/sqrt(fan_in) (uSF: divided by
    sqrt(3), matching that init's standard deviation).

    rule="dfa" (Nøkland 2016): the nn.Linear and nn.Conv2d layers, in
    registration order, are the model's layers in forward order; the last
    (an nn.Linear) is the output layer and keeps its true gradient, every
    other one becomes a hidden DFALinear / DFAConv2d with a fixed random
    `feedback` (n_outputs, width) ~ U(-s, s), default s = 1/sqrt(width),
    where width is out_features, or C*H*W of a conv layer's output map (sized
    by one forward of `example_input`, required when there are conv layers).
    inject="activation" (default): the error enters after an activation
    module (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity) applied
    directly to the layer's output, so f' enters as in the paper (a layer
    without one is named in a warning and takes the error at its output);
    inject="output": at the layer's output. Autograd never sweeps back through
    the layers; modules between them (BatchNorm, ...) get no gradient, with a
    warning naming them.

    rule="ba" (broadcast alignment, Samadi, Lillicrap & Tweed 2017, Neural
    Computation 29:578): the output error e is broadcast to every hidden
    layer through a fixed random matrix B_l, the hidden cell's teaching signal
    is (e B_l) * f'(a_l) when derivative=True (the paper's "intracellular
    teaching signal that reflects the cell's nonlinearity", its better
    variant) or e B_l itself when derivative=False (the plain broadcast it is
    compared with). How it differs from DFA: the two were proposed
    concurrently and, for rate units, derivative=True computes exactly DFA's
    update (same kernel, same feedback draw for the same seed). The paper's
    own setting is dynamic spiking neurons whose input-output relation is
    approximated by a piecewise-smooth rate function, and its question is
    whether the derivative term is needed; derivative=False is DFA with
    inject="output". Options and layers as for "dfa"; `inject` is set by
    `derivative`.

    Random matrices are drawn from generators seeded with `seed`.
    """
    if rule not in CONVERT_RULES:
        raise ValueError(f"convert: unknown rule {rule!r}; choose one of {', '.join(CONVERT_RULES)}")
    seed = as_int(seed, "convert", "seed")
    if feedback_scale is not None:
        # B = 0 (or a NaN/inf B) sends no usable error; a negative bound is a sign flip of U(-s, s).
        feedback_scale = as_float(feedback_scale, "convert", "feedback_scale", positive=True)
    if inject not in ("activation", "output"):
        raise ValueError(f"convert: inject must be 'activation' or 'output', got {inject!r}")
    derivative = as_bool(derivative, "convert", "derivative")
    if example_input is not None and not isinstance(example_input, torch.Tensor):
        raise TypeError(f"convert: example_input must be a tensor, got {type(example_input).__name__}")
    if any(isinstance(m, _CONVERTED) for m in model.modules()):
        raise ValueError("convert: model is already converted; call localgrad.unconvert(model) first")
    if rule == "backprop":
        return model
    if isinstance(model, (nn.Linear, nn.Conv2d)):
        raise ValueError("convert: pass the model that contains the layers, not a layer itself")
    if rule in FEEDBACK_RULES:
        return _convert_feedback(model, rule, seed, feedback_scale)
    if rule == "ba":
        inject = "activation" if derivative else "output"
    return _convert_dfa(model, rule, seed, feedback_scale, example_input, inject)


def _convert_feedback(model: nn.Module, rule: str, seed: int, scale: float | None) -> nn.Module:
    left_alone = []
    index = 0
    all_names = _names_of(model)
    for name, module in list(model.named_modules()):
        new = None
        if type(module) is nn.Linear:
            new = FALinear.from_linear(module, rule, layer_seed(seed, index), scale)
        elif type(module) is nn.Conv2d:
            reason = unsupported_reason(module)
            if reason is None:
                new = FAConv2d.from_conv(module, rule, layer_seed(seed, index), scale)
            else:
                left_alone.append(f"{name} (Conv2d, {reason})")
        elif any(True for _ in module.parameters(recurse=False)):
            left_alone.append(f"{name or type(module).__name__} ({type(module).__name__})")
        if new is not None:
            # A shared module stays shared: the same converted layer at every name.
            for other in all_names[id(module)]:
                _replace(model, other, new)
            index += 1
    if index == 0:
        raise ValueError(f"convert(rule={rule!r}): the model has no nn.Linear or nn.Conv2d layer to convert")
    if left_alone:
        warnings.warn(
            f"convert(rule={rule!r}): these modules keep plain backprop: {', '.join(left_alone)}",
            UserWarning,
            stacklevel=3,
        )
    return model


def _conv_output_maps(model: nn.Module, convs: list[nn.Conv2d], example_input, rule: str) -> dict[int, tuple]:
    """Output map shape (C, H, W) of each conv, from one eval-mode forward."""
    shapes, handles = {}, []
    for conv in convs:
        handles.append(conv.register_forward_hook(lambda m, i, o: shapes.__setitem__(id(m), tuple(o.shape[1:]))))
    was_training = [m.training for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for m, training in zip(model.modules(), was_training):
            m.training = training
    missing = [c for c in convs if id(c) not in shapes]
    if missing:
        raise ValueError(f"convert(rule={rule!r}): some Conv2d layers did not run on example_input")
    return shapes


def _convert_dfa(model: nn.Module, rule: str, seed: int, scale: float | None, example_input, inject: str) -> nn.Module:
    layers, left_alone = [], []
    all_names = _names_of(model)
    for module_names in all_names.values():
        module = model.get_submodule(module_names[0])
        if len(module_names) > 1 and type(module) in (nn.Linear, nn.Conv2d):
            # DFA needs each layer to run once per forward, at one position.
            raise ValueError(
                f"convert(rule={rule!r}): one {type(module).__name__} is used at several positions "
                f"({', '.join(repr(n) for n in module_names)}); DFA gives each layer its own feedback "
                "matrix and needs it to run once per forward. Use separate layers (or rule='fa' and "
                "its relatives, which convert a shared layer once for all its positions)"
            )
    for name, module in model.named_modules():
        if type(module) is nn.Linear:
            layers.append((name, module))
        elif type(module) is nn.Conv2d:
            reason = unsupported_reason(module)
            if reason is None:
                layers.append((name, module))
            else:
                left_alone.append(f"{name} (Conv2d, {reason})")
        elif any(True for _ in module.parameters(recurse=False)):
            left_alone.append(f"{name or type(module).__name__} ({type(module).__name__})")
    if not layers:
        raise ValueError(f"convert(rule={rule!r}): the model has no nn.Linear or nn.Conv2d layer to train")
    if type(layers[-1][1]) is not nn.Linear:
        raise ValueError(
            f"convert(rule={rule!r}): the output layer (the last registered layer, {layers[-1][0]!r}) "
            "must be an nn.Linear"
        )
    convs = [m for _, m in layers if type(m) is nn.Conv2d]
    maps = {}
    if convs:
        if example_input is None:
            raise ValueError(
                f"convert(rule={rule!r}): the model has Conv2d layers; pass example_input= (one batch of "
                "inputs) so each conv layer's feedback can be sized to its output map"
            )
        maps = _conv_output_maps(model, convs, example_input, rule)
    converted = []
    for name, module in layers:
        if type(module) is nn.Conv2d:
            layer = DFAConv2d.from_conv(module)
            layer.output_map = maps[id(module)]
        else:
            layer = DFALinear.from_linear(module)
        _replace(model, name, layer)
        converted.append(layer)
    rule_obj = DirectFeedbackAlignment(
        converted[:-1], converted[-1], [n for n, _ in layers], seed=seed, feedback_scale=scale, inject=inject,
        rule=rule,
    )
    for module in model.modules():
        if act.from_module(module) is not None:
            rule_obj._hooks.append(module.register_forward_hook(rule_obj.observe_activation))
    # The model's own forward brackets one tape, so a layer that runs twice in it is caught.
    rule_obj._hooks.append(model.register_forward_pre_hook(rule_obj.begin_model_forward))
    rule_obj._hooks.append(model.register_forward_hook(rule_obj.end_model_forward, always_call=True))
    if left_alone:
        warnings.warn(
            f"convert(rule={rule!r}): the broadcast delivers the error to Linear and Conv2d layers only; these "
            f"modules get no gradient: {', '.join(left_alone)}",
            UserWarning,
            stacklevel=3,
        )
    return model


def unconvert(model: nn.Module) -> nn.Module:
    """Returns `model` (in place) with plain nn.Linear / nn.Conv2d layers
    sharing the converted layers' parameters; feedback matrices are dropped."""
    for name, module in list(model.named_modules()):
        if isinstance(module, (DFALinear, DFAConv2d)) and module.dfa_rule is not None:
            module.dfa_rule.remove_hooks()
        if isinstance(module, _CONVERTED):
            _replace(model, name, module.to_plain())
    return model
