"""Real-Time Recurrent Learning (Williams & Zipser 1989)."""

from __future__ import annotations

from localgrad import ops
from localgrad.online.learner import OnlineLearner


class RTRL(OnlineLearner):
    """Exact online gradient: carries the full influence M_t = ∂h_t/∂θ,

        M_t = (1 − α) M_{t−1} + α D_t (W_hh M_{t−1} + Ī_t),   D_t = diag φ'(a_t),

    and adds (∂loss_t/∂h_t) M_t to θ's gradient at every step. M is
    (batch, H, H·(I + H + 1)): O(H³) memory and O(H⁴) time per step."""

    def _reset_sensitivities(self, batch_size):
        m = self.model
        self.influence = m.weight_ih.new_zeros(batch_size, m.hidden_size, m.hidden_size * self._theta_cols())

    def _sensitivity_state(self):
        return {"influence": self.influence.clone()}

    def _load_sensitivity_state(self, state):
        self.influence = state["influence"].clone()

    def _learn(self, xs, h_prevs, dphis, dldh, dldy):
        m = self.model
        w = m.effective_weight_hh().detach()
        grad = None
        for t in range(xs.shape[0]):
            self.influence = ops.rtrl_step(self.influence, w, h_prevs[t], xs[t], dphis[t], m.recurrent_mask, m.alpha)
            g = (dldh[t].unsqueeze(1) @ self.influence).sum(0)
            grad = g if grad is None else grad + g
        if grad is not None:
            m.theta_grad_to_params(grad.view(m.hidden_size, self._theta_cols()))
