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
        self.influence = rtrl_chunk(self.model, self.influence, xs, h_prevs, dphis, dldh)


def rtrl_chunk(model, influence, xs, h_prevs, dphis, dldh):
    """The RTRL update of a chunk: M_t for every step from influence
    (batch, H, H·C), adding Σ_t (∂loss_t/∂h_t) M_t into θ's gradient.
    Returns M after the last step (RTRL's, and a full-pattern SnAp's)."""
    w = model.effective_weight_hh().detach()
    grad = None
    for t in range(xs.shape[0]):
        influence = ops.rtrl_step(influence, w, h_prevs[t], xs[t], dphis[t], model.recurrent_mask, model.alpha)
        g = (dldh[t].unsqueeze(1) @ influence).sum(0)
        grad = g if grad is None else grad + g
    if grad is not None:
        model.theta_grad_to_params(grad.view(model.hidden_size, -1))
    return influence
