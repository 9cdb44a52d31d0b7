"""Exact and statistical oracles of the online RNN learners (float64):
RTRL = BPTT after every chunk, SnAp with full coverage = RTRL and its error
falling with n, e-prop/RFLO with the true learning signal = BPTT (Bellec 2020
eq. 1), UORO and KF-RTRL unbiased with error ~ 1/√K, KF-RTRL's one-step
reduction exact in the mean (every sign pattern enumerated) with the optimal
variance at rank ≥ 2, and KF-RTRL's variance below UORO's."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from localgrad.online import BPTT, KFRTRL, RFLO, RTRL, UORO, EProp, LeakyRNN, SnAp
from localgrad.reference import online_rnn as ref

T, BATCH, INPUT, HIDDEN, OUTPUT = 7, 3, 4, 6, 2


def make_model(mask: bool, alpha: float = 0.7, hidden: int = HIDDEN, seed: int = 0, activation="tanh"):
    torch.manual_seed(seed)
    pattern = (torch.rand(hidden, hidden) < 0.35).double() if mask else None
    return LeakyRNN(INPUT, hidden, OUTPUT, alpha=alpha, activation=activation, recurrent_mask=pattern).double()


def grads(model):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def max_rel(a, b):
    return max(((x - y).abs().max() / y.abs().max().clamp_min(1e-300)).item() for x, y in zip(a, b))


def autograd_grads(model, xs, targets, upto, loss="mse", loss_mask=None):
    """BPTT gradient of Σ_{τ<upto} loss_τ by autograd on the plain forward."""
    model.zero_grad()
    ys, _ = model(xs[:upto])
    total = ys.sum() * 0
    for t in range(upto):
        if loss_mask is None or loss_mask[t]:
            total = total + (F.mse_loss(ys[t], targets[t]) if loss == "mse" else F.cross_entropy(ys[t], targets[t]))
    total.backward()
    out = grads(model)
    model.zero_grad()
    return out


def data(loss="mse", batch=BATCH, steps=T, seed=1):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(steps, batch, INPUT, generator=g, dtype=torch.float64)
    if loss == "mse":
        return xs, torch.randn(steps, batch, OUTPUT, generator=g, dtype=torch.float64)
    return xs, torch.randint(0, OUTPUT, (steps, batch), generator=g)


CHUNKS = [1, 3, 2, 1]  # 7 steps, chunk lengths 1 and odd


def online_vs_bptt(make_learner, model, loss="mse", loss_mask=None):
    xs, targets = data(loss)
    learner = make_learner(model)
    learner.reset(BATCH)
    t, worst = 0, 0.0
    for length in CHUNKS:
        mask = None if loss_mask is None else loss_mask[t:t + length]
        if length == 1 and mask is None:
            learner.step(xs[t], targets[t])
        else:
            learner.run(xs[t:t + length], targets[t:t + length], loss_mask=mask)
        t += length
        got = grads(model)
        worst = max(worst, max_rel(got, autograd_grads(model, xs, targets, t, loss, loss_mask)))
        for p, g in zip(model.parameters(), got):
            p.grad = g
    return worst


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("alpha", [0.7, 1.0])
def test_rtrl_equals_bptt_after_every_chunk(mask, alpha):
    model = make_model(mask, alpha)
    err = online_vs_bptt(RTRL, model)
    print(f"RTRL vs autograd BPTT (mask={mask}, alpha={alpha}): max rel err {err:.2e}")
    assert err <= 1e-10


def test_rtrl_cross_entropy_at_chosen_steps():
    model = make_model(True, 0.5, activation="sigmoid")
    loss_mask = torch.tensor([False, True, False, False, True, False, True])
    assert online_vs_bptt(lambda m: RTRL(m, loss="ce"), model, "ce", loss_mask) <= 1e-10


def test_bptt_learner_equals_autograd():
    model = make_model(True)
    assert online_vs_bptt(BPTT, model) <= 1e-10


@pytest.mark.parametrize("dense", [None, False], ids=["dense-path", "sparse-kernel"])
@pytest.mark.parametrize("mask", [False, True])
def test_snap_full_coverage_equals_rtrl(mask, dense):
    model = make_model(mask)
    learner = SnAp(model, n=HIDDEN, dense=dense)
    # A full pattern takes the dense RTRL update unless told not to.
    assert learner.dense == (dense is None and learner.n_entries == HIDDEN * HIDDEN)
    err = online_vs_bptt(lambda m: SnAp(m, n=HIDDEN, dense=dense), model)
    print(f"SnAp-{HIDDEN} (full coverage, dense={learner.dense}) vs BPTT: {err:.2e}")
    assert err <= 1e-10


def test_snap_error_falls_with_n():
    hidden = 16
    torch.manual_seed(3)
    # A ring with a few chords: the reach grows by about one unit per n.
    pattern = torch.zeros(hidden, hidden)
    for k in range(hidden):
        pattern[k, k] = 1
        pattern[k, (k - 1) % hidden] = 1
    model = LeakyRNN(INPUT, hidden, OUTPUT, alpha=0.6, recurrent_mask=pattern).double()
    with torch.no_grad():
        model.weight_hh.mul_(2.5)
    g = torch.Generator().manual_seed(5)
    xs = torch.randn(24, 2, INPUT, generator=g, dtype=torch.float64)
    targets = torch.randn(24, 2, OUTPUT, generator=g, dtype=torch.float64)

    def recurrent_grad(learner):
        model.zero_grad()
        learner.reset(2)
        learner.run(xs, targets)
        return torch.cat([model.weight_ih.grad.flatten(), model.weight_hh.grad.flatten(), model.bias.grad])

    exact = recurrent_grad(RTRL(model))
    errors = [((recurrent_grad(SnAp(model, n)) - exact).norm() / exact.norm()).item() for n in range(1, hidden + 1)]
    print("SnAp-n relative deviation from RTRL, n = 1..16:", " ".join(f"{e:.2e}" for e in errors))
    for n in range(len(errors) - 1):
        assert errors[n + 1] <= errors[n] * (1 + 1e-9) + 1e-14, f"SnAp-{n + 2} is further from RTRL than SnAp-{n + 1}"
    assert errors[0] > 0.05 and errors[7] < 0.5 * errors[0] and errors[-1] < 1e-12


def total_derivative_signals(model, xs, targets):
    """dE/dz_t by autograd, E = Σ_t loss_t, z_t the unit outputs read by the
    readout and the recurrent weights (the leak acts on the internal state)."""
    h = xs.new_zeros(xs.shape[1], model.hidden_size)
    z = h
    probes, total = [], 0.0
    w = model.effective_weight_hh()
    for t, x in enumerate(xs):
        a = F.linear(x, model.weight_ih, model.bias) + z @ w.T
        h = (1 - model.alpha) * h + model.alpha * torch.tanh(a)
        probe = torch.zeros_like(h, requires_grad=True)
        probes.append(probe)
        z = h + probe
        total = total + F.mse_loss(model.readout(z), targets[t])
    signals = torch.autograd.grad(total, probes)
    return torch.stack(signals).detach()


@pytest.mark.parametrize("rule", [EProp, RFLO])
@pytest.mark.parametrize("mask", [False, True])
def test_eligibility_traces_with_true_learning_signal_equal_bptt(rule, mask):
    model = make_model(mask, alpha=0.6)
    xs, targets = data()
    signals = total_derivative_signals(model, xs, targets)
    learner = rule(model)
    model.zero_grad()
    learner.reset(BATCH)
    t = 0
    for length in CHUNKS:
        learner.run(xs[t:t + length], targets[t:t + length], learning_signals=signals[t:t + length])
        t += length
    err = max_rel(grads(model), autograd_grads(model, xs, targets, T))
    print(f"{rule.__name__} with dE/dz_t from autograd vs BPTT: {err:.2e}")
    assert err <= 1e-10


def test_eprop_symmetric_is_not_bptt():
    """Without the true learning signal the rule is an approximation."""
    model = make_model(False, alpha=0.6)
    xs, targets = data()
    model.zero_grad()
    learner = EProp(model)
    learner.reset(BATCH)
    learner.run(xs, targets)
    assert max_rel(grads(model)[:3], autograd_grads(model, xs, targets, T)[:3]) > 1e-3


def test_uoro_is_unbiased():
    """The batch holds K copies of one sequence: each has its own random signs,
    and the mean loss makes .grad the mean of K independent estimates."""
    model = make_model(True, alpha=0.7)
    xs, targets = data(batch=1, steps=5)
    exact = autograd_grads(model, xs, targets, 5)[:3]

    def error(k, seed):
        model.zero_grad()
        learner = UORO(model, seed=seed)
        learner.reset(k)
        learner.run(xs.expand(-1, k, -1), targets.expand(-1, k, -1))
        est = grads(model)[:3]
        return (sum(((a - b) ** 2).sum() for a, b in zip(est, exact)) / sum((b ** 2).sum() for b in exact)).sqrt().item()

    ks = [16, 256, 4096]
    mean_err = [sum(error(k, seed) for seed in range(4)) / 4 for k in ks]
    print("UORO relative error of the mean of K estimates, K = 16, 256, 4096:", mean_err)
    # 1/√K predicts a factor 4 per step of K; allow 2.5..6.4.
    for a, b in zip(mean_err, mean_err[1:]):
        assert 2.5 < a / b < 6.4
    assert mean_err[-1] < 0.2


def kfrtrl_step_moments(rank, dominant, zero=False, batch=5, inputs=3, hidden=4, seed=0):
    """One kfrtrl_step from a random state, averaged over all 2^(r+1) sign
    patterns: (mean of Σ_j u_j ⊗ A_j, exact sum of the r + 1 terms, mean
    squared norm of the estimate), per batch element, float64."""
    g = torch.Generator().manual_seed(seed)
    r64 = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    cols = inputs + hidden + 1
    u, a = r64(batch, rank, cols), r64(batch, rank, hidden, hidden)
    if dominant:  # one term far larger: the OK reduction keeps it exactly (m > 0)
        u[:, 0] *= 30
    if zero:  # the first step of a sequence
        u, a = torch.zeros_like(u), torch.zeros_like(a)
    w, h, x = r64(hidden, hidden) / 2, r64(batch, hidden), r64(batch, inputs)
    dphi, alpha = torch.rand(batch, hidden, generator=g, dtype=torch.float64), 0.6
    ja = (1 - alpha) * a + alpha * dphi.view(batch, 1, hidden, 1) * (w @ a)
    exact = torch.einsum("brki,brc->bkic", ja, u)
    exact = exact + torch.einsum("bki,bc->bkic", torch.diag_embed(alpha * dphi), ref.kfrtrl_inputs(x, h))
    if rank == 1:
        # Mujika et al. Lemma 1 at ρ = √(‖A‖/‖u‖): E‖X‖² = ‖S‖² + 2(‖u‖‖JA‖‖v‖‖αD‖ + ⟨u, v⟩⟨JA, αD⟩).
        v, d = ref.kfrtrl_inputs(x, h), torch.diag_embed(alpha * dphi)
        n = lambda t: t.flatten(1).norm(dim=1)  # noqa: E731
        kf_second = exact.flatten(1).pow(2).sum(1) + 2 * (n(u) * n(ja) * n(v) * n(d) + (u[:, 0] * v).sum(1)
                                                          * (ja[:, 0] * d).flatten(1).sum(1))
    mean, second = torch.zeros_like(exact), exact.new_zeros(batch)
    patterns = list(itertools.product([-1.0, 1.0], repeat=rank + 1))
    for p in patterns:
        signs = torch.tensor(p, dtype=torch.float64).expand(batch, -1)
        u_new, a_new = ref.kfrtrl_step(u, a, w, signs, h, x, dphi, alpha, 1e-7)
        assert u_new.shape == u.shape and a_new.shape == a.shape
        est = torch.einsum("brki,brc->bkic", a_new, u_new)
        mean += est / len(patterns)
        second += est.flatten(1).pow(2).sum(1) / len(patterns)
    return mean, exact, second, (kf_second if rank == 1 else None)


def ok_optimal_second_moment(exact, rank):
    """Benzing et al. 2019: the least E‖X‖² of an unbiased rank-r estimate X
    of S, σ descending: Σ_{j≤m} σ_j² + (Σ_{j>m} σ_j)²/(r − m), m the least
    with σ_{m+1} (r − m) ≤ Σ_{j>m} σ_j."""
    sigma = torch.linalg.svdvals(exact.flatten(1, 2).flatten(2).transpose(1, 2))
    out = []
    for s in sigma:
        for m in range(rank):
            tail = s[m:].sum()
            if s[m] * (rank - m) <= tail:
                out.append((s[:m] ** 2).sum() + tail ** 2 / (rank - m))
                break
    return torch.stack(out)


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
@pytest.mark.parametrize("start", ["random", "dominant", "zero"])
def test_kfrtrl_step_is_exact_in_the_mean(rank, start):
    """Averaged over every sign pattern, one step's Σ_j u_j ⊗ A_j is the exact
    RTRL update of the previous sum; at rank ≥ 2 (the OK reduction) its mean
    squared norm is the least any unbiased rank-r estimate can have, and at
    rank 1 it is KF-RTRL's at the optimal ρ (Mujika et al. Lemma 1), no less
    than that least."""
    mean, exact, second, kf_second = kfrtrl_step_moments(rank, start == "dominant", start == "zero")
    bias = ((mean - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)).max().item()
    optimum = ok_optimal_second_moment(exact, rank)
    print(f"KF-RTRL rank {rank} ({start}): bias {bias:.1e}, E|X|^2 / optimum {(second / optimum).tolist()}")
    assert bias <= 1e-12
    if rank == 1 and start != "zero":
        # KF-RTRL's optimal scalars ρ (ε = 1e-7 moves them by ~1e-7), and no
        # better than the OK optimum, which orthogonalises first.
        assert ((second - kf_second).abs() <= 1e-6 * kf_second).all()
        assert (second >= optimum * (1 - 1e-12)).all()
    else:
        # Also rank 1 from zero: a single Kronecker term, kept exactly.
        assert ((second - optimum).abs() <= 1e-10 * optimum).all()



def _ok_m(sigma, rank):
    return next(m for m in range(rank) if sigma[m] * (rank - m) <= sigma[m:].sum())


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("profile", ["equal", "one-large", "geometric", "zero-tail"])
def test_ok_reduction_is_unbiased_and_optimal_for_every_profile(rank, profile):
    """ok_reduce on r + 1 terms built with chosen singular values (equal: all
    mixed, m = 0; one large: kept, m = 1; a zero tail), in non-orthogonal
    factors: exact in the mean over every sign pattern, rank r, and the
    optimal second moment."""
    g = torch.Generator().manual_seed(rank)
    terms, cols, rows = rank + 1, 6, 9
    sigma = {"equal": [1.0] * terms, "one-large": [40.0] + [1.0] * rank,
             "geometric": [0.5 ** j for j in range(terms)], "zero-tail": [3.0] + [0.0] * rank}[profile]
    sigma = torch.tensor(sigma, dtype=torch.float64)
    q_u = torch.linalg.qr(torch.randn(cols, terms, generator=g, dtype=torch.float64))[0]
    q_v = torch.linalg.qr(torch.randn(rows, terms, generator=g, dtype=torch.float64))[0]
    mix = torch.randn(terms, terms, generator=g, dtype=torch.float64)  # S = (q_u Σ mix)(q_v mix⁻ᵀ)ᵀ
    us = (q_u * sigma) @ mix
    vs = q_v @ torch.linalg.inv(mix).T
    exact = us @ vs.T
    mean, second = torch.zeros_like(exact), 0.0
    patterns = list(itertools.product([-1.0, 1.0], repeat=terms))
    for p in patterns:
        fu, fv = ref.ok_reduce(us[None], vs[None], torch.tensor([p], dtype=torch.float64), rank, (rows,))
        assert fu.shape == (1, rank, cols) and fv.shape == (1, rank, rows)
        est = fu[0].T @ fv[0]
        mean += est / len(patterns)
        second += est.pow(2).sum().item() / len(patterns)
    m = _ok_m(sigma, rank)
    optimum = (sigma[:m] ** 2).sum().item() + sigma[m:].sum().item() ** 2 / (rank - m)
    assert m == {"equal": 0, "one-large": min(1, rank - 1), "geometric": m, "zero-tail": m}[profile]
    assert (mean - exact).norm() <= 1e-12 * exact.norm()
    assert abs(second - optimum) <= 1e-10 * optimum

def _estimate_error(make_learner, model, xs, targets, exact, k, seed):
    """Relative error of .grad, the mean of k independent estimates (the
    batch holds k copies of one sequence, each with its own random signs)."""
    model.zero_grad()
    learner = make_learner(model, seed)
    learner.reset(k)
    learner.run(xs.expand(-1, k, -1), targets.expand(-1, k, -1))
    est = grads(model)[:3]
    return (sum(((a - b) ** 2).sum() for a, b in zip(est, exact)) / sum((b ** 2).sum() for b in exact)).sqrt().item()


KF_SEEDS = range(8)


def _kfrtrl_errors(make_learner, ks):
    """Root mean square over 8 seeds of the relative error at each K."""
    model = make_model(True, alpha=0.7)
    xs, targets = data(batch=1, steps=5)
    exact = autograd_grads(model, xs, targets, 5)[:3]
    return [(sum(_estimate_error(make_learner, model, xs, targets, exact, k, s) ** 2 for s in KF_SEEDS)
             / len(KF_SEEDS)) ** 0.5 for k in ks]


@pytest.mark.parametrize("rank", [1, 2])
def test_kfrtrl_is_unbiased(rank):
    """The mean of K estimates approaches RTRL's (= BPTT's) gradient like 1/√K."""
    ks = [16, 256, 4096]
    errors = _kfrtrl_errors(lambda m, s: KFRTRL(m, rank=rank, seed=s), ks)
    print(f"KF-RTRL rank {rank} RMS relative error of the mean of K estimates, K = 16, 256, 4096:", errors)
    # 1/√K predicts a factor 4 per step of K; allow 2.5..6.4 (a bias would stall it).
    for a, b in zip(errors, errors[1:]):
        assert 2.5 < a / b < 6.4
    assert errors[-1] < (0.05 if rank == 1 else 0.01)


def test_kfrtrl_variance_is_below_uoro_and_falls_with_rank():
    """Variance of one estimate (relative to ‖g‖²), as K times the mean
    squared error of the mean of K = 256 estimates over 8 seeds, on the same
    model and sequence: UORO > KF-RTRL rank 1 > rank 2."""
    k = 256
    var = {name: k * _kfrtrl_errors(make, [k])[0] ** 2 for name, make in (
        ("uoro", lambda m, s: UORO(m, seed=s)),
        ("kf1", lambda m, s: KFRTRL(m, rank=1, seed=s)),
        ("kf2", lambda m, s: KFRTRL(m, rank=2, seed=s)),
    )}
    print("relative variance of one gradient estimate:", var)
    # Measured 7.9, 0.89, 0.021: margins of a factor 2 and 4.
    assert var["kf1"] < var["uoro"] / 2
    assert var["kf2"] < var["kf1"] / 4
