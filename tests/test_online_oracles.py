"""Exact and statistical oracles of the online RNN learners (float64):
RTRL = BPTT after every chunk, SnAp with full coverage = RTRL and its error
falling with n, e-prop/RFLO with the true learning signal = BPTT (Bellec 2020
eq. 1), UORO unbiased with error ~ 1/√K."""

import pytest
import torch
import torch.nn.functional as F

from localgrad.online import BPTT, RFLO, RTRL, UORO, EProp, LeakyRNN, SnAp

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
