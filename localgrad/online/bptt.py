"""Backpropagation through time: the baseline the online rules approximate."""

from __future__ import annotations

import torch

from localgrad.online.learner import OnlineLearner


class BPTT(OnlineLearner):
    """Autograd through the unrolled network. The graph is kept across run()
    chunks (exact gradient of Σ_t loss_t; memory grows with t) unless
    `truncation` = k, which cuts it every k steps (truncated BPTT). Each run()
    backpropagates that chunk's losses. state_dict holds the hidden state only:
    a resumed run starts a new graph (as truncation at the resume point)."""

    def __init__(self, model, truncation: int | None = None, loss: str = "mse"):
        super().__init__(model, loss)
        if truncation is not None and truncation < 1:
            raise ValueError(f"BPTT: truncation must be None or >= 1, got {truncation}")
        self.truncation = truncation
        self._steps = 0

    def reset(self, batch_size):
        super().reset(batch_size)
        self._steps = 0

    def state_dict(self):
        return {"h": None if self.h is None else self.h.detach().clone(), "steps": self._steps}

    def load_state_dict(self, state):
        self.h = None if state["h"] is None else state["h"].clone()
        self._steps = state.get("steps", 0)

    def run(self, xs, targets=None, loss_mask=None):
        self._check(xs, targets, loss_mask)
        m = self.model
        h = self.h
        total = xs.new_zeros(())
        for s, x in enumerate(xs):
            if self.truncation is not None and self._steps % self.truncation == 0:
                h = h.detach()
            h, _ = m.cell(x, h)
            self._steps += 1
            if targets is not None and (loss_mask is None or bool(loss_mask[s])):
                total = total + self._step_loss(m.readout(h), targets[s])
        if total.requires_grad:
            total.backward(retain_graph=True)
        self.h = h
        self._average_gradients()
        return total.detach()
