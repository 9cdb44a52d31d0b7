"""Online learning of a leaky rate RNN: the forward-mode sensitivity updates of
RTRL, SnAp-n, RFLO / rate e-prop and UORO, written from the papers' equations.

The network (localgrad.online.LeakyRNN):

    a_t = W_ih x_t + (W_hh ⊙ mask) h_{t-1} + b
    h_t = (1 − α) h_{t−1} + α φ(a_t)

Parameters are laid out per hidden unit i as one row of C = I + H + 1 columns,
[W_ih[i, :] | W_hh[i, :] | b_i], so θ is an (H, C) matrix. The immediate
Jacobian ∂a_t,i/∂θ_(i,c) is the row's input v_t,i,c = [x_t | mask_i ⊙ h_{t−1} | 1]
and zero for every other unit; all updates below use it.

Shapes: x: (batch, I); h_prev, dphi (= φ'(a_t)): (batch, H);
hh_mask: (H, H) or None; influence M: (batch, H, H·C) for RTRL.
"""

from __future__ import annotations

import torch


def row_inputs(x: torch.Tensor, h_prev: torch.Tensor, hh_mask: torch.Tensor | None) -> torch.Tensor:
    """v: (batch, H, C), v[b, i] = [x_b | mask_i ⊙ h_prev_b | 1], the immediate
    Jacobian of a_i with respect to row i of θ."""
    batch, hidden = h_prev.shape
    hh = h_prev.unsqueeze(1).expand(batch, hidden, hidden)
    if hh_mask is not None:
        hh = hh * hh_mask
    xs = x.unsqueeze(1).expand(batch, hidden, x.shape[1])
    ones = h_prev.new_ones(batch, hidden, 1)
    return torch.cat([xs, hh, ones], dim=2)


def rtrl_step(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha):
    """Real-Time Recurrent Learning (Williams & Zipser 1989, eq. for p^k_ij),
    for the leaky unit:

        M_t = (1 − α) M_{t−1} + α D_t (W_hh M_{t−1} + Ī_t),   D_t = diag φ'(a_t)

    influence M: (batch, H, H·C), column (i, c) = row-major over θ's (H, C);
    weight_hh: the effective (masked) recurrent matrix. Returns M_t."""
    batch, hidden = h_prev.shape
    cols = x.shape[1] + hidden + 1
    propagated = torch.matmul(weight_hh, influence)
    immediate = torch.zeros_like(influence).view(batch, hidden, hidden, cols)
    idx = torch.arange(hidden, device=x.device)
    immediate[:, idx, idx, :] = row_inputs(x, h_prev, hh_mask)
    immediate = immediate.view(batch, hidden, hidden * cols)
    return (1 - alpha) * influence + alpha * dphi.unsqueeze(2) * (propagated + immediate)


def rtrl_gradient(dloss_dh: torch.Tensor, influence: torch.Tensor) -> torch.Tensor:
    """Σ_b (∂loss/∂h_t)_b M_t,b: the (H·C,) gradient contribution of one step."""
    return torch.einsum("bk,bkp->p", dloss_dh, influence)


def snap_step(influence, weight_hh, h_prev, x, dphi, hh_mask, alpha, entry_unit, entry_row, nbr_ptr, nbr_entry, nbr_weight):
    """SnAp-n (Menick et al. 2021, sec. 3): the RTRL update of M restricted to a
    fixed sparsity pattern. Stored entries e = (unit k, parameter row i), each
    holding all C columns of row i: influence (batch, E, C). For entry e the
    propagation term Σ_l W_kl M[l, i, :] runs over the kept entries (l, i):
    nbr_entry[nbr_ptr[e]:nbr_ptr[e+1]] with flat weight indices nbr_weight
    (k·H + l). Entries outside the pattern are dropped (taken as zero):

        M_t[k,i,:] = (1 − α) M[k,i,:] + α φ'_k (Σ_l W_kl M[l,i,:] + δ_ki v_i)
    """
    batch = h_prev.shape[0]
    n_entries = entry_unit.shape[0]
    v = row_inputs(x, h_prev, hh_mask)
    counts = nbr_ptr[1:] - nbr_ptr[:-1]
    owner = torch.repeat_interleave(torch.arange(n_entries, device=x.device), counts)
    weights = weight_hh.reshape(-1)[nbr_weight]
    contrib = weights.view(1, -1, 1) * influence[:, nbr_entry, :]
    propagated = influence.new_zeros(batch, n_entries, influence.shape[2])
    propagated.index_add_(1, owner, contrib)
    own = (entry_unit == entry_row).to(influence.dtype).view(1, -1, 1)
    immediate = own * v[:, entry_row, :]
    d = dphi[:, entry_unit].unsqueeze(2)
    return (1 - alpha) * influence + alpha * d * (propagated + immediate)


def snap_gradient(dloss_dh, influence, entry_unit, entry_row, hidden):
    """Σ_b Σ_k (∂loss/∂h_t)_k M[k, i, :] gathered per parameter row i: (H, C)."""
    per_entry = torch.einsum("be,bec->ec", dloss_dh[:, entry_unit], influence)
    grad = influence.new_zeros(hidden, influence.shape[2])
    grad.index_add_(0, entry_row, per_entry)
    return grad


def rflo_chunk(trace, xs, h_prevs, dphis, signals, hh_mask, alpha):
    """Random-feedback local online learning (Murray 2019, eqs. 12-14) over a
    chunk of T steps; for this network also e-prop's eligibility trace
    (Bellec et al. 2020, eq. 1 with ε the unit's own leak):

        P_t[i, c] = (1 − α) P_{t−1}[i, c] + α φ'(a_t,i) v_t,i,c
        grad[i, c] = Σ_t Σ_b L_t,b,i P_t,b[i, c]

    trace P: (batch, H, C); xs: (T, batch, I); h_prevs, dphis, signals
    (learning signals L): (T, batch, H). Returns (P_T, grad)."""
    grad = trace.new_zeros(trace.shape[1], trace.shape[2])
    for t in range(xs.shape[0]):
        v = row_inputs(xs[t], h_prevs[t], hh_mask)
        trace = (1 - alpha) * trace + alpha * dphis[t].unsqueeze(2) * v
        grad = grad + torch.einsum("bi,bic->ic", signals[t], trace)
    return trace, grad


def uoro_step(s_tilde, theta_tilde, weight_hh, nu, h_prev, x, dphi, hh_mask, alpha, eps):
    """Unbiased Online Recurrent Optimization (Tallec & Ollivier 2017, alg. 1),
    one step per batch element. With F the transition h_{t−1} ↦ h_t:

        J s̃ = (1 − α) s̃ + α φ' ⊙ (W_hh s̃)          (forward-mode product)
        δθ = νᵀ ∂F/∂θ,  row i: α ν_i φ'_i v_i
        ρ0 = √((‖θ̃‖ + ε)/(‖J s̃‖ + ε)),  ρ1 = √((‖δθ‖ + ε)/(‖ν‖ + ε))
        s̃ ← ρ0 J s̃ + ρ1 ν,   θ̃ ← θ̃/ρ0 + δθ/ρ1

    s_tilde, nu: (batch, H); theta_tilde: (batch, H, C). Returns (s̃, θ̃).
    E[s̃ θ̃ᵀ] = ∂h_t/∂θ because ν has independent random signs."""
    js = (1 - alpha) * s_tilde + alpha * dphi * (s_tilde @ weight_hh.T)
    dtheta = alpha * (nu * dphi).unsqueeze(2) * row_inputs(x, h_prev, hh_mask)
    norm = lambda t: t.flatten(1).norm(dim=1)  # noqa: E731
    rho0 = ((norm(theta_tilde) + eps) / (norm(js) + eps)).sqrt()
    rho1 = ((norm(dtheta) + eps) / (norm(nu) + eps)).sqrt()
    s_new = rho0.unsqueeze(1) * js + rho1.unsqueeze(1) * nu
    theta_new = theta_tilde / rho0.view(-1, 1, 1) + dtheta / rho1.view(-1, 1, 1)
    return s_new, theta_new
