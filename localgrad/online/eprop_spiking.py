"""Online learning for the spiking networks of localgrad.online.lif: e-prop
(Bellec et al. 2020) and the surrogate-gradient BPTT baseline.

Both learners share the learner interface of localgrad.online: reset(batch_size),
step(x_t, target_t) (one time step), run(xs, targets) (a chunk of steps,
state carried across chunks); they accumulate into the parameters' .grad and
return the chunk's summed loss. The per-step loss is

    mse: torch.nn.functional.mse_loss(y_t, target_t)  (reduction "mean"), or
    ce:  (1/batch) sum over samples with target_t >= 0 of cross_entropy(y_t, target_t),
         so a step (or a sample) with target < 0 has no loss; with every target
         valid it is cross_entropy(y_t, target_t) with reduction "mean".

SpikingEProp follows eq. 3 of the paper: grad W_ji = sum_t L_j^t ebar_ji^t
with the learning signal L_j^t = sum_k B_jk dE_t/dy_k^t (B = W_out^T for
feedback="symmetric", a fixed seeded random matrix for "random") and ebar the
eligibility trace filtered by the readout's kappa (equations:
localgrad/reference/eprop_lif.py). The readout's own gradient is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from localgrad.distributed import average_gradients, check_replicated
from localgrad.learner import add_to_grad
from localgrad.online.lif import LIF
from localgrad.ops.eprop_lif import eprop_lif_chunk
from localgrad.reference.eprop_lif import eprop_lif_chunk as eprop_lif_chunk_reference

LOSSES = ("mse", "ce")


def step_losses(ys: torch.Tensor, targets: torch.Tensor | None, loss: str) -> torch.Tensor:
    """Per-step losses (T,) of outputs ys (T, batch, n_out), as defined above."""
    if targets is None:
        return ys.new_zeros(ys.shape[0])
    if loss == "mse":
        return ((ys - targets) ** 2).flatten(1).mean(1) if ys.shape[1] else ys.new_zeros(ys.shape[0])
    valid = targets >= 0
    ce = F.cross_entropy(ys.flatten(0, 1), targets.clamp_min(0).flatten(), reduction="none")
    ce = ce.view(targets.shape) * valid
    return ce.sum(1) / max(ys.shape[1], 1)


class _SpikingLearner:
    """Data-parallel as the rate learners (localgrad.online.OnlineLearner):
    each call averages .grad over the ranks of `process_group`."""

    name = "learner"
    process_group = None
    replicated: tuple[str, ...] = ()

    def __init__(self, model: LIF, loss: str = "mse"):
        if not isinstance(model, LIF):
            raise TypeError(f"{self.name}: model must be a localgrad.online.LIF or ALIF, got {type(model).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"{self.name}: loss must be one of {LOSSES}, got {loss!r}")
        self.model, self.loss = model, loss
        self.batch_size: int | None = None

    def _check(self, where: str, xs: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
        if self.batch_size is None:
            raise RuntimeError(f"{self.name}.{where}: call reset(batch_size) first")
        m = self.model
        check_replicated(m.parameters(), self.name)
        if xs.dim() != 3 or xs.shape[1] != self.batch_size or xs.shape[2] != m.input_size:
            raise ValueError(
                f"{self.name}.{where}: inputs must have shape (T, {self.batch_size}, {m.input_size}) "
                f"(steps, batch_size of reset, input_size), got {tuple(xs.shape)}"
            )
        if xs.dtype != m.weight_in.dtype or xs.device != m.weight_in.device:
            raise TypeError(
                f"{self.name}.{where}: inputs must be {m.weight_in.dtype} on {m.weight_in.device} "
                f"like the model, got {xs.dtype} on {xs.device}"
            )
        if torch.isnan(xs).any():
            raise ValueError(f"{self.name}.{where}: inputs contain NaN")
        if targets is None:
            return None
        T, B = xs.shape[:2]
        if self.loss == "mse":
            if targets.shape != (T, B, m.output_size):
                raise ValueError(
                    f"{self.name}.{where}: mse targets must have shape {(T, B, m.output_size)}, "
                    f"got {tuple(targets.shape)}"
                )
            if torch.isnan(targets).any():
                raise ValueError(f"{self.name}.{where}: targets contain NaN")
            return targets.to(xs.dtype)
        if targets.shape != (T, B) or targets.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"{self.name}.{where}: cross-entropy targets must be integer class indices of shape "
                f"{(T, B)} (< 0: no loss), got {targets.dtype} {tuple(targets.shape)}"
            )
        if (targets >= m.output_size).any():
            raise ValueError(f"{self.name}.{where}: targets must be < output_size ({m.output_size})")
        return targets.long()

    def step(self, x_t: torch.Tensor, target_t: torch.Tensor | None = None) -> torch.Tensor:
        """One time step: x_t (batch, n_in); target_t (batch, n_out) for mse,
        (batch,) class indices for ce, or None (no loss this step)."""
        if x_t.dim() != 2:
            raise ValueError(f"{self.name}.step: x_t must have shape (batch, input_size), got {tuple(x_t.shape)}")
        return self.run(x_t.unsqueeze(0), None if target_t is None else target_t.unsqueeze(0))

    def _average_gradients(self) -> None:
        average_gradients(self.model.parameters(), group=self.process_group)


class SpikingEProp(_SpikingLearner):
    """e-prop for LIF/ALIF networks (Bellec et al. 2020), online.

    feedback: "symmetric" (B = W_out^T, read at every chunk) or "random" (a
    fixed matrix drawn from `seed`, N(0, 1/hidden), saved in state_dict).
    use_kernel: the fused op (localgrad.ops.eprop_lif_chunk); False runs the
    eager pure-PyTorch reference instead (same numbers up to rounding).
    run(xs, targets, learning_signal=...) replaces the readout's learning
    signal with a given one (T, batch, hidden) and uses the unfiltered
    eligibility traces: with the total derivative dE/dz_t from autograd it
    gives the exact BPTT gradient (the paper's eq. 1), which the tests check.
    """

    name = "SpikingEProp"
    replicated = ("random_feedback",)

    def __init__(self, model: LIF, feedback: str = "symmetric", loss: str = "mse", seed: int = 0,
                 use_kernel: bool = True):  # fmt: skip
        super().__init__(model, loss)
        if feedback not in ("symmetric", "random"):
            raise ValueError(f"SpikingEProp: feedback must be 'symmetric' or 'random', got {feedback!r}")
        self.feedback, self.seed, self.use_kernel = feedback, int(seed), use_kernel
        self.random_feedback = None
        if feedback == "random":
            g = torch.Generator().manual_seed(self.seed)
            w = model.readout.weight
            b = torch.randn(model.output_size, model.hidden_size, generator=g, dtype=torch.float64)
            self.random_feedback = (b / math.sqrt(model.hidden_size)).to(dtype=w.dtype, device=w.device)
        self.state: dict[str, torch.Tensor] = {}
        self.steps = 0

    def feedback_matrix(self) -> torch.Tensor:
        """(n_out, hidden): row k sends the readout error of output k back; B^T."""
        if self.random_feedback is not None:
            return self.random_feedback
        return self.model.readout.weight.detach()

    def reset(self, batch_size: int) -> None:
        """Zero state and traces for a new batch of sequences."""
        if batch_size < 0:
            raise ValueError(f"SpikingEProp.reset: batch_size must be >= 0, got {batch_size}")
        m = self.model
        H, P = m.hidden_size, m.input_size + m.hidden_size
        kw = {"dtype": m.weight_in.dtype, "device": m.weight_in.device}
        adaptive = m.adaptive
        self.state = {
            "v": torch.zeros(batch_size, H, **kw),
            "a": torch.zeros(batch_size, H if adaptive else 0, **kw),
            "z": torch.zeros(batch_size, H, **kw),
            "psi": torch.zeros(batch_size, H if adaptive else 0, **kw),
            "y": torch.zeros(batch_size, m.output_size, **kw),
            "pre_trace": torch.zeros(batch_size, P, **kw),
            "adapt_trace": torch.zeros(batch_size, H, P, **kw) if adaptive else torch.zeros(0, **kw),
            "filt_trace": torch.zeros(batch_size, H, P, **kw),
            "out_trace": torch.zeros(batch_size, H + 1, **kw),
        }
        self.batch_size, self.steps = batch_size, 0

    def run(self, xs: torch.Tensor, targets: torch.Tensor | None = None,
            learning_signal: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """A chunk of steps: xs (T, batch, n_in); targets (T, batch, n_out)
        for mse, (T, batch) class indices for ce (< 0: no loss), or None.
        Accumulates the e-prop gradient into .grad; returns the summed loss."""
        targets = self._check("run", xs, targets)
        m = self.model
        T, B = xs.shape[:2]
        I, H, K = m.input_size, m.hidden_size, m.output_size
        if learning_signal is not None:
            if learning_signal.shape != (T, B, H):
                raise ValueError(
                    f"SpikingEProp.run: learning_signal must have shape {(T, B, H)}, got {tuple(learning_signal.shape)}"
                )
            mode, scale = "signal", 0.0
        else:
            mode = self.loss
            if targets is None:  # no loss this chunk: traces advance, no update
                targets = torch.full((T, B), -1, dtype=torch.long, device=xs.device) if mode == "ce" else None
                scale = 0.0
                if mode == "mse":
                    targets = xs.new_zeros(T, B, K)
            else:
                scale = (2.0 / (B * K) if mode == "mse" else 1.0 / B) if B else 0.0
        grad_w = xs.new_zeros(H, I + H)
        grad_out = xs.new_zeros(K, H + 1)
        outputs = xs.new_empty(T, B, K)
        op = eprop_lif_chunk if self.use_kernel else eprop_lif_chunk_reference_call
        with torch.no_grad():
            op(xs, m.weight_in.detach(), (m.weight_rec * m.rec_mask).detach(), m.readout.weight.detach(),
               m.readout.bias.detach(), self.feedback_matrix(), None if mode == "signal" else targets,
               learning_signal, m.neuron_constants(), m.adaptive, mode, scale, self.state, grad_w, grad_out,
               outputs)  # fmt: skip
            grad_w[:, I:].diagonal().zero_()
            add_to_grad(m.weight_in, grad_w[:, :I])
            add_to_grad(m.weight_rec, grad_w[:, I:])
            if mode != "signal":
                add_to_grad(m.readout.weight, grad_out[:, :H])
                add_to_grad(m.readout.bias, grad_out[:, H])
        self.steps += T
        self.last_outputs = outputs
        self._average_gradients()
        if mode == "signal" or scale == 0.0:
            return xs.new_zeros(())
        return step_losses(outputs, targets, self.loss).sum()

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue bit-exactly: membrane,
        adaptation, spikes, pseudo-derivatives, readout, all traces, the
        random feedback matrix and its seed."""
        return {
            "batch_size": self.batch_size,
            "steps": self.steps,
            "state": {k: v.clone() for k, v in self.state.items()},
            "feedback": self.feedback,
            "seed": self.seed,
            "random_feedback": None if self.random_feedback is None else self.random_feedback.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["feedback"] != self.feedback:
            raise ValueError(f"SpikingEProp.load_state_dict: saved feedback is {state['feedback']!r}, "
                             f"this learner's is {self.feedback!r}")  # fmt: skip
        self.batch_size, self.steps, self.seed = state["batch_size"], state["steps"], state["seed"]
        self.state = {k: v.clone() for k, v in state["state"].items()}
        if state["random_feedback"] is not None:
            self.random_feedback = state["random_feedback"].clone()


def eprop_lif_chunk_reference_call(x, weight_in, weight_rec, weight_out, bias_out, feedback, target, signal,
                                   neuron, adaptive, mode, loss_scale, state, grad_w, grad_out, outputs):  # fmt: skip
    """The eager reference with the fused op's calling convention."""
    s = state
    eprop_lif_chunk_reference(
        x, weight_in, weight_rec, weight_out, bias_out, feedback, target, signal, neuron, adaptive, mode,
        loss_scale, s["v"], s["a"], s["z"], s["psi"], s["y"], s["pre_trace"], s["adapt_trace"],
        s["filt_trace"], s["out_trace"], grad_w, grad_out, outputs,
    )  # fmt: skip


class SpikingBPTT(_SpikingLearner):
    """Surrogate-gradient BPTT on the same network (autograd through the
    equations of localgrad.online.lif, psi as the spike's derivative). run()
    backpropagates through its chunk from the carried state, which is detached
    between chunks: one run over a whole sequence is exact BPTT; chunks give
    truncated BPTT (and step() truncation 1)."""

    name = "SpikingBPTT"

    def reset(self, batch_size: int) -> None:
        if batch_size < 0:
            raise ValueError(f"SpikingBPTT.reset: batch_size must be >= 0, got {batch_size}")
        self.batch_size = batch_size
        self.state = self.model.initial_state(batch_size)

    def run(self, xs: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        targets = self._check("run", xs, targets)
        ys, _, state = self.model(xs, self.state)
        self.state = {k: v.detach() for k, v in state.items()}
        self.last_outputs = ys.detach()
        loss = xs.new_zeros(())
        if targets is not None:
            loss = step_losses(ys, targets, self.loss).sum()
            if loss.requires_grad:
                loss.backward()
        self._average_gradients()
        return loss.detach()

    def state_dict(self) -> dict:
        return {"batch_size": self.batch_size, "state": {k: v.clone() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.batch_size = state["batch_size"]
        self.state = {k: v.clone() for k, v in state["state"].items()}
