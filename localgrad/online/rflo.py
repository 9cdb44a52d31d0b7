"""Random-feedback local online learning (Murray 2019)."""

from __future__ import annotations

import torch

from localgrad import ops
from localgrad.online.learner import OnlineLearner

FEEDBACKS = ("symmetric", "random")


class TraceLearner(OnlineLearner):
    """Eligibility traces P (batch, H, I + H + 1) of the leaky unit,

        P_t[i, c] = (1 − α) P_{t−1}[i, c] + α φ'(a_t,i) v_t,i,c,

    and the update Σ_t L_t,i P_t[i, c] with the learning signal L_t = B ε_t,
    ε_t = ∂loss_t/∂y_t the output error: B = readoutᵀ ("symmetric") or a fixed
    random (O, H) matrix ("random", seeded; saved in state_dict). The traces
    and the accumulation of a whole chunk run in one fused call (rflo_chunk)."""

    replicated = ("feedback_matrix",)

    def __init__(self, model, feedback: str, seed: int = 0, loss: str = "mse"):
        super().__init__(model, loss)
        if feedback not in FEEDBACKS:
            raise ValueError(f"{type(self).__name__}: feedback must be one of {FEEDBACKS}, got {feedback!r}")
        self.feedback = feedback
        w = model.readout.weight
        g = torch.Generator().manual_seed(seed)
        b = torch.randn(model.output_size, model.hidden_size, generator=g, dtype=torch.float64)
        self.feedback_matrix = (b / model.hidden_size ** 0.5).to(w.dtype).to(w.device)

    def _reset_sensitivities(self, batch_size):
        self.trace = self.model.weight_ih.new_zeros(batch_size, self.model.hidden_size, self._theta_cols())

    def _sensitivity_state(self):
        return {"trace": self.trace.clone(), "feedback_matrix": self.feedback_matrix.clone()}

    def _load_sensitivity_state(self, state):
        self.trace = state["trace"].clone()
        self.feedback_matrix = state["feedback_matrix"].clone()

    def _learn(self, xs, h_prevs, dphis, dldh, dldy, learning_signals=None):
        """learning_signals (T, batch, H), if given, replace the rule's own
        (for analysis: with dE/dz_t from autograd the update is exact BPTT)."""
        m = self.model
        if learning_signals is not None:
            signals = learning_signals
        elif self.feedback == "symmetric":
            signals = dldh  # autograd's ∂loss/∂y_t · readout.weight
        else:
            signals = dldy @ self.feedback_matrix
        self.trace, grad = ops.rflo_chunk(self.trace, xs, h_prevs, dphis, signals.contiguous(), m.recurrent_mask,
                                          m.alpha)
        if xs.shape[0]:
            m.theta_grad_to_params(grad)


class RFLO(TraceLearner):
    """RFLO (Murray 2019, eqs. 12-14): eligibility traces with the learning
    signal sent back through fixed random feedback by default."""

    def __init__(self, model, feedback: str = "random", seed: int = 0, loss: str = "mse"):
        super().__init__(model, feedback, seed, loss)
