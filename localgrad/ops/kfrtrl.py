"""kfrtrl_step: one KF-RTRL update of the Kronecker-factored influence
estimate Σ_j u_j ⊗ A_j (schema: csrc/registration.cpp), and its fake kernel."""

from __future__ import annotations

import math

import torch

from localgrad import reference
from localgrad._extension import has_extension
from localgrad.ops._common import (_check_alpha, _check_step, compiled_ops, fall_back, register_checked_fake,
                                   register_missing_cuda)
from localgrad._checks import as_bool, as_float


def kfrtrl_step(u, A, weight_hh, signs, h_prev, x, dphi, alpha: float, eps: float = 1e-7,
                check_signs: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, A) after one step (localgrad.reference.online_rnn.kfrtrl_step):
    u: (batch, r, C), C = I + H + 1; A: (batch, r, H, H); weight_hh: (H, H),
    the effective (masked) W_hh; signs: (batch, r + 1) ±1; h_prev, dphi:
    (batch, H); x: (batch, I). Returns the new (u, A), same shapes.

    Rank 1 (Mujika et al. 2018) is one fused op: W_hh A by ATen matmul (cuBLAS
    on CUDA), then one pass for J A, the norms, ρ0, ρ1 and the signed
    update. Rank r ≥ 2 (Benzing et al. 2019): the op writes the r + 1
    unreduced terms [u | v], [J A | α D] in one pass, and the optimal
    rank-r reduction (QR, SVD) runs in ATen (reference ok_reduce).
    check_signs=False skips the check that signs are ±1 (one device sync on
    CUDA), for callers that drew them themselves."""
    op = "kfrtrl_step"
    scalars = (as_float(alpha, op, "alpha"), as_float(eps, op, "eps", positive=True))
    check_signs = as_bool(check_signs, op, "check_signs")
    if (lib := compiled_ops()) is not None:
        u_out, a_out = lib.kfrtrl_step(u, A, weight_hh, signs, h_prev, x, dphi, *scalars, check_signs)
        rank = u.shape[1]
        if rank == 1:
            return u_out, a_out
        us = u_out.transpose(1, 2)  # (batch, C, r+1)
        vs = a_out.flatten(2).transpose(1, 2)  # (batch, H², r+1)
        return reference.online_rnn.ok_reduce(us, vs, signs, rank, tuple(A.shape[2:]))
    fall_back(op, u)
    return reference.online_rnn.kfrtrl_step(u, A, weight_hh, signs, h_prev, x, dphi, *scalars)


def _check(spec, u, A, weight_hh, signs, h_prev, x, dphi, alpha, eps, check_signs=True):
    _check_alpha(spec, alpha)
    if not (eps > 0 and math.isfinite(eps)):
        spec.fail(f"eps must be positive and finite, got {eps}")
    _check_step(spec, h_prev, x, dphi, None, weight_hh)
    B, H, I = (spec.size[k] for k in "BHI")
    spec.tensor(u, "u", (B, None, I + H + 1), like=(h_prev, "h_prev"))
    if u.shape[1] < 1:
        spec.fail(f"u must hold at least one factor (rank >= 1), got shape {tuple(u.shape)}")
    r = u.shape[1]
    spec.tensor(A, "A", (B, r, H, H), like=(h_prev, "h_prev"))
    spec.tensor(signs, "signs", (B, r + 1), like=(h_prev, "h_prev"))


def _outputs(u, A, *args, **kwargs):
    batch, rank = u.shape[0], u.shape[1]
    terms = 1 if rank == 1 else rank + 1
    return u.new_empty(batch, terms, u.shape[2]), A.new_empty(batch, terms, A.shape[2], A.shape[3])


if has_extension():
    register_checked_fake("kfrtrl_step", _check, _outputs)
    register_missing_cuda("kfrtrl_step")
