"""rflo_chunk: RFLO / rate e-prop eligibility traces and the weight-update
accumulation over a whole chunk of time steps in one call (schema:
csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import _check_alpha, REALS, register_checked_fake, register_missing_cuda, run_op
from localgrad._checks import as_float


def rflo_chunk(trace, xs, h_prevs, dphis, signals, hh_mask, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """P_t = (1 − α) P_{t−1} + α φ'(a_t) v_t;  grad = Σ_t Σ_b L_t,b,i P_t,b[i, :].

    trace: (batch, H, C); xs: (T, batch, I); h_prevs, dphis, signals: (T, batch, H);
    hh_mask: (H, H) or None. Returns (trace after the chunk, grad (H, C))."""
    args = (trace, xs, h_prevs, dphis, signals, hh_mask, as_float(alpha, "rflo_chunk", "alpha"))
    return run_op("rflo_chunk", trace, reference.online_rnn.rflo_chunk, args)


def _check(spec, trace, xs, h_prevs, dphis, signals, hh_mask, alpha):
    spec.tensor(h_prevs, "h_prevs", ("T", "B", "H"), floating=REALS)
    spec.tensor(xs, "xs", ("T", "B", "I"), like=(h_prevs, "h_prevs"))
    spec.tensor(dphis, "dphis", ("T", "B", "H"), like=(h_prevs, "h_prevs"))
    spec.tensor(signals, "signals", ("T", "B", "H"), like=(h_prevs, "h_prevs"))
    B, H, I = (spec.size[k] for k in "BHI")
    spec.tensor(trace, "trace", (B, H, I + H + 1), like=(h_prevs, "h_prevs"))
    if hh_mask is not None:
        spec.tensor(hh_mask, "hh_mask", (H, H), like=(h_prevs, "h_prevs"))
    _check_alpha(spec, alpha)


if has_extension():
    register_checked_fake(
        "rflo_chunk", _check, lambda trace, *args: (trace.new_empty(trace.shape), trace.new_empty(trace.shape[1:]))
    )
    register_missing_cuda("rflo_chunk")
