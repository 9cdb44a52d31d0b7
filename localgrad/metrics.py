"""Alignment diagnostics: how close a rule's updates are to backprop's, and how
close its feedback matrices are to the weights they stand in for (the angles
Lillicrap et al. 2016, Fig. 2, and Nøkland 2016, Fig. 3, plot).
`alignment` reads a model converted by `localgrad.convert`;
`update_alignment` any `localgrad.Learner`."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from localgrad.learner import Learner, rules

from localgrad.feedback_alignment.conversion import unconvert
from localgrad.feedback_alignment.dfa_linear import DFALinear
from localgrad.feedback_alignment.fa_conv2d import FAConv2d
from localgrad.feedback_alignment.fa_linear import FALinear


@dataclass
class LayerAlignment:
    name: str
    rule: str
    update_angle: float  # degrees between the rule's weight update and backprop's gradient
    feedback_angle: float | None  # degrees between the feedback and the weights it stands in for


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle in degrees between two tensors seen as vectors (90 if one is 0)."""
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    if a.norm() == 0 or b.norm() == 0:
        return 90.0
    # Not acos of the cosine: near 0 a cosine rounded by 1e-16 is an angle
    # of 1e-6 degrees, so a vector came out 1.7e-6 degrees from itself.
    # Kahan's form keeps small angles to full precision.
    u, v = a / a.norm(), b / b.norm()
    return math.degrees(2 * math.atan2((u - v).norm().item(), (u + v).norm().item()))


def _weight_grads(model: nn.Module, x, y, loss_fn) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    return {name: m.weight.grad for name, m in model.named_modules() if hasattr(m, "weight") and m.weight is not None and m.weight.grad is not None}


def alignment(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable = F.cross_entropy,
) -> list[LayerAlignment]:
    """Per converted layer, on the batch (x, y): the angle between the rule's
    update and the true gradient, and between its feedback and the weights:
    for FA-family layers B vs W; for a DFA hidden layer B_l vs the product of
    the downstream weights W_L ... W_(l+1), the matrix backprop would send the
    error through in a linear network. Runs on copies: the model, its
    gradients and its rule's state (brSF's counter) are left as they were."""
    rule_model = copy.deepcopy(model)
    rule_grads = _weight_grads(rule_model, x, y, loss_fn)
    true_grads = _weight_grads(unconvert(copy.deepcopy(model)), x, y, loss_fn)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (FALinear, FAConv2d, DFALinear))]
    dfa_weights = [m.weight.detach() for _, m in layers if isinstance(m, DFALinear)]
    results = []
    for name, layer in layers:
        if isinstance(layer, DFALinear):
            rule = layer.dfa_rule.rule if layer.dfa_rule is not None else "dfa"
            index = layer.dfa_index
            if getattr(layer, "feedback", None) is None:
                feedback_angle = None  # the output layer learns from its true gradient
            else:
                downstream = dfa_weights[-1]
                for w in reversed(dfa_weights[index + 1 : -1]):
                    downstream = downstream @ w
                feedback_angle = angle(layer.feedback, downstream)
        else:
            rule = layer.feedback_rule
            feedback_angle = angle(layer.feedback, layer.weight)
        results.append(LayerAlignment(name, rule, angle(rule_grads[name], true_grads[name]), feedback_angle))
    return results


def update_alignment(
    learner: Learner,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable = F.cross_entropy,
) -> list[tuple[str, float, float]]:
    """Per trainable parameter of `learner.model` (a static-input rule's),
    on the batch (x, y): (name, angle in degrees between the `.grad` one
    `learner.step(x, y)` writes and backprop's gradient of
    loss_fn(model(x), y), ||rule|| / ||backprop||). loss_fn is batch-mean
    and should be the loss the rule was built with (the rules' default "ce"
    is F.cross_entropy). A parameter that only one of the two writes counts
    as zero in the other.

    Runs on copies: the model, the learner, their `.grad`, the rule's state
    (generators, counters, traces) and torch's global generator are left as
    they were."""
    if not isinstance(learner, Learner):
        raise TypeError(f"update_alignment: learner must be a localgrad.Learner, got {type(learner).__name__}")
    if learner.rule in rules("sequence"):
        # Its step takes x as (batch, time, features) and reads the loss per
        # step; loss_fn(model(x), y) is no such loss.
        raise NotImplementedError(f"update_alignment: rule {learner.rule!r} takes sequences; backprop's gradient "
                                  "is computed for static-input rules only")
    names = [name for name, p in learner.model.named_parameters() if p.requires_grad]
    devices = list(dict.fromkeys(t.device for t in (x, y) if t.device.type == "cuda"))
    with torch.random.fork_rng(devices=devices):
        # Copied together so that the learner's copy trains the model's copy.
        model, rule = copy.deepcopy((learner.model, learner))
        model.zero_grad(set_to_none=True)
        for p in rule.parameters():
            p.grad = None
        rule.step(x, y)
        rule_grads = dict(model.named_parameters())
        # A converted model sends its error through feedback matrices:
        # backprop's gradient needs the plain layers back.
        plain = unconvert(copy.deepcopy(learner.model))
        plain.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss_fn(plain(x), y).backward()
        true_grads = dict(plain.named_parameters())
    results = []
    for name in names:
        ours, true = rule_grads[name], true_grads[name]
        g = ours.grad if ours.grad is not None else torch.zeros_like(ours)
        t = true.grad if true.grad is not None else torch.zeros_like(true)
        ratio = (g.detach().double().norm() / t.detach().double().norm()).item()  # 0/0: nan
        results.append((name, angle(g, t), ratio))
    return results
