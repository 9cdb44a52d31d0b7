"""e-prop (Bellec et al. 2020) for the leaky rate RNN."""

from __future__ import annotations

from localgrad.online.rflo import TraceLearner


class EProp(TraceLearner):
    """e-prop for rate units. Bellec 2020 eq. 1 factorises the exact gradient

        dE/dW_ij = Σ_t (dE/dz_t,j) e_t,ij,   e_t = ∂z_t/∂s_t · ε_t,
        ε_t = ∂s_t/∂s_{t−1} ε_{t−1} + ∂s_t/∂W_ij,

    with s the unit's internal state and z its output. For the leaky rate unit
    s = z = h and the internal path s_{t−1} → s_t is the leak alone (the
    recurrent weights act through z), so

        e_t,ij = (1 − α) e_{t−1,ij} + α φ'(a_t,i) v_t,j,

    the same trace as RFLO (Murray 2019). e-prop replaces the total derivative
    dE/dz_t by the learning signal L_t = B ε_t through the readout: symmetric
    (B = readout.weightᵀ, default) or fixed random. The two rules differ only
    by their default feedback.

    Given a spiking model (localgrad.online.LIF or ALIF), EProp(model, ...)
    returns a SpikingEProp instead: the same rule with the LIF/ALIF
    eligibility traces of Bellec 2020, fused in one op (eprop_lif_chunk)."""

    def __new__(cls, model=None, feedback: str = "symmetric", seed: int = 0, loss: str = "mse", **kwargs):
        from localgrad.online.lif import LIF

        if isinstance(model, LIF):
            from localgrad.online.eprop_spiking import SpikingEProp

            return SpikingEProp(model, feedback=feedback, loss=loss, seed=seed, **kwargs)
        return super().__new__(cls)

    def __init__(self, model, feedback: str = "symmetric", seed: int = 0, loss: str = "mse"):
        super().__init__(model, feedback, seed, loss)
