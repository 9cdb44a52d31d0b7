"""The sequence rules under the Learner API. x is (batch, time, features),
batch first as in nn.RNN(batch_first=True); each step runs whole sequences
from a zero state (the online rules learn as they go, inside the step, and
their traces start afresh with every batch of sequences)."""

from __future__ import annotations

import torch

from localgrad.learner import Learner, StepOutput, UnsupportedModelError, register_rule
from localgrad.online.bptt import BPTT
from localgrad.online.eprop import EProp
from localgrad.online.eprop_spiking import SpikingBPTT, SpikingEProp
from localgrad.online.kfrtrl import KFRTRL
from localgrad.online.leaky_rnn import LeakyRNN
from localgrad.online.lif import LIF
from localgrad.online.rflo import RFLO
from localgrad.online.rtrl import RTRL
from localgrad.online.snap import SnAp
from localgrad.online.uoro import UORO
from localgrad.synthetic_gradients.recurrent import RecurrentDNI
from localgrad.training import check_labels

TARGETS = ("last", "every")
# engine -> (its class, the model class it trains, whether it runs the sequence in windows)
_ENGINES = {
    "bptt": (BPTT, LeakyRNN, False),
    "rtrl": (RTRL, LeakyRNN, False),
    "snap": (SnAp, LeakyRNN, False),
    "rflo": (RFLO, LeakyRNN, False),
    "eprop": (EProp, LeakyRNN, False),
    "uoro": (UORO, LeakyRNN, False),
    "kfrtrl": (KFRTRL, LeakyRNN, False),
    "recurrent_dni": (RecurrentDNI, LeakyRNN, True),
    "eprop_spiking": (SpikingEProp, LIF, False),
    "bptt_spiking": (SpikingBPTT, LIF, False),
}
_SEEDED = ("rflo", "eprop", "uoro", "kfrtrl", "eprop_spiking")


class SequenceLearner(Learner):
    """A leaky RNN (localgrad.online.LeakyRNN) or a spiking network
    (localgrad.online.LIF / ALIF) trained by an online rule or BPTT.

    targets: "last" (default): y is (batch,) class indices for loss "ce"
    (default), or (batch, outputs) for "mse", the loss read at the last
    step only; "every": y is (batch, time) or (batch, time, outputs), a
    loss at every step (class indices < 0 in a spiking network's y: no
    loss at that step). The loss is the sum over the steps that have one
    of the batch-mean step losses. `predict(x)` returns the readout at the
    last step (batch, outputs), or at every step (batch, time, outputs)
    with targets="every". Windowed rules (tbptt, dni-rnn) run each sequence
    in windows of `window` steps (default: half the sequence, rounded up).
    Other options go to the family's learner (SnAp's n, KF-RTRL's rank,
    e-prop's feedback, ...)."""

    def __init__(self, model, *, rule: str, seed: int = 0, process_group=None, engine: str = "bptt",
                 loss: str = "ce", targets: str = "last", window: int | None = None, train_synthesizer: bool = True,
                 **options):
        super().__init__(model, rule=rule, seed=seed, process_group=process_group)
        cls, model_cls, self.windowed = _ENGINES[engine]
        if not isinstance(model, model_cls):
            raise UnsupportedModelError(f"{rule}: the model must be a localgrad.online.{model_cls.__name__} "
                                        f"(stock nn.RNN/GRU/LSTM cores are not supported yet), got "
                                        f"{type(model).__name__}")
        if targets not in TARGETS:
            raise ValueError(f"{rule}: targets must be one of {', '.join(TARGETS)}, got {targets!r}")
        if loss not in ("ce", "mse"):
            raise ValueError(f"{rule}: loss must be 'ce' or 'mse', got {loss!r}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ValueError(f"{rule}: window must be an int >= 1 or None, got {window!r}")
        self.spiking = model_cls is LIF
        if self.spiking and loss == "mse" and targets == "last":
            raise ValueError(f"{rule}: a spiking network's mse loss is read at every step; pass targets='every'")
        self.loss, self.targets, self.window = loss, targets, window
        if engine in _SEEDED:
            options["seed"] = self.seed
        self._adopt(cls(model, loss=loss, **options))
        self._frozen_synthesizer = engine == "recurrent_dni" and not train_synthesizer
        if self._frozen_synthesizer:  # truncated BPTT: the module stays at its zero start
            for p in self.inner.sg_parameters():
                p.requires_grad_(False)

    def parameters(self):
        if hasattr(self.inner, "sg_parameters") and not self._frozen_synthesizer:
            return list(self.inner.sg_parameters())
        return []

    def _sequences(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.model.input_size:
            raise ValueError(f"{self.rule}: x must be (batch, time, {self.model.input_size}) (batch first), got "
                             f"shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{self.rule}: x contains NaN or inf")
        return x.transpose(0, 1).contiguous()

    def _time_targets(self, y: torch.Tensor, steps: int, batch: int):
        """(targets (T, batch[, outputs]), loss_mask (T,) or None)."""
        n_out = self.model.output_size
        if self.loss == "ce":
            if y.is_floating_point():
                raise TypeError(f"{self.rule}: loss 'ce' takes integer class indices y, got {y.dtype}")
            if self.targets == "last":
                check_labels(y, batch, n_out, self.rule)
                t = y.long().unsqueeze(0).expand(steps, batch)
            else:
                if tuple(y.shape) != (batch, steps):
                    raise ValueError(f"{self.rule}: y must be (batch, time) = ({batch}, {steps}), got "
                                     f"{tuple(y.shape)}")
                low = -1 if self.spiking else 0
                if y.numel() and (int(y.min()) < low or int(y.max()) >= n_out):
                    raise ValueError(f"{self.rule}: class indices y must lie in [{low}, {n_out}), got "
                                     f"{int(y.min())}..{int(y.max())}")
                t = y.long().T
        else:
            if not y.is_floating_point():
                raise TypeError(f"{self.rule}: loss 'mse' takes float targets y, got {y.dtype}")
            want = (batch, n_out) if self.targets == "last" else (batch, steps, n_out)
            if tuple(y.shape) != want:
                raise ValueError(f"{self.rule}: y must have shape {want} for targets {self.targets!r}, got "
                                 f"{tuple(y.shape)}")
            if not bool(torch.isfinite(y).all()):
                raise ValueError(f"{self.rule}: targets y contain NaN or inf")
            t = y.unsqueeze(0).expand(steps, *y.shape) if self.targets == "last" else y.transpose(0, 1)
        t = t.contiguous()
        if self.targets == "every":
            return t, None
        if self.spiking:  # a spiking learner reads a class index < 0 as "no loss at this step"
            t = t.clone()
            t[:-1] = -1
            return t, None
        mask = torch.zeros(steps, dtype=torch.bool)
        mask[-1] = True
        return t, mask

    def _step(self, x, y):
        xs = self._sequences(x)
        steps, batch = xs.shape[:2]
        targets, mask = self._time_targets(y, steps, batch)
        self.inner.reset(batch)
        if self.spiking:
            loss = self.inner.run(xs, targets)
        elif self.windowed:
            window = self.window or -(-steps // 2)
            loss = xs.new_zeros(())
            for s in range(0, steps, window):
                e = min(s + window, steps)
                loss = loss + self.inner.run(xs[s:e], targets[s:e], mask[s:e], final=e == steps)
        else:
            loss = self.inner.run(xs, targets, mask)
        return StepOutput(loss, None)

    @torch.no_grad()
    def predict(self, x):
        ys = self.model(self._sequences(x))[0]
        return ys[-1] if self.targets == "last" else ys.transpose(0, 1)


_RULES = {
    "bptt": ("bptt", {}, "backpropagation through time (autograd), the baseline", "Werbos 1990, Proc. IEEE 78:1550"),
    "tbptt": ("recurrent_dni", {"train_synthesizer": False},
              "truncated BPTT: the sequence in windows, no gradient across their boundaries",
              "Williams & Peng 1990, Neural Computation 2:490"),
    "rtrl": ("rtrl", {}, "real-time recurrent learning: exact online gradient", "Williams & Zipser 1989, Neural "
             "Computation 1:270"),
    "snap-1": ("snap", {"n": 1}, "SnAp-1: RTRL's sensitivities kept on the one-step sparsity pattern",
               "Menick et al. 2021, ICLR"),
    "snap-2": ("snap", {"n": 2}, "SnAp-2: RTRL's sensitivities kept on the two-step sparsity pattern",
               "Menick et al. 2021, ICLR"),
    "rflo": ("rflo", {}, "random feedback local online learning", "Murray 2019, eLife 8:e43299"),
    "eprop": ("eprop", {}, "e-prop for rate units: eligibility traces times a learning signal",
              "Bellec et al. 2020, Nature Communications 11:3625"),
    "uoro": ("uoro", {}, "unbiased online recurrent optimisation: a rank-one RTRL estimate",
             "Tallec & Ollivier 2018, ICLR"),
    "kfrtrl": ("kfrtrl", {}, "Kronecker-factored RTRL: an unbiased rank-r estimate", "Mujika, Meier & Steger 2018, "
               "NeurIPS"),
    "dni-rnn": ("recurrent_dni", {}, "truncated BPTT with a synthetic gradient at each window's end",
                "Jaderberg et al. 2017, ICML"),
    "eprop-spiking": ("eprop_spiking", {}, "e-prop for LIF/ALIF spiking networks",
                      "Bellec et al. 2020, Nature Communications 11:3625"),
    "bptt-spiking": ("bptt_spiking", {}, "surrogate-gradient BPTT for LIF/ALIF spiking networks",
                     "Neftci, Mostafa & Zenke 2019, IEEE Signal Processing Magazine 36:51"),
}
for _name, (_engine, _options, _summary, _paper) in _RULES.items():
    register_rule(_name, family="online", inputs="sequence", summary=_summary, paper=_paper, engine=_engine,
                  baseline=_engine.startswith("bptt"), **_options)(SequenceLearner)
