"""Every rule as a data-parallel case, shared by the two-rank workers
(tests/distributed_worker.py) and the single-process reference in
tests/test_distributed.py.

A case builds a trainer (a model, and its learner for the rules that write
.grad themselves) from a seed, makes union batches, and runs one training
step on a batch (or on one rank's shard of it). The union batch of a step is
the same on every rank; rank r trains on samples r*B .. r*B + B - 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from learner_models import N_OUT, REFUSE_MLP, batch_for, model_for

import localgrad
from localgrad.online import ALIF

UNION = 8  # samples (or sequences) per union batch: 4 per rank on 2 ranks
STEPS = 20


@dataclass
class Trainer:
    model: nn.Module  # what the optimizer trains (the unwrapped module)
    learner: object | None = None  # the Learner; None: autograd (the convert tier)
    net: nn.Module | None = None  # what the step calls: the model or its DDP wrapper


@dataclass
class Case:
    tier: str  # "convert": autograd delivers the gradients (DDP/FSDP2 average them); "learner": its Learner does
    build: Callable[[int, torch.dtype], Trainer]
    batch: Callable[[int, torch.dtype], tuple]  # (step, dtype) -> union batch (x, y)
    shard: Callable[[tuple, int, int], tuple]  # (batch, rank, world) -> this rank's part
    step: Callable[[Trainer, tuple], None]  # one step's gradients into .grad
    dtype: torch.dtype = torch.float64
    rule: str = ""


# --- models trained through autograd (localgrad.convert) ---------------------


def _mlp(seed, dtype):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 9), nn.ReLU(), nn.Linear(9, 7), nn.Sigmoid(), nn.Linear(7, 4)
    ).to(dtype)


def _cnn(seed, dtype):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 6), nn.Tanh(), nn.Linear(6, 4)
    ).to(dtype)


def _convert_builder(rule, make, example_shape, **options):
    def build(seed, dtype):
        model = make(seed, dtype)
        example = torch.zeros(example_shape, dtype=dtype)
        # Each rank's own feedback seed: the replicas agree only after DDP's or
        # broadcast_state's broadcast from rank 0.
        return Trainer(localgrad.convert(model, rule=rule, seed=seed, example_input=example, **options))

    return build


def _classes(shape):
    def batch(step, dtype):
        g = torch.Generator().manual_seed(1000 + step)
        return torch.randn(UNION, *shape, generator=g, dtype=dtype), torch.randint(0, 4, (UNION,), generator=g)

    return batch


def _rows(batch, rank, world):
    n = batch[0].shape[0] // world
    return tuple(t[rank * n:(rank + 1) * n] for t in batch)


def _autograd_step(trainer, batch):
    x, y = batch
    F.cross_entropy(trainer.net(x), y).backward()


def _convert_case(rule, dtype=torch.float64, conv=False, **options):
    make, shape = (_cnn, (1, 5, 5)) if conv else (_mlp, (12,))
    return Case("convert", _convert_builder(rule, make, (2, *shape), **options), _classes(shape), _rows,
                _autograd_step, dtype, rule)


# --- every other case: a registered rule through localgrad.learner ---------------


def _cnn_input(batch, step, dtype):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(batch, 1, 5, 5, generator=g, dtype=dtype), torch.randint(0, N_OUT, (batch,), generator=g)


def _tp_conv(seed, dtype):
    # A strided-conv net on the 12 features seen as a 3x4 image (target
    # propagation's ConvTranspose2d feedback); tanh: no dead units whose
    # feedback bias gradient would be rounding noise.
    torch.manual_seed(seed)
    return nn.Sequential(nn.Unflatten(1, (1, 3, 4)), nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.Tanh(),
                         nn.Flatten(), nn.Linear(12, N_OUT)).to(dtype)


def _alif(seed, dtype):
    torch.manual_seed(seed)
    return ALIF(3, 6, N_OUT, tau_m=5.0, weight_scale=2.0, dtype=dtype)


@dataclass
class Variant:
    """A registered rule with options, a dtype or a model other than its
    default one (tests/learner_models.py)."""
    rule: str
    options: dict = field(default_factory=dict)
    dtype: torch.dtype = torch.float64
    model: Callable[[int, torch.dtype], nn.Module] | None = None
    data: Callable[[int, int, torch.dtype], tuple] | None = None  # (batch, step, dtype) -> (x, y)


# Paths of the rules that their registry defaults do not take: other
# dtypes, conv models, per-step targets, options that pick another fused op.
VARIANTS = {
    "eqprop-float32": Variant("eqprop", dtype=torch.float32),
    "rtrl-float32": Variant("rtrl", dtype=torch.float32),
    "rtrl-every-step-mse": Variant("rtrl", {"loss": "mse", "targets": "every"}),
    "eprop-random-feedback": Variant("eprop", {"feedback": "random"}),
    "kfrtrl-rank2": Variant("kfrtrl", {"rank": 2}),
    "eprop-spiking-alif-random": Variant("eprop-spiking", {"feedback": "random"}, model=_alif),
    "oja-float32": Variant("oja", dtype=torch.float32),
    "pc-float32": Variant("pc", {"steps": 6}, dtype=torch.float32),
    "pc-conv": Variant("pc", {"steps": 4}, model=_cnn, data=_cnn_input),
    "dni-float32": Variant("dni", dtype=torch.float32),
    "cdni-mse-lam": Variant("cdni", {"lam": 0.5, "sg_hidden": (5,), "loss": "mse"}),
    "dtp-papers-feedback": Variant("dtp", {"feedback": "nonlinear"}),
    # Noise samples stacked through the fused feedback-gradient op.
    "ldrl-samples": Variant("ldrl", {"beta": 0.3, "samples": 3}),
    "ddtp-mse": Variant("ddtp", {"lam": 0.1, "loss": "mse"}),
    # The conv path in the papers' form (the gated form's feedback bias has
    # no gradient at all: a relative error of rounding noise).
    "ldrl-conv": Variant("ldrl", {"beta": 0.3, "samples": 2, "feedback": "nonlinear"}, model=_tp_conv),
    "dtp-conv": Variant("dtp", {"feedback": "nonlinear"}, model=_tp_conv),
}


CASES: dict[str, Case] = {
    # The keep-your-own-loop tier (localgrad.convert): autograd under DDP and FSDP2.
    "backprop": _convert_case("backprop"),
    "fa": _convert_case("fa"),
    "usf": _convert_case("usf"),
    "brsf": _convert_case("brsf"),
    "frsf": _convert_case("frsf"),
    "dfa": _convert_case("dfa"),
    "dfa-float32": _convert_case("dfa", torch.float32),
    "dfa-inject-output": _convert_case("dfa", inject="output"),
    "dfa-conv": _convert_case("dfa", conv=True),
    "fa-conv": _convert_case("fa", conv=True),
    "ba": _convert_case("ba"),
    "ba-no-derivative": _convert_case("ba", derivative=False),
}


def feedback_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    """What must be identical on every replica besides the parameters:
    the model's buffers and the learner's replicated tensors and RNG state."""
    state = {f"buffer:{n}": b.detach().clone() for n, b in trainer.model.named_buffers()}
    learner = trainer.learner
    for name in getattr(learner, "replicated", ()):
        value = getattr(learner, name)
        if isinstance(value, torch.Tensor):
            state[f"learner:{name}"] = value.clone()
        elif isinstance(value, torch.Generator):
            state[f"learner:{name}"] = value.get_state()
    return state


# --- every registered rule through its Learner (batch first, sequences too) ---


class _WithOwn(nn.Module):
    """A model and its learner's own parameters in one module."""

    def __init__(self, model, own):
        super().__init__()
        self.model, self.own = model, nn.ParameterList(own)


def _learner_case(variant: Variant) -> Case:
    rule = variant.rule

    def build(seed, dtype):
        model = (variant.model or (lambda s, d: model_for(rule, s, d)))(seed, dtype)
        # Each rank's own seed: the replicas agree only after broadcast_state.
        learner = localgrad.learner(model, rule, seed=seed, **variant.options)
        # The learner's own parameters drawn at random (synthetic-gradient
        # modules start with a zero output layer, which would send nothing
        # below at the first step), and differently on each rank until the broadcast.
        g = torch.Generator().manual_seed(700 + seed)
        with torch.no_grad():
            for p in learner.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
        # The optimizer trains, and the test compares, the model's and the learner's parameters.
        return Trainer(_WithOwn(model, learner.parameters()), learner)

    def batch(step, dtype):
        if variant.data is not None:
            return variant.data(UNION, step, dtype)
        x, y = batch_for(rule, UNION, step, dtype)
        if variant.options.get("loss") == "mse":
            per_step = variant.options.get("targets") == "every"
            y = torch.nn.functional.one_hot(y, N_OUT if rule not in REFUSE_MLP else 6).to(dtype)
            if per_step:
                y = y.unsqueeze(1).expand(-1, x.shape[1], -1).contiguous()
        return x, y

    def step(trainer, batch):
        trainer.learner.step(*batch)

    return Case("learner", build, batch, _rows, step, variant.dtype, rule)


CASES.update({f"learner:{rule}": _learner_case(Variant(rule)) for rule in localgrad.rules()})
CASES.update({f"learner:{name}": _learner_case(v) for name, v in VARIANTS.items()})
