"""uoro_step: one UORO update of the rank-one influence estimate (schema:
csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import math

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import _check_alpha, _check_step, register_checked_fake, register_missing_cuda, run_op
from localgrad._checks import as_float


def uoro_step(s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, alpha: float,
              eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """(s̃, θ̃) ← (ρ0 J s̃ + ρ1 ν, θ̃/ρ0 + νᵀ(∂F/∂θ)/ρ1) per batch element
    (localgrad.reference.online_rnn.uoro_step). s_tilde, nu, h_prev, dphi:
    (batch, H); theta_tilde: (batch, H, C); weight_hh: (H, H), masked."""
    args = (s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, as_float(alpha, "uoro_step", "alpha"),
            as_float(eps, "uoro_step", "eps", positive=True))
    return run_op("uoro_step", s_tilde, reference.online_rnn.uoro_step, args)


def _check(spec, s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, alpha, eps):
    _check_step(spec, h_prev, x, dphi, hh_mask, weight_hh)
    B, H, I = (spec.size[k] for k in "BHI")
    spec.tensor(s_tilde, "s_tilde", (B, H), like=(h_prev, "h_prev"))
    spec.tensor(nu, "nu", (B, H), like=(h_prev, "h_prev"))
    spec.tensor(theta_tilde, "theta_tilde", (B, H, I + H + 1), like=(h_prev, "h_prev"))
    if not (eps > 0 and math.isfinite(eps)):
        spec.fail(f"eps must be positive and finite, got {eps}")
    _check_alpha(spec, alpha)


if has_extension():
    register_checked_fake(
        "uoro_step", _check,
        lambda s_tilde, theta_tilde, *args: (s_tilde.new_empty(s_tilde.shape), theta_tilde.new_empty(theta_tilde.shape)),
    )
    register_missing_cuda("uoro_step")
