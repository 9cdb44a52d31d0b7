"""What every online learner shares: the hidden state, per-step losses on the
readout, input checks, and state_dict for bit-exact resume."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from localgrad.distributed import average_gradients, check_replicated
from localgrad.online.leaky_rnn import LeakyRNN

LOSSES = ("mse", "ce")


class OnlineLearner:
    """Base of RTRL, SnAp, RFLO, EProp, UORO and BPTT.

    reset(batch_size) starts a sequence; step(x_t, target_t) runs one time step,
    run(xs, targets) a chunk of them (state carries across chunks). The loss of
    step t is mse_loss(y_t, target_t) (mean) or cross_entropy(y_t, target_t)
    (mean over the batch), counted at the steps where a target is given
    (step: target_t not None; run: loss_mask[t], all steps by default). Each
    call adds the rule's estimate of ∂(Σ_t loss_t)/∂θ into the parameters'
    .grad (the readout's exact gradient included) and returns the summed loss.

    Data-parallel training: under torch.distributed each rank runs the learner
    on its own shard of the batch of sequences and every call averages .grad
    over the ranks of `process_group` (None: the default group), so the
    update is the one of the union batch (equal shards). Wrap nothing in DDP;
    `localgrad.distributed.broadcast_state(learner)` once at start gives
    every rank rank 0's model, feedback matrix and RNG state (`replicated`
    names the learner's own).
    """

    process_group = None
    replicated: tuple[str, ...] = ()

    def __init__(self, model: LeakyRNN, loss: str = "mse"):
        if not isinstance(model, LeakyRNN):
            hint = ""
            if isinstance(getattr(model, "module", None), LeakyRNN):
                hint = (" (pass the LeakyRNN itself, not its DistributedDataParallel wrapper: DDP never sees the "
                        "gradients an online learner writes; the learner averages them over the ranks itself)")
            raise TypeError(f"{type(self).__name__}: model must be a localgrad.online.LeakyRNN, "
                            f"got {type(model).__name__}{hint}")
        if loss not in LOSSES:
            raise ValueError(f"{type(self).__name__}: loss must be one of {LOSSES}, got {loss!r}")
        self.model = model
        self.loss = loss
        self.h: torch.Tensor | None = None

    # --- state -----------------------------------------------------------
    def reset(self, batch_size: int) -> None:
        """Zero hidden state and sensitivities for a new batch of sequences."""
        if batch_size < 0:
            raise ValueError(f"{type(self).__name__}.reset: batch_size must be >= 0, got {batch_size}")
        w = self.model.weight_ih
        self.h = w.new_zeros(batch_size, self.model.hidden_size).detach()
        self._reset_sensitivities(batch_size)

    def _reset_sensitivities(self, batch_size: int) -> None:
        pass

    def _sensitivity_state(self) -> dict:
        return {}

    def _load_sensitivity_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        """Hidden state, sensitivities/traces and RNG state: loading it into a
        learner of the same model continues the run bit-exactly."""
        if self.h is None:
            return {"h": None}
        return {"h": self.h.clone(), **self._sensitivity_state()}

    def load_state_dict(self, state: dict) -> None:
        self.h = None if state["h"] is None else state["h"].clone()
        if self.h is not None:
            self._load_sensitivity_state(state)

    # --- checks -----------------------------------------------------------
    def _check(self, xs: torch.Tensor, targets, loss_mask) -> None:
        name = type(self).__name__
        check_replicated(self.model.parameters(), name)
        if self.h is None:
            raise RuntimeError(f"{name}: call reset(batch_size) before step() or run()")
        if xs.dim() != 3:
            raise ValueError(f"{name}.run: xs must be 3-D (T, batch, input_size), got shape {tuple(xs.shape)}")
        if xs.shape[1] != self.h.shape[0]:
            raise ValueError(f"{name}: x has batch {xs.shape[1]} but reset() was called with batch {self.h.shape[0]}")
        if xs.shape[2] != self.model.input_size:
            raise ValueError(f"{name}: x must have {self.model.input_size} features (input_size), got {xs.shape[2]}")
        if not torch.isfinite(xs).all():
            raise ValueError(f"{name}: x contains NaN or inf")
        if targets is not None:
            t, b = xs.shape[:2]
            if self.loss == "mse":
                want = (t, b, self.model.output_size)
            else:
                want = (t, b)
            if tuple(targets.shape) != want:
                raise ValueError(f"{name}: targets must have shape {want} for loss {self.loss!r}, got {tuple(targets.shape)}")
            # mse_loss promotes integer targets silently: class indices meant
            # for 'ce' would be read as output values.
            if self.loss == "mse" and not targets.is_floating_point():
                raise TypeError(f"{name}: targets must be floating for loss 'mse', got {targets.dtype} (class "
                                "indices need loss 'ce')")
            if targets.is_floating_point() and not torch.isfinite(targets).all():
                raise ValueError(f"{name}: targets contain NaN or inf")
        if loss_mask is not None and tuple(loss_mask.shape) != (xs.shape[0],):
            raise ValueError(f"{name}: loss_mask must have shape ({xs.shape[0]},) (one flag per step), got {tuple(loss_mask.shape)}")

    def _step_loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # The mean over no samples is NaN; an empty batch has no loss, as the
        # spiking learners say (0). A sum over y, not a constant, keeps the
        # readout in the graph: its .grad is written (zeros), as on a rank
        # whose shard is not empty.
        if y.shape[0] == 0:
            return y.sum()
        if self.loss == "mse":
            return F.mse_loss(y, target)
        return F.cross_entropy(y, target)

    # --- running ----------------------------------------------------------
    def step(self, x_t: torch.Tensor, target_t: torch.Tensor | None = None) -> torch.Tensor:
        """One time step: x_t (batch, I); target_t (batch, O) for mse, (batch,)
        class indices for ce, or None for no loss at this step."""
        if x_t.dim() != 2:
            raise ValueError(f"{type(self).__name__}.step: x_t must be 2-D (batch, input_size), got shape {tuple(x_t.shape)}")
        targets = None if target_t is None else target_t.unsqueeze(0)
        return self.run(x_t.unsqueeze(0), targets)

    def run(self, xs: torch.Tensor, targets: torch.Tensor | None = None, loss_mask: torch.Tensor | None = None,
            **kwargs) -> torch.Tensor:
        """A chunk of T steps: xs (T, batch, I); targets (T, batch, O) or (T, batch);
        loss_mask (T,) bool selects the steps that have a loss."""
        self._check(xs, targets, loss_mask)
        m = self.model
        with torch.no_grad():
            h = self.h
            h_prevs, dphis, hs = [], [], []
            w_hh = m.effective_weight_hh()
            for x in xs:
                a = F.linear(x, m.weight_ih, m.bias) + h @ w_hh.T
                h_prevs.append(h)
                dphis.append(m.dphi(a))
                h = (1 - m.alpha) * h + m.alpha * m.phi(a)
                hs.append(h)
            t = xs.shape[0]
            stack = lambda seq: torch.stack(seq) if seq else xs.new_zeros(0, xs.shape[1], m.hidden_size)  # noqa: E731
            h_prevs, dphis, hs = stack(h_prevs), stack(dphis), stack(hs)
        hs_req = hs.detach().requires_grad_()
        ys = m.readout(hs_req)
        ys.retain_grad()
        total = ys.new_zeros(())
        if targets is not None:
            for s in range(t):
                if loss_mask is None or bool(loss_mask[s]):
                    total = total + self._step_loss(ys[s], targets[s])
        if total.requires_grad:
            total.backward()
            dldh, dldy = hs_req.grad, ys.grad
        else:
            dldh, dldy = torch.zeros_like(hs), torch.zeros_like(ys)
        self._learn(xs, h_prevs, dphis, dldh, dldy, **kwargs)
        # A fresh copy, not a view into hs: BLAS results can depend on the
        # alignment of their operands, and a resumed run starts from a copy.
        self.h = hs[-1].detach().clone() if t else self.h
        self._average_gradients()
        return total.detach()

    def _average_gradients(self) -> None:
        """Mean of .grad over the ranks (nothing without a process group)."""
        average_gradients(self.model.parameters(), group=self.process_group)

    def _learn(self, xs, h_prevs, dphis, dldh, dldy, **kwargs) -> None:
        raise NotImplementedError

    # helpers for the rules
    def _theta_cols(self) -> int:
        return self.model.input_size + self.model.hidden_size + 1
