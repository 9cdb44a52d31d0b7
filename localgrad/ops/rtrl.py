"""rtrl_step: the RTRL influence update of the leaky RNN (schema:
csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import _check_alpha, _check_step, register_checked_fake, register_missing_cuda, run_op
from localgrad._checks import as_float


def rtrl_step(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha: float) -> torch.Tensor:
    """M_t = (1 − α) M_{t−1} + α φ'(a_t) ⊙ (W_hh M_{t−1} + Ī_t).

    influence: (batch, H, H·C), C = I + H + 1; weight_hh: (H, H), already
    masked; h_prev, dphi: (batch, H); x: (batch, I); hh_mask: (H, H) or None.
    Returns the new influence (W_hh M by BLAS, the rest in one fused pass)."""
    args = (influence, weight_hh, h_prev, x, dphi, hh_mask, as_float(alpha, "rtrl_step", "alpha"))
    return run_op("rtrl_step", influence, reference.online_rnn.rtrl_step, args)


def _check(spec, influence, weight_hh, h_prev, x, dphi, hh_mask, alpha):
    _check_step(spec, h_prev, x, dphi, hh_mask, weight_hh)
    B, H, I = (spec.size[k] for k in "BHI")
    spec.tensor(influence, "influence", (B, H, H * (I + H + 1)), like=(h_prev, "h_prev"))
    _check_alpha(spec, alpha)


if has_extension():
    register_checked_fake("rtrl_step", _check, lambda influence, *args: influence.new_empty(influence.shape))
    register_missing_cuda("rtrl_step")
