"""Kronecker-factored RTRL (Mujika, Meier & Steger 2018) and its rank-r
optimal Kronecker-sum version (Benzing et al. 2019)."""

from __future__ import annotations

import torch

from localgrad import ops
from localgrad.distributed import shard_offset
from localgrad._checks import as_float, as_int
from localgrad.online.learner import OnlineLearner
from localgrad.reference import online_rnn


class KFRTRL(OnlineLearner):
    """Unbiased estimate ∂h_t/∂θ ≈ Σ_{j<r} u_j ⊗ A_j per batch element, u_j over
    [x_t | h_{t−1} | 1] and A_j (H, H) (see
    localgrad.reference.online_rnn.kfrtrl_step): rank=1 is Mujika et al.'s
    KF-RTRL, rank ≥ 2 Benzing et al.'s optimal Kronecker-sum approximation
    (OK). Per step r + 1 random signs per sample, drawn from the learner's
    own generator, saved in state_dict. The gradient estimate of step t is
    Σ_j (A_jᵀ ∂loss_t/∂h_t) u_jᵀ. Memory O(r (H² + H + I)) per sample,
    time O(r H³) per step (rank ≥ 2 adds QR and SVD of (H², r+1) matrices).

    Data-parallel: as UORO, every rank draws the signs of the whole union
    batch and uses its own samples' rows, so the ranks together compute the
    single-process estimate of the union batch. Each step is one call of
    localgrad.ops.kfrtrl_step (fused at rank 1; at rank ≥ 2 the fused op
    writes the r + 1 terms and the QR/SVD reduction runs in ATen)."""

    replicated = ("generator",)

    def __init__(self, model, rank: int = 1, seed: int = 0, eps: float = 1e-7, loss: str = "mse"):
        super().__init__(model, loss)
        self.rank = as_int(rank, "KFRTRL", "rank", minimum=1)
        self.eps = as_float(eps, "KFRTRL", "eps", positive=True)
        seed = as_int(seed, "KFRTRL", "seed")
        self.generator = torch.Generator(device=model.weight_ih.device).manual_seed(seed)
        self._shard: tuple[int, int, int] | None = None  # (batch, first sample, union batch)

    def _reset_sensitivities(self, batch_size):
        m = self.model
        self._shard = None
        self.u = m.weight_ih.new_zeros(batch_size, self.rank, self._theta_cols())
        self.A = m.weight_ih.new_zeros(batch_size, self.rank, m.hidden_size, m.hidden_size)

    def _sensitivity_state(self):
        return {"u": self.u.clone(), "A": self.A.clone(), "rng_state": self.generator.get_state()}

    def _load_sensitivity_state(self, state):
        self.u = state["u"].clone()
        self.A = state["A"].clone()
        if self.u.shape[1] != self.rank:
            raise ValueError(f"KFRTRL.load_state_dict: the state has rank {self.u.shape[1]}, "
                             f"this learner rank {self.rank}")
        self.generator.set_state(state["rng_state"])

    @torch.no_grad()
    def _learn(self, xs, h_prevs, dphis, dldh, dldy):
        m = self.model
        w = m.effective_weight_hh().detach()
        grad = None
        batch = self.u.shape[0]
        if self._shard is None or self._shard[0] != batch:
            self._shard = (batch, *shard_offset(batch, self.process_group))
        _, first, union = self._shard
        for t in range(xs.shape[0]):
            signs = torch.randint(0, 2, (union, self.rank + 1), generator=self.generator, device=w.device)
            signs = (2 * signs[first:first + batch] - 1).to(w.dtype)
            # check_signs=False: drawn just above, ±1 by construction (saves a sync on CUDA).
            self.u, self.A = ops.kfrtrl_step(self.u, self.A, w, signs, h_prevs[t], xs[t], dphis[t], m.alpha,
                                             self.eps, check_signs=False)
            g = online_rnn.kfrtrl_gradient(dldh[t], self.u, self.A)
            grad = g if grad is None else grad + g
        if grad is not None:
            m.theta_grad_to_params(grad)
