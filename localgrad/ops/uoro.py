"""uoro_step: one UORO update of the rank-one influence estimate (schema:
csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import compiled_ops, fall_back, register_fake, register_missing_cuda


def uoro_step(s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, alpha: float,
              eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """(s̃, θ̃) ← (ρ0 J s̃ + ρ1 ν, θ̃/ρ0 + νᵀ(∂F/∂θ)/ρ1) per batch element
    (localgrad.reference.online_rnn.uoro_step). s_tilde, nu, h_prev, dphi:
    (batch, H); theta_tilde: (batch, H, C); weight_hh: (H, H), masked."""
    args = (s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, float(alpha), float(eps))
    if (lib := compiled_ops()) is not None:
        return lib.uoro_step(*args)
    fall_back("uoro_step", s_tilde)
    return reference.online_rnn.uoro_step(*args)


if has_extension():

    @register_fake("uoro_step")
    def _uoro_step_fake(s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, alpha, eps):
        return s_tilde.new_empty(s_tilde.shape), theta_tilde.new_empty(theta_tilde.shape)

    register_missing_cuda("uoro_step")
