"""rflo_chunk: RFLO / rate e-prop eligibility traces and the weight-update
accumulation over a whole chunk of time steps in one call (schema:
csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, register_fake, register_missing_cuda


def rflo_chunk(trace, xs, h_prevs, dphis, signals, hh_mask, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """P_t = (1 − α) P_{t−1} + α φ'(a_t) v_t;  grad = Σ_t Σ_b L_t,b,i P_t,b[i, :].

    trace: (batch, H, C); xs: (T, batch, I); h_prevs, dphis, signals: (T, batch, H);
    hh_mask: (H, H) or None. Returns (trace after the chunk, grad (H, C))."""
    if (lib := compiled_ops()) is not None:
        return lib.rflo_chunk(trace, xs, h_prevs, dphis, signals, hh_mask, float(alpha))
    fall_back("rflo_chunk", trace)
    return reference.online_rnn.rflo_chunk(trace, xs, h_prevs, dphis, signals, hh_mask, alpha)


if has_extension():

    @register_fake("rflo_chunk")
    def _rflo_chunk_fake(trace, xs, h_prevs, dphis, signals, hh_mask, alpha):
        return trace.new_empty(trace.shape), trace.new_empty(trace.shape[1:])

    register_missing_cuda("rflo_chunk")
