"""EqPropMLP: a layered energy-based network trained by Equilibrium
Propagation (Scellier & Bengio 2017) or contrastive Hebbian learning
(Movellan 1991), relaxed by the fused eqprop_relax op.

Model (localgrad.reference.eqprop states it in full): s_0 = x clamped,
Phi = sum_i s_{i+1}^T (W_i s_i + b_i), steps s_k <- sigma(dPhi/ds_k), the
output nudged by -beta dl/ds_L. `eqprop_step` writes into every parameter's
.grad the negative of the EqProp estimate, which approximates the gradient of
the batch-mean loss at the free fixed point, so any torch.optim optimizer
descends it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from localgrad import ops
from localgrad.distributed import average_gradients, check_replicated
from localgrad.learner import add_to_grad
from localgrad.training import check_labels
from localgrad._checks import as_float, as_int
from localgrad.reference.eqprop import ACTIVATIONS

NUDGINGS = ("centered", "positive", "negative")
UPDATES = ("sync", "async")
LOSSES = ("mse", "ce")
MODES = ("eqprop", "chl")


class EqPropMLP(nn.Module):
    """sizes: [n_0, n_1, ..., n_L]; layers[i] = nn.Linear(n_i, n_{i+1}) holds
    W_i and b_i. activation: hardsigmoid (clamp(., 0, 1)), sigmoid or tanh.
    beta: nudging strength (> 0). nudging: centered (phases +beta and -beta),
    positive (free and +beta) or negative (free and -beta). t_free, t_nudge:
    relaxation steps of the free and of each nudged phase. update: sync or
    async (even layers, then odd ones). loss: mse (1/2 ||s_L - y||^2) or ce
    (cross-entropy of softmax(s_L)). mode: eqprop, or chl (the second phase
    clamps s_L = y; beta and nudging are unused). tol: per-row early exit of
    every relaxation (0: always run all steps).

    Under torch.distributed, `eqprop_step` averages the gradients over the
    ranks of `process_group` (None: the default group); see
    localgrad.distributed.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "hardsigmoid",
        beta: float = 0.5,
        nudging: str = "centered",
        t_free: int = 30,
        t_nudge: int = 10,
        update: str = "sync",
        loss: str = "mse",
        mode: str = "eqprop",
        tol: float = 0.0,
    ):
        super().__init__()
        sizes = [as_int(n, "EqPropMLP", f"sizes[{i}]") for i, n in enumerate(sizes)]
        if len(sizes) < 2 or any(n < 1 for n in sizes):
            raise ValueError(f"EqPropMLP: sizes needs at least input and output widths, all >= 1, got {sizes}")
        for name, value, allowed in (
            ("activation", activation, tuple(ACTIVATIONS)),
            ("nudging", nudging, NUDGINGS),
            ("update", update, UPDATES),
            ("loss", loss, LOSSES),
            ("mode", mode, MODES),
        ):
            if value not in allowed:
                raise ValueError(f"EqPropMLP: {name} must be one of {', '.join(allowed)}, got {value!r}")
        if mode == "eqprop" and not beta > 0:
            raise ValueError(
                f"EqPropMLP: beta must be > 0 ({nudging} nudging takes its sign from `nudging`), got {beta}"
            )
        beta = as_float(beta, "EqPropMLP", "beta")
        t_free, t_nudge = as_int(t_free, "EqPropMLP", "t_free"), as_int(t_nudge, "EqPropMLP", "t_nudge")
        tol = as_float(tol, "EqPropMLP", "tol", finite=False)
        if t_free < 0 or t_nudge < 0:
            raise ValueError(f"EqPropMLP: t_free and t_nudge must be >= 0, got {t_free} and {t_nudge}")
        self.sizes = sizes
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation, self.beta, self.nudging = activation, float(beta), nudging
        self.t_free, self.t_nudge, self.update, self.loss = int(t_free), int(t_nudge), update, loss
        self.mode, self.tol = mode, float(tol)
        self.last_steps: dict[str, int] = {}  # steps each phase of the last call ran (max over rows)
        self.process_group = None
        self.last_output: torch.Tensor | None = None  # the free phase's output units of the last eqprop_step

    def extra_repr(self) -> str:
        return (
            f"sizes={self.sizes}, activation={self.activation}, mode={self.mode}, beta={self.beta}, "
            f"nudging={self.nudging}, t_free={self.t_free}, t_nudge={self.t_nudge}, update={self.update}, "
            f"loss={self.loss}"
        )

    # -- inputs ---------------------------------------------------------------

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1) if x.dim() > 2 else x
        if x.dim() != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"EqPropMLP: x must have shape (batch, {self.sizes[0]}), got {tuple(x.shape)}")
        w = self.layers[0].weight
        if x.dtype != w.dtype or x.device != w.device:
            raise TypeError(f"EqPropMLP: x must be {w.dtype} on {w.device} like the weights, got {x.dtype} on {x.device}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("EqPropMLP: x has NaN or infinite entries")
        return x

    def _target(self, y: torch.Tensor, batch: int) -> torch.Tensor:
        n_out, w = self.sizes[-1], self.layers[0].weight
        if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
            check_labels(y, batch, n_out, "EqPropMLP")
            return F.one_hot(y.long(), n_out).to(w)
        if y.shape != (batch, n_out):
            raise ValueError(f"EqPropMLP: float targets y must have shape ({batch}, {n_out}), got {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("EqPropMLP: y has NaN or infinite entries")
        return y.to(w)

    # -- relaxation -----------------------------------------------------------

    def initial_states(self, batch: int) -> list[torch.Tensor]:
        w = self.layers[0].weight
        return [w.new_zeros((batch, n)) for n in self.sizes[1:]]

    @torch.no_grad()
    def relax(
        self,
        x: torch.Tensor,
        states: Sequence[torch.Tensor] | None = None,
        *,
        steps: int | None = None,
        target: torch.Tensor | None = None,
        beta: float = 0.0,
        nudge: str = "free",
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Relaxes from `states` (copied; zeros by default: pass a previous
        call's states to warm-start). Returns the new states and the steps
        each row ran."""
        x = self._input(x)
        states = self.initial_states(x.shape[0]) if states is None else [s.detach().clone() for s in states]
        ran = ops.eqprop_relax(
            x,
            [m.weight.detach() for m in self.layers],
            [m.bias.detach() for m in self.layers],
            states,
            target,
            beta=beta,
            nudge=nudge,
            activation=self.activation,
            steps=self.t_free if steps is None else steps,
            async_update=self.update == "async",
            tol=self.tol,
        )
        return states, ran

    def forward(self, x: torch.Tensor, states: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """The output layer s_L at the end of the free phase."""
        return self.relax(x, states)[0][-1]

    # -- learning -------------------------------------------------------------

    def loss_of(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Batch-mean loss of output states against (batch, n_L) targets."""
        if self.loss == "mse":
            return 0.5 * (out - target).pow(2).sum(1).mean()
        return torch.sum(-target * torch.log_softmax(out, dim=1), dim=1).mean()

    @torch.no_grad()
    def eqprop_step(
        self, x: torch.Tensor, y: torch.Tensor, states: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Free phase, then the nudged (or clamped) phases from its fixed
        point; adds to every parameter's .grad the negative EqProp (or CHL)
        estimate, batch-mean convention. Returns (loss at the free fixed
        point, predicted classes). Under torch.distributed, .grad is then
        averaged over the ranks (each on its own shard of the batch)."""
        check_replicated(self.parameters(), "EqProp" if self.mode == "eqprop" else "CHL")
        x = self._input(x)
        batch = x.shape[0]
        target = self._target(y, batch)
        free, ran = self.relax(x, states)
        self.last_steps = {"free": int(ran.max()) if batch else 0}
        n = max(batch, 1)

        def phase(name, **kwargs):
            s, r = self.relax(x, free, steps=self.t_nudge, target=target, **kwargs)
            self.last_steps[name] = int(r.max()) if batch else 0
            return s

        if self.mode == "chl":
            a, b, scale = free, phase("clamped", nudge="clamp"), 1.0 / n
        else:
            nudge = self.loss
            if self.nudging == "centered":
                a = phase("negative", beta=-self.beta, nudge=nudge)
                b = phase("positive", beta=self.beta, nudge=nudge)
                scale = 1.0 / (2 * self.beta * n)
            elif self.nudging == "positive":
                a, b, scale = free, phase("positive", beta=self.beta, nudge=nudge), 1.0 / (self.beta * n)
            else:
                a, b, scale = phase("negative", beta=-self.beta, nudge=nudge), free, 1.0 / (self.beta * n)
        weight_grads, bias_grads = ops.eqprop_update(x, a, b, scale)
        for layer, gw, gb in zip(self.layers, weight_grads, bias_grads):
            add_to_grad(layer.weight, gw, owned=True)
            add_to_grad(layer.bias, gb, owned=True)
        average_gradients(self.parameters(), group=self.process_group)
        out = free[-1]
        self.last_output = out
        return self.loss_of(out, target), out.argmax(1)
