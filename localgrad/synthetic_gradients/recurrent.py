"""RecurrentDNI: truncated BPTT on the online family's LeakyRNN with a
synthetic gradient at every truncation boundary (Jaderberg et al. 2017,
sec. 2.1 and 3.1; the maths in localgrad.reference.synthetic_gradients).

    learner = RecurrentDNI(model, loss="ce")
    optimizer = torch.optim.Adam([*model.parameters(), *learner.sg_parameters()])
    learner.reset(batch)
    for xs, ys in chunks:                      # each run() is one truncation window
        optimizer.zero_grad(); learner.run(xs, ys); optimizer.step()
"""

from __future__ import annotations

import torch

from localgrad.distributed import average_gradients
from localgrad.learner import add_to_grad
from localgrad._checks import as_bool, as_int
from localgrad.online.learner import OnlineLearner
from localgrad.reference import synthetic_gradients as ref
from localgrad.synthetic_gradients.modules import SyntheticGradient


class RecurrentDNI(OnlineLearner):
    """Truncated BPTT whose windows are the run() chunks, each ended by the
    synthetic gradient ĝ = M(h_T) of the losses beyond it.

    Every run(xs, targets) backpropagates Σ_t loss_t of the chunk plus
    (ĝ/B)·h_T (B the batch: M predicts per-sample gradients) through the
    chunk, adds that gradient into the RNN's .grad, and trains M at the
    chunk's start h_0 (when an earlier chunk ended there) by regression onto
    the bootstrapped target B·∂(the same objective)/∂h_0, writing M's
    gradient into `sg_parameters()`' .grad. `final=True` marks the chunk
    that ends the sequence (no synthetic gradient after it);
    `future_grad=` (batch, H), if given, replaces ĝ/B at the chunk's end
    (the oracle: with the true ∂(future losses)/∂h_T the chunks' sum is full
    BPTT). With M at its zero start this is plain truncated BPTT.

    sg_hidden: hidden ReLU widths of M (() = linear, the default).
    state_dict: hidden state, whether h_0 is a boundary, and M's parameters.
    """

    replicated = ("synthesizer",)

    def __init__(self, model, loss: str = "mse", sg_hidden=()):
        super().__init__(model, loss)
        if isinstance(sg_hidden, (str, bytes)) or not hasattr(sg_hidden, "__iter__"):
            raise TypeError(f"RecurrentDNI: sg_hidden must be a sequence of widths, got {sg_hidden!r}")
        self.sg_hidden = tuple(as_int(w, "RecurrentDNI", "sg_hidden", minimum=1) for w in sg_hidden)
        w = model.weight_ih
        self.synthesizer = SyntheticGradient((model.hidden_size,), 0, self.sg_hidden, dtype=w.dtype, device=w.device)
        self._boundary = False  # h is the end of an earlier chunk of this sequence

    def sg_parameters(self):
        """M's parameters (for the optimizer)."""
        return self.synthesizer.parameters()

    def _reset_sensitivities(self, batch_size: int) -> None:
        self._boundary = False

    def state_dict(self) -> dict:
        return {"h": None if self.h is None else self.h.clone(), "boundary": self._boundary,
                "synthesizer": self.synthesizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.h = None if state["h"] is None else state["h"].clone()
        self._boundary = bool(state.get("boundary", False))
        self.synthesizer.load_state_dict(state["synthesizer"])

    def _step_loss(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if y.shape[0] == 0:  # an empty batch: no loss (a mean over no samples would be NaN)
            return y.sum()
        return super()._step_loss(y, target)

    def _average_gradients(self) -> None:
        average_gradients([*self.model.parameters(), *self.synthesizer.parameters()], group=self.process_group)

    def run(self, xs: torch.Tensor, targets: torch.Tensor | None = None, loss_mask: torch.Tensor | None = None,
            future_grad: torch.Tensor | None = None, final: bool = False) -> torch.Tensor:
        self._check(xs, targets, loss_mask)
        final = as_bool(final, "RecurrentDNI", "final")
        m = self.model
        batch = self.h.shape[0]
        n = max(batch, 1)
        if future_grad is not None:
            if not isinstance(future_grad, torch.Tensor) or tuple(future_grad.shape) != tuple(self.h.shape):
                raise ValueError(f"RecurrentDNI: future_grad must be a tensor of shape {tuple(self.h.shape)} "
                                 f"(batch, hidden), got {getattr(future_grad, 'shape', type(future_grad).__name__)}")
            if final:
                raise ValueError("RecurrentDNI: future_grad and final=True exclude each other (nothing follows "
                                 "the final chunk)")
        params = [p for p in m.parameters() if p.requires_grad]
        with torch.enable_grad():
            h0 = self.h.detach().requires_grad_(True)
            h = h0
            total = xs.new_zeros(())
            for s, x in enumerate(xs):
                h, _ = m.cell(x, h)
                if targets is not None and (loss_mask is None or bool(loss_mask[s])):
                    total = total + self._step_loss(m.readout(h), targets[s])
            if future_grad is not None:
                end = future_grad.detach().to(h.dtype)
            elif final:
                end = None
            else:
                end = self.synthesizer(h.detach()).detach() / n
            objective = total if end is None else total + (h * end).sum()
            if objective.requires_grad:
                grads = torch.autograd.grad(objective, [h0, *params], allow_unused=True)
            else:  # no loss in the chunk and nothing after it
                grads = [None] * (1 + len(params))
        delta0 = torch.zeros_like(h0) if grads[0] is None else grads[0]
        for p, g in zip(params, grads[1:]):
            add_to_grad(p, torch.zeros_like(p) if g is None else g)
        sg_params = [p for p in self.synthesizer.parameters() if p.requires_grad]
        if sg_params:
            if self._boundary:
                with torch.enable_grad():
                    sg_loss = ref.regression_loss(self.synthesizer(self.h.detach()), n * delta0)
                    sg_grads = torch.autograd.grad(sg_loss, sg_params)
            else:  # the start of the sequence: no chunk before it used M here
                sg_grads = [torch.zeros_like(p) for p in sg_params]
            for p, g in zip(sg_params, sg_grads):
                add_to_grad(p, g)
        if xs.shape[0]:
            self.h = h.detach().clone()
            self._boundary = not final
        self._average_gradients()
        return total.detach()
