"""Unbiased Online Recurrent Optimization (Tallec & Ollivier 2017)."""

from __future__ import annotations

import torch

from localgrad import ops
from localgrad.distributed import shard_offset
from localgrad.online.learner import OnlineLearner


class UORO(OnlineLearner):
    """Rank-one unbiased estimate ∂h_t/∂θ ≈ s̃_t θ̃_tᵀ per batch element
    (algorithm 1 of the paper; see localgrad.reference.online_rnn.uoro_step),
    with random signs ν drawn from the learner's own generator, saved in
    state_dict. The gradient estimate of step t is (∂loss_t/∂h_t · s̃_t) θ̃_t.

    Data-parallel: every rank draws the signs of the whole union batch (its
    generator is the same on all ranks, see broadcast_state) and uses the
    rows of its own samples (rank r holds the union's samples in rank order),
    so the ranks together compute the estimate a single process computes on
    the union batch, the same random signs included."""

    replicated = ("generator",)

    def __init__(self, model, seed: int = 0, eps: float = 1e-7, loss: str = "mse"):
        super().__init__(model, loss)
        self.eps = float(eps)
        self.generator = torch.Generator(device=model.weight_ih.device).manual_seed(seed)
        self._shard: tuple[int, int, int] | None = None  # (batch, first sample, union batch)

    def _reset_sensitivities(self, batch_size):
        m = self.model
        self._shard = None
        self.s_tilde = m.weight_ih.new_zeros(batch_size, m.hidden_size)
        self.theta_tilde = m.weight_ih.new_zeros(batch_size, m.hidden_size, self._theta_cols())

    def _sensitivity_state(self):
        return {"s_tilde": self.s_tilde.clone(), "theta_tilde": self.theta_tilde.clone(),
                "rng_state": self.generator.get_state()}

    def _load_sensitivity_state(self, state):
        self.s_tilde = state["s_tilde"].clone()
        self.theta_tilde = state["theta_tilde"].clone()
        self.generator.set_state(state["rng_state"])

    def _learn(self, xs, h_prevs, dphis, dldh, dldy):
        m = self.model
        w = m.effective_weight_hh().detach()
        grad = None
        batch, hidden = self.s_tilde.shape
        if self._shard is None or self._shard[0] != batch:
            self._shard = (batch, *shard_offset(batch, self.process_group))
        _, first, union = self._shard
        for t in range(xs.shape[0]):
            nu = torch.randint(0, 2, (union, hidden), generator=self.generator, device=w.device)
            nu = (2 * nu[first:first + batch] - 1).to(w.dtype)
            self.s_tilde, self.theta_tilde = ops.uoro_step(self.s_tilde, self.theta_tilde, w, nu, h_prevs[t], xs[t],
                                                           dphis[t], m.recurrent_mask, m.alpha, self.eps)
            scale = (dldh[t] * self.s_tilde).sum(1)
            g = torch.einsum("b,bic->ic", scale, self.theta_tilde)
            grad = g if grad is None else grad + g
        if grad is not None:
            m.theta_grad_to_params(grad)
