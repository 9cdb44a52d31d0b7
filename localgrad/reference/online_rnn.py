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


def kfrtrl_inputs(x: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
    """[x | h_prev | 1]: (batch, C), the vector every row's immediate Jacobian
    shares (without the recurrent mask, see kfrtrl_step)."""
    return torch.cat([x, h_prev, h_prev.new_ones(h_prev.shape[0], 1)], dim=1)


def kfrtrl_step(u, A, weight_hh, signs, h_prev, x, dphi, alpha, eps):
    """Kronecker-factored RTRL, rank r = u.shape[1]: the influence is kept as
    a sum of r Kronecker products per batch element,

        M[k, (i, c)] ≈ Σ_j A_j[k, i] u_j[c]      (M = Σ_j u_j ⊗ A_j),

    u_j over the concatenated input v_t = [x_t | h_{t−1} | 1] (C columns) and
    A_j an H × H factor. The exact update of the sum is r + 1 Kronecker terms,

        M_t = Σ_j u_j ⊗ (J_t A_j) + v_t ⊗ α D_t,
        J_t = (1 − α) I + α D_t W_hh,  D_t = diag φ'(a_t),

    reduced back to r unbiasedly with the random signs (batch, r + 1) ±1:

    r = 1, KF-RTRL (Mujika, Meier & Steger 2018, sec. 4 and Lemma 1):
        u ← s₀ ρ₀ u + s₁ ρ₁ v,   A ← s₀ J A / ρ₀ + s₁ α D / ρ₁,
        ρ₀ = √((‖J A‖ + ε)/(‖u‖ + ε)),  ρ₁ = √((‖α D‖ + ε)/(‖v‖ + ε))
    (Frobenius norms; ρ = √(‖A‖/‖u‖) minimises the variance, ε keeps the
    zero start finite; the cross terms carry s₀s₁ and vanish in the mean).

    r ≥ 2, the optimal Kronecker-sum approximation (Benzing et al. 2019,
    sec. 4, "OK"): with QR factors of U = [u_j] (C × (r+1)) and of
    V = [vec A_j] (H² × (r+1)) and the SVD of R_U R_Vᵀ, the r + 1 terms become
    Σ_j σ_j ũ_j ⊗ Ã_j with orthonormal ũ_j, Ã_j and σ₁ ≥ … ≥ σ_{r+1}. Keep the
    m largest exactly, m the least with σ_{m+1} ≤ s/(r − m), s = Σ_{j>m} σ_j;
    replace diag(σ_{m+1..r+1}) by c (P − ṽṽᵀ), c = s/(r − m), P the projector
    on those coordinates and ṽ_j = s_j √(1 − σ_j / c): rank r − m, equal to
    the diagonal in the mean, and of the least variance, ‖·‖² = s²/(r − m),
    any unbiased rank-r estimate can have. The rank-r factors come from the
    Householder reflection taking ṽ to the last axis.

    With a recurrent mask the unmasked v_t is right: each parameter column of
    M follows its own recursion through the (masked) W_hh, so the columns of
    live weights are the true ones and the learner zeroes the masked weights'
    gradient. u: (batch, r, C); A: (batch, r, H, H); weight_hh: the effective
    (masked) (H, H). Returns (u, A); E[Σ_j u_j ⊗ A_j] is the exact M_t."""
    batch, rank, hidden = A.shape[0], A.shape[1], A.shape[2]
    d = alpha * dphi
    ja = (1 - alpha) * A + alpha * dphi.view(batch, 1, hidden, 1) * torch.matmul(weight_hh, A)
    v = kfrtrl_inputs(x, h_prev)
    a_imm = torch.diag_embed(d)
    if rank == 1:
        norm = lambda t: t.flatten(1).norm(dim=1)  # noqa: E731
        rho0 = ((norm(ja) + eps) / (norm(u) + eps)).sqrt()
        rho1 = ((norm(a_imm) + eps) / (norm(v) + eps)).sqrt()
        s0, s1 = signs[:, 0], signs[:, 1]
        u_new = (s0 * rho0).view(batch, 1, 1) * u + (s1 * rho1).view(batch, 1, 1) * v.unsqueeze(1)
        a_new = (s0 / rho0).view(batch, 1, 1, 1) * ja + (s1 / rho1).view(batch, 1, 1, 1) * a_imm.unsqueeze(1)
        return u_new, a_new
    us, vs = kfrtrl_terms(u, ja, v, a_imm)
    return ok_reduce(us.transpose(1, 2), vs.flatten(2).transpose(1, 2), signs, rank, (hidden, hidden))


def kfrtrl_terms(u, ja, v, a_imm):
    """The r + 1 unreduced Kronecker terms of a step (kfrtrl_step, r ≥ 2):
    [u_0 … u_{r−1} | v] (batch, r+1, C) and [J A_0 … J A_{r−1} | α D]
    (batch, r+1, H, H), what the fused op writes before ok_reduce."""
    return torch.cat([u, v.unsqueeze(1)], dim=1), torch.cat([ja, a_imm.unsqueeze(1)], dim=1)


def ok_reduce(us, vs, signs, rank, a_shape):
    """The optimal unbiased rank-`rank` approximation (Benzing et al. 2019) of
    Σ_j us[:, :, j] ⊗ vs[:, :, j], r + 1 terms: us (batch, C, r+1), vs
    (batch, P, r+1), signs (batch, r+1) ±1. Returns the factors
    (batch, r, C), (batch, r, *a_shape). See kfrtrl_step."""
    batch, terms = us.shape[0], us.shape[2]
    q_u, r_u = torch.linalg.qr(us)
    q_v, r_v = torch.linalg.qr(vs)
    left, sigma, right_h = torch.linalg.svd(r_u @ r_v.transpose(1, 2), full_matrices=False)
    u_sv, v_sv = q_u @ left, q_v @ right_h.transpose(1, 2)  # orthonormal columns, σ descending
    k = sigma.shape[1]
    if k <= rank:
        # The sum has rank k ≤ r already (C or P below r + 1): kept exactly.
        root = sigma.sqrt().unsqueeze(1)
        fu, fv = u_sv * root, v_sv * root
        pad = rank - k
        fu = torch.cat([fu, fu.new_zeros(batch, fu.shape[1], pad)], 2)
        fv = torch.cat([fv, fv.new_zeros(batch, fv.shape[1], pad)], 2)
        return fu.transpose(1, 2), fv.transpose(1, 2).reshape(batch, rank, *a_shape)
    idx = torch.arange(terms, device=us.device)
    tail = sigma.flip(1).cumsum(1).flip(1)  # tail[j] = Σ_{i ≥ j} σ_i
    slots = (rank - idx[:rank]).to(sigma.dtype)  # r − m for m = 0 … r − 1
    ok = sigma[:, :rank] * slots <= tail[:, :rank]
    ok[:, rank - 1] = True  # m = r − 1 always qualifies (σ_r ≤ σ_r + σ_{r+1})
    m = ok.to(torch.int64).argmax(1)  # the first m that qualifies
    c = tail.gather(1, m.unsqueeze(1)) / slots.gather(0, m).unsqueeze(1)  # (batch, 1)
    rest = idx.unsqueeze(0) >= m.unsqueeze(1)  # (batch, r+1)
    safe_c = torch.where(c > 0, c, torch.ones_like(c))
    vsq = torch.where(rest, (1 - sigma / safe_c).clamp_min(0), torch.zeros_like(sigma))
    last = (idx == terms - 1).to(sigma.dtype).expand(batch, terms)
    vsq = torch.where(c > 0, vsq, last)  # all of the tail is zero: any unit vector on it
    vt = signs.to(sigma.dtype) * vsq.sqrt()
    vt = vt / vt.norm(dim=1, keepdim=True)
    # Householder H = I − 2wwᵀ with H e_last = ±ṽ: its other columns span the
    # complement of ṽ in the tail coordinates and are e_j on the kept ones.
    sign_last = torch.where(vt[:, -1] >= 0, 1.0, -1.0).to(sigma.dtype)
    w = vt + sign_last.unsqueeze(1) * last
    w = w / w.norm(dim=1, keepdim=True)
    eye = torch.eye(terms, dtype=sigma.dtype, device=sigma.device)
    house = eye - 2 * w.unsqueeze(2) * w.unsqueeze(1)
    basis = house[:, :, :rank]  # (batch, r+1, r)
    weight = torch.where(rest[:, :rank], c, sigma[:, :rank]).sqrt().unsqueeze(1)  # √σ kept, √c mixed
    fu = (u_sv @ basis) * weight
    fv = (v_sv @ basis) * weight
    return fu.transpose(1, 2), fv.transpose(1, 2).reshape(batch, rank, *a_shape)


def kfrtrl_gradient(dloss_dh: torch.Tensor, u: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Σ_b Σ_k (∂loss/∂h_t)_{b,k} Σ_j A_j[b, k, i] u_j[b, c]: the (H, C)
    gradient estimate of one step."""
    return torch.einsum("bk,brki,brc->ic", dloss_dh, A, u)
