"""One way in for every rule: the registry and the `Learner` base class.

    learner = localgrad.learner(model, "dfa")        # any name of localgrad.rules()
    opt = torch.optim.Adam([*model.parameters(), *learner.parameters()])
    for x, y in batches:
        opt.zero_grad()
        learner.step(x, y)
        opt.step()

The `.grad` contract: `step(x, y)` adds to the `.grad` of every trainable
parameter of the model, and of the learner's own parameters (feedback maps,
synthetic-gradient modules), minus the rule's update for that minibatch,
batch-mean and unscaled (no learning rate in it): any `torch.optim` optimizer
then descends it, and backprop's gradient is the special case. It adds
(gradient accumulation works as with `loss.backward()`), never touches a
parameter with `requires_grad=False`, and, under `process_group` (or the
default process group when one is initialised), replaces the `.grad` it wrote
by its mean over the ranks, as DistributedDataParallel would; inside
`learner.no_sync()` that mean waits for the first step outside. The update is
unscaled, so a learner is not used with `torch.amp.GradScaler`.

Families register their rules where they define their learners
(`@register_rule(...)` in `localgrad/<family>/learners.py`); `rules()` loads
them on first use.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from localgrad import distributed

INPUTS = ("static", "sequence")
# The subpackages whose `learners` module registers rules, in the order rules() lists them.
_REGISTERING_FAMILIES = ("feedback_alignment", "eqprop", "predictive_coding", "target_prop", "synthetic_gradients",
                         "hebbian", "online", "forward_forward", "forward_gradient", "pepita")


class UnsupportedModelError(ValueError, TypeError):
    """A rule cannot train this model (or a part of it); the message names
    the module and the reason. Raised when the learner is built. A
    ValueError (and, for the checks that raised TypeError for a model of the
    wrong class before there was this error, a TypeError too)."""


class StepOutput(NamedTuple):
    """What `Learner.step` returns: the batch-mean loss (a 0-d tensor, no
    graph) and the model's output on x as the rule computed it (None where
    the rule does not compute one)."""

    loss: torch.Tensor
    output: torch.Tensor | None


@dataclass(frozen=True)
class RuleInfo:
    name: str
    family: str
    inputs: str  # "static": x is (batch, ...); "sequence": x is (batch, time, features)
    summary: str
    paper: str
    factory: Callable = field(repr=False)
    defaults: dict = field(default_factory=dict, repr=False)  # options the name fixes
    baseline: bool = False  # the exact gradient (backprop, BPTT) the other rules of its models are compared with


_RULES: dict[str, RuleInfo] = {}
_loaded = False


def register_rule(name: str, *, family: str, summary: str, paper: str, inputs: str = "static",
                  baseline: bool = False, **defaults):
    """Class decorator: `localgrad.learner(model, name, **options)` builds
    `cls(model, rule=name, seed=..., process_group=..., **defaults, **options)`.
    One class may carry several names (each with its own `defaults`).
    baseline: the rule is the exact gradient of the models it takes
    (backprop, BPTT), which benchmarks and tables compare the others with."""
    if inputs not in INPUTS:
        raise ValueError(f"register_rule: inputs must be one of {INPUTS}, got {inputs!r}")

    def decorate(cls):
        if name in _RULES and _RULES[name].factory is not cls:
            raise ValueError(f"register_rule: rule {name!r} is registered twice")
        _RULES[name] = RuleInfo(name, family, inputs, summary, paper, cls, dict(defaults), baseline)
        return cls

    return decorate


def _load() -> None:
    global _loaded
    if not _loaded:
        for family in _REGISTERING_FAMILIES:
            importlib.import_module(f"localgrad.{family}.learners")
        _loaded = True


def rules(inputs: str | None = None, family: str | None = None) -> list[str]:
    """Every registered rule name (optionally only those taking `inputs`
    "static" or "sequence", or of one `family`), in registration order."""
    _load()
    return [n for n, i in _RULES.items() if (inputs is None or i.inputs == inputs)
            and (family is None or i.family == family)]


def rule_info(name: str) -> RuleInfo:
    """The registry entry of `name`: family, inputs, summary, paper."""
    _load()
    if name not in _RULES:
        raise ValueError(f"localgrad: unknown rule {name!r}; localgrad.rules() lists {', '.join(_RULES)}")
    return _RULES[name]


def learner(model: nn.Module, rule: str, *, seed: int = 0, process_group=None, **options) -> "Learner":
    """The learner that trains `model` by `rule` (a name of `rules()`).
    seed: the rule's own random draws (feedback matrices, noise); they never
    touch torch's global generator. process_group: the ranks whose `.grad`
    each step averages (default: the default group, when initialised).
    options: the rule's (see its learner class, `rule_info(rule).factory`);
    `example_input`, one batch of inputs for the rules that size feedback
    from a layer's output map (DFA and BA on conv layers), is dropped for
    the others."""
    info = rule_info(rule)
    if not isinstance(model, nn.Module):
        raise TypeError(f"localgrad.learner: model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        # DDP would average what autograd writes, not what the rule writes; the learner averages itself.
        raise UnsupportedModelError(f"{rule}: pass the model itself (model.module), not its DistributedDataParallel "
                                    "wrapper: the learner averages .grad over process_group itself")
    if "example_input" in options and "example_input" not in inspect.signature(info.factory).parameters:
        # A sizing hint, not a setting: rules that size nothing from activations have no use for it.
        options.pop("example_input")
    return info.factory(model, rule=rule, seed=seed, process_group=process_group, **{**info.defaults, **options})


@torch.no_grad()
def add_to_grad(param: torch.Tensor, update: torch.Tensor, *, owned: bool = False) -> bool:
    """The one way a rule writes `.grad`: adds `update` (minus the rule's
    update, batch-mean, unscaled) into `param.grad`, allocating it on the
    first write. A parameter with requires_grad=False is left alone (the
    optimizer must not move a frozen parameter). owned=True: `update` is a
    fresh tensor nobody else holds, which may become `.grad` itself (else it
    is copied: the next step adds into `.grad` in place). Returns whether it
    wrote."""
    if not param.requires_grad:
        return False
    update = update.detach().reshape(param.shape)
    if param.grad is None:
        fresh = owned and update.dtype == param.dtype and update.device == param.device
        param.grad = update if fresh else update.to(device=param.device, dtype=param.dtype, copy=True)
    else:
        param.grad.add_(update)
    return True


class Learner:
    """Base of every registered rule's learner (see the module docstring).

    Subclasses implement `_step(x, y) -> StepOutput` (x, y already checked
    as tensors with the same batch size; batch > 0) and override
    `parameters`, `predict`, `state_dict` / `load_state_dict` where the rule
    has its own. `step` handles the empty batch (zeros into `.grad`, loss 0)
    and the averaging over the ranks.
    """

    rule: str = ""

    def __init__(self, model: nn.Module, *, rule: str, seed: int = 0, process_group=None):
        from localgrad._checks import as_int

        self.model = model
        self.rule = rule
        self.seed = as_int(seed, rule, "seed")
        self.process_group = process_group
        self.training = True
        self._sync = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rule={self.rule!r}, model={type(self.model).__name__})"

    # -- the loop's verbs ------------------------------------------------------

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """One minibatch: adds minus the rule's update into `.grad` (see the
        module docstring) and returns StepOutput(loss, output)."""
        self._check_batch(x, y)
        # FSDP2 may have sharded the model after construction: say so here, naming the rule.
        distributed.check_not_fully_sharded(self.model, self.rule)
        distributed.check_replicated(self._trainable(), self.rule)
        if x.shape[0] == 0:
            for p in self._trainable():
                add_to_grad(p, torch.zeros_like(p))
            out = StepOutput(self._reference_tensor().new_zeros(()), None)
        else:
            # The family's own averaging waits: this step averages once, below.
            with distributed.gradient_averaging(False):
                out = self._step(x, y)
        self._average()
        return out

    def parameters(self) -> list[nn.Parameter]:
        """The learner's own trainable parameters (feedback maps, synthetic-
        gradient modules): give them to the optimizer with the model's."""
        return []

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The rule's own inference on x (here: the model's forward pass)."""
        return self.model(x)

    def default_optimizer(self, lr: float | None = None) -> torch.optim.Optimizer:
        """The optimizer the rule is published (and demonstrated) with, over
        the model's parameters and the learner's: here Adam, lr 1e-3 unless
        given. Nothing obliges you to use it."""
        return torch.optim.Adam([*self.model.parameters(), *self.parameters()], lr=1e-3 if lr is None else lr)

    def state_dict(self) -> dict[str, Any]:
        """The rule's state (feedback, RNG, traces, thresholds), not the
        model's: save both, and a learner built with another seed continues
        bit-exactly after load_state_dict."""
        state = {"rule": self.rule}
        inner = getattr(self, "inner", None)
        if hasattr(inner, "state_dict"):
            state["inner"] = inner.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rule") != self.rule:
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state is of rule {state.get('rule')!r}, "
                             f"this learner's is {self.rule!r}")
        inner = getattr(self, "inner", None)
        if hasattr(inner, "load_state_dict"):
            inner.load_state_dict(state["inner"])

    def train(self, mode: bool = True) -> "Learner":
        self.training = bool(mode)
        self.model.train(mode)
        return self

    def eval(self) -> "Learner":
        return self.train(False)

    @contextlib.contextmanager
    def no_sync(self):
        """Steps inside accumulate `.grad` on this rank only; the first step
        after it averages the sum (gradient accumulation under data
        parallelism, as DistributedDataParallel.no_sync)."""
        previous, self._sync = self._sync, False
        try:
            with distributed.gradient_averaging(False):
                yield
        finally:
            self._sync = previous

    # -- for subclasses --------------------------------------------------------

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """Here: the adopted engine's own step(x, y), which returns the loss."""
        return StepOutput(self.inner.step(x, y), None)

    def _adopt(self, inner):
        """Makes `inner` (a family's own learner object) this learner's
        engine: it shares the process group, and what it lists in
        `replicated` (feedback, generators, modules: what
        localgrad.distributed.broadcast_state gives every rank from rank 0)
        becomes this learner's too."""
        self.inner = inner
        inner.process_group = self.process_group
        self.replicated = tuple(getattr(inner, "replicated", ()))
        for name in self.replicated:
            setattr(self, name, getattr(inner, name))
        return inner

    def _trainable(self) -> list[torch.Tensor]:
        own = self.parameters()
        ids = {id(p) for p in own}
        return [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids] + \
            [p for p in own if p.requires_grad]

    def _reference_tensor(self) -> torch.Tensor:
        for p in self.model.parameters():
            return p
        return torch.zeros(())

    def _average(self) -> None:
        if self._sync:
            distributed.average_gradients([p for p in self._trainable() if p.grad is not None],
                                          group=self.process_group)

    def _check_batch(self, x, y) -> None:
        name = f"{type(self).__name__}.step"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: x must be a tensor, got {type(x).__name__}")
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{name}: y must be a tensor, got {type(y).__name__}")
        if x.dim() == 0:
            raise ValueError(f"{name}: x must have a batch dimension, got a 0-d tensor")
        if y.dim() == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: y must have x's batch size {x.shape[0]} first, got shape {tuple(y.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name}: x must be floating point, got {x.dtype}")
        ref = self._reference_tensor()
        if x.device != ref.device or y.device != ref.device:
            raise ValueError(f"{name}: x and y must be on the model's device {ref.device}, got x on {x.device} "
                             f"and y on {y.device}")
        if x.dtype != ref.dtype:
            raise TypeError(f"{name}: x must have the model's dtype {ref.dtype}, got {x.dtype}")
        if y.is_floating_point() and y.dtype != ref.dtype:
            raise TypeError(f"{name}: float targets y must have the model's dtype {ref.dtype}, got {y.dtype}")
