"""Every rule as a data-parallel case, shared by the two-rank workers
(tests/distributed_worker.py) and the single-process reference in
tests/test_distributed.py.

A case builds a trainer (a model, and its learner for the rules that write
.grad themselves) from a seed, makes union batches, and runs one training
step on a batch (or on one rank's shard of it). The union batch of a step is
the same on every rank; rank r trains on samples r*B .. r*B + B - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from learner_models import batch_for, model_for

import localgrad
from localgrad.eqprop import EqPropMLP
from localgrad.hebbian import HebbianLinear
from localgrad.predictive_coding import PredictiveCoding
from localgrad.synthetic_gradients import DNI, RecurrentDNI
from localgrad.target_prop import TargetProp
from localgrad.online import (ALIF, BPTT, KFRTRL, LIF, RFLO, RTRL, UORO, EProp, LeakyRNN, SnAp, SpikingBPTT,
                              SpikingEProp)

UNION = 8  # samples (or sequences) per union batch: 4 per rank on 2 ranks
STEPS = 20


@dataclass
class Trainer:
    model: nn.Module  # what the optimizer trains (the unwrapped module)
    learner: object | None = None  # the online learners; None: the model's own step
    net: nn.Module | None = None  # what the step calls: the model or its DDP wrapper


@dataclass
class Case:
    family: str  # "convert": autograd delivers the gradients; "self": the rule averages them; "learner": its Learner does
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


# --- EqProp and CHL -------------------------------------------------------------


def _eqprop_builder(mode):
    def build(seed, dtype):
        torch.manual_seed(seed)
        return Trainer(EqPropMLP([12, 9, 4], activation="sigmoid", mode=mode, t_free=15, t_nudge=6).to(dtype))

    return build


def _eqprop_step(trainer, batch):
    trainer.model.eqprop_step(*batch)


def _eqprop_case(mode, dtype=torch.float64):
    return Case("self", _eqprop_builder(mode), _classes((12,)), _rows, _eqprop_step, dtype, mode)


# --- online learners (batch of sequences along dim 1) --------------------------

T_SEQ = 5


def _rnn_builder(make_learner):
    def build(seed, dtype):
        torch.manual_seed(seed)
        model = LeakyRNN(3, 5, 2, alpha=0.6).to(dtype)
        return Trainer(model, make_learner(model, seed))

    return build


def _spiking_builder(cls, make_learner):
    def build(seed, dtype):
        torch.manual_seed(seed)
        model = cls(3, 6, 2, tau_m=5.0, weight_scale=2.0, dtype=dtype)
        return Trainer(model, make_learner(model, seed))

    return build


def _sequences(step, dtype):
    g = torch.Generator().manual_seed(2000 + step)
    xs = torch.randn(T_SEQ, UNION, 3, generator=g, dtype=dtype)
    return xs, torch.randn(T_SEQ, UNION, 2, generator=g, dtype=dtype)


def _spikes(step, dtype):
    g = torch.Generator().manual_seed(3000 + step)
    xs = (torch.rand(T_SEQ, UNION, 3, generator=g, dtype=dtype) < 0.4).to(dtype) * 2.0
    return xs, torch.randint(0, 2, (T_SEQ, UNION), generator=g)


def _columns(batch, rank, world):
    n = batch[0].shape[1] // world
    return tuple(t[:, rank * n:(rank + 1) * n] for t in batch)


def _online_step(trainer, batch):
    xs, targets = batch
    learner = trainer.learner
    learner.reset(xs.shape[1])
    learner.run(xs[:3], targets[:3])  # two chunks: state and traces carry over
    learner.run(xs[3:], targets[3:])


def _online_case(rule, make_learner, dtype=torch.float64):
    return Case("self", _rnn_builder(make_learner), _sequences, _columns, _online_step, dtype, rule)


def _spiking_case(rule, cls, make_learner, dtype=torch.float64):
    return Case("self", _spiking_builder(cls, make_learner), _spikes, _columns, _online_step, dtype, rule)


# --- Hebbian layers (unsupervised: the forward pass writes .grad) ----------------


def _hebbian_builder(rule, **knobs):
    def build(seed, dtype):
        torch.manual_seed(seed)
        model = nn.Sequential(HebbianLinear(12, 9, rule, activation="relu", **knobs),
                              HebbianLinear(9, 5, rule, **knobs)).to(dtype)
        return Trainer(model)

    return build


def _hebbian_step(trainer, batch):
    trainer.net(batch[0])


def _hebbian_case(rule, dtype=torch.float64, **knobs):
    return Case("self", _hebbian_builder(rule, **knobs), _classes((12,)), _rows, _hebbian_step, dtype, rule)


# --- predictive coding --------------------------------------------------------


def _pc_builder(variant, conv=False, **options):
    def build(seed, dtype):
        model = (_cnn if conv else _mlp)(seed, dtype)
        return Trainer(model, PredictiveCoding(model, variant=variant, **options))

    return build


def _pc_step(trainer, batch):
    trainer.learner.step(*batch)


def _pc_case(variant, dtype=torch.float64, conv=False, **options):
    shape = (1, 5, 5) if conv else (12,)
    return Case("self", _pc_builder(variant, conv, **options), _classes(shape), _rows, _pc_step, dtype,
                f"pc-{variant}")


# --- synthetic gradients -------------------------------------------------------


class _WithSG(nn.Module):
    """The model and the learner's SG modules as one module, which the
    optimizer (and the test) see; its forward is the model's."""

    def __init__(self, net, sg):
        super().__init__()
        self.net, self.sg = net, sg

    def forward(self, x):
        return self.net(x)


def _dni_builder(**options):
    def build(seed, dtype):
        model = _mlp(seed, dtype)
        learner = DNI(model, **options)
        # Random SG modules (their output layer starts at zero): the blocks
        # below the top learn from them at the first step, and rank 1's
        # differ until broadcast_state gives it rank 0's.
        g = torch.Generator().manual_seed(500 + seed)
        with torch.no_grad():
            for p in learner.sg_parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype))
        return Trainer(_WithSG(model, learner.synthesizers), learner)

    return build


# --- target propagation ---------------------------------------------------------


def _square_mlp(seed, dtype):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 6), nn.LeakyReLU(0.2), nn.Linear(6, 6)).to(dtype)


class _WithFeedback(nn.Module):
    """The model and the learner's feedback maps in one module, for the optimizer (and fully_shard)."""

    def __init__(self, model, feedback):
        super().__init__()
        self.model, self.feedback = model, feedback

    def forward(self, x):
        return self.model(x)


def _tp_conv(seed, dtype):
    # A strided-conv net on the 12 features seen as a 3x4 image (the conv path's ConvTranspose2d feedback);
    # tanh: no dead units whose feedback bias gradient would be rounding noise.
    torch.manual_seed(seed)
    return nn.Sequential(nn.Unflatten(1, (1, 3, 4)), nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.Tanh(),
                         nn.Flatten(), nn.Linear(12, 4)).to(dtype)


def _tp_builder(variant, conv=False, **options):
    def build(seed, dtype):
        model = (_tp_conv if conv else _square_mlp if variant == "gait" else _mlp)(seed, dtype)
        learner = TargetProp(model, variant=variant, seed=seed, **options)
        # The optimizer trains the model and the feedback: one module holding both.
        return Trainer(_WithFeedback(model, learner.feedback), learner)

    return build


def _recurrent_dni_builder(seed, dtype):
    torch.manual_seed(seed)
    model = LeakyRNN(3, 5, 2, alpha=0.6).to(dtype)
    learner = RecurrentDNI(model, sg_hidden=(4,))
    g = torch.Generator().manual_seed(600 + seed)
    with torch.no_grad():
        for p in learner.sg_parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype))
    return Trainer(_WithSG(model, learner.synthesizer), learner)


def _dni_case(dtype=torch.float64, **options):
    return Case("self", _dni_builder(**options), _classes((12,)), _rows, _pc_step, dtype, "dni")


# float64 only: the float32 check compares with single-process runs on each
# shard, which draw a shard's noise instead of the union batch's rows.
def _tp_case(variant, dtype=torch.float64, **options):
    return Case("self", _tp_builder(variant, **options), _classes((12,)), _rows, _pc_step, dtype, f"tp-{variant}")


CASES: dict[str, Case] = {
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
    "eqprop": _eqprop_case("eqprop"),
    "eqprop-float32": _eqprop_case("eqprop", torch.float32),
    "chl": _eqprop_case("chl"),
    "rtrl": _online_case("rtrl", lambda m, s: RTRL(m)),
    "rtrl-float32": _online_case("rtrl", lambda m, s: RTRL(m), torch.float32),
    "snap1": _online_case("snap", lambda m, s: SnAp(m, n=1)),
    "snap2": _online_case("snap", lambda m, s: SnAp(m, n=2)),
    "rflo": _online_case("rflo", lambda m, s: RFLO(m, seed=s)),
    "eprop": _online_case("eprop", lambda m, s: EProp(m)),
    "eprop-random": _online_case("eprop", lambda m, s: EProp(m, feedback="random", seed=s)),
    "uoro": _online_case("uoro", lambda m, s: UORO(m, seed=s)),
    "kfrtrl": _online_case("kfrtrl", lambda m, s: KFRTRL(m, seed=s)),
    "kfrtrl2": _online_case("kfrtrl", lambda m, s: KFRTRL(m, rank=2, seed=s)),
    "bptt": _online_case("bptt", lambda m, s: BPTT(m)),
    "eprop-lif": _spiking_case("eprop", LIF, lambda m, s: SpikingEProp(m, loss="ce")),
    "eprop-alif-random": _spiking_case(
        "eprop", ALIF, lambda m, s: SpikingEProp(m, feedback="random", loss="ce", seed=s)
    ),
    "bptt-lif": _spiking_case("bptt", LIF, lambda m, s: SpikingBPTT(m, loss="ce")),
    "hebbian-oja": _hebbian_case("oja"),
    "hebbian-sanger": _hebbian_case("sanger"),
    "hebbian-bcm": _hebbian_case("bcm"),
    "hebbian-softhebb": _hebbian_case("softhebb"),  # published knobs: max-abs normalised, adaptive rate
    "hebbian-oja-float32": _hebbian_case("oja", torch.float32),
    "hebbian-krotov": _hebbian_case("krotov"),
    "pc-il": _pc_case("il", loss="ce", steps=6),
    "pc-il-float32": _pc_case("il", torch.float32, steps=6),
    "pc-zil": _pc_case("zil"),
    "pc-fpa": _pc_case("fpa", loss="ce"),
    "pc-il-conv": _pc_case("il", conv=True, steps=4),
    "dni": _dni_case(),
    "dni-float32": _dni_case(torch.float32),
    "dni-rnn": Case("self", _recurrent_dni_builder, _sequences, _columns, _online_step, torch.float64, "dni"),
    "cdni-lam-mse": _dni_case(conditioned=True, lam=0.5, sg_hidden=(5,), loss="mse", split="pre-activation"),
    "tp-dtp": _tp_case("dtp"),
    "tp-tp": _tp_case("tp"),
    "tp-ldrl": _tp_case("ldrl", beta=0.3),
    "tp-ddtp": _tp_case("ddtp", lam=0.1, loss="mse"),
    "tp-gait": _tp_case("gait", gamma=0.5),
    # The fused feedback-gradient op (linear in h: the gated maps), noise samples stacked.
    "tp-dtp-gated": _tp_case("dtp", feedback="gated"),
    "tp-ldrl-gated-samples": _tp_case("ldrl", beta=0.3, feedback="gated", samples=3),
    # The conv path in the papers' form (the gated form's feedback bias has no
    # gradient at all: a relative error of rounding noise).
    "tp-ldrl-conv": _tp_case("ldrl", conv=True, beta=0.3, samples=2),
    "tp-dtp-conv": _tp_case("dtp", conv=True),
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


def _learner_case(rule):
    def build(seed, dtype):
        model = model_for(rule, seed, dtype)
        # Each rank's own seed: the replicas agree only after broadcast_state.
        learner = localgrad.learner(model, rule, seed=seed)
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
        return batch_for(rule, UNION, step, dtype)

    def step(trainer, batch):
        trainer.learner.step(*batch)

    return Case("learner", build, batch, _rows, step, torch.float64, rule)


CASES.update({f"learner:{rule}": _learner_case(rule) for rule in localgrad.rules()})
