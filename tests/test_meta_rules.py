"""Oracles of localgrad.meta's parameterised rules, inner loop and outer
loops (float64): ABCD with A alone is Hebb, the polynomial rule with Oja's
coefficients is Oja's rule, the meta-gradient by autograd matches finite
differences, the ES estimate is unbiased on a quadratic and resumes exactly."""

import pytest
import torch

from localgrad import meta
from localgrad.reference import hebbian
from localgrad.reference import meta as reference
from testing import rel_err

F64 = torch.float64


def activity(seed, batch=5, n_in=7, n_out=3, lead=()):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, batch, n_in, generator=g, dtype=F64)
    y = torch.randn(*lead, batch, n_out, generator=g, dtype=F64)
    w = torch.randn(*lead, n_out, n_in, generator=g, dtype=F64)
    return x, y, w


def hebb_by_samples(x, y):
    """<y x^T>, one outer product per sample: an oracle that shares no code."""
    return sum(torch.outer(y[n], x[n]) for n in range(x.shape[0])) / x.shape[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_abcd_with_only_a_is_plain_hebb(seed):
    x, y, w = activity(seed)
    dw = reference.abcd_update(x, y, 1.0, 0.0, 0.0, 0.0, lr=0.3)
    assert torch.equal(dw, reference.hebb_update(x, y, 0.3))
    assert rel_err(dw, 0.3 * hebb_by_samples(x, y)) <= 1e-14
    # The module, per-synapse coefficients: A alone scales Hebb synapse by synapse.
    rule = meta.ABCDRule((3, 7), lr=0.3, dtype=F64)
    with torch.no_grad():
        rule.A.copy_(torch.linspace(-1, 2, 21, dtype=F64).reshape(3, 7))
    assert rel_err(rule(x, y, w), 0.3 * rule.A.detach() * hebb_by_samples(x, y)) <= 1e-14


def test_abcd_terms_one_by_one():
    x, y, w = activity(2)
    ones = torch.ones_like(w)
    assert rel_err(reference.abcd_update(x, y, 0, 1, 0, 0), ones * x.mean(0)) <= 1e-14  # B: pre-synaptic
    assert rel_err(reference.abcd_update(x, y, 0, 0, 1, 0), ones * y.mean(0)[:, None]) <= 1e-14  # C: post
    assert torch.equal(reference.abcd_update(x, y, 0, 0, 0, 2.5, lr=2), torch.full_like(w, 5.0))  # D


@pytest.mark.parametrize("n_out", [1, 4])
def test_polynomial_rule_with_ojas_coefficients_is_ojas_rule(n_out):
    g = torch.Generator().manual_seed(n_out)
    x = torch.randn(9, 6, generator=g, dtype=F64)
    w = torch.randn(n_out, 6, generator=g, dtype=F64)
    y = x @ w.T
    rule = meta.PolynomialRule(lr=0.1, init="oja", dtype=F64)
    assert rel_err(rule(x, y, w), 0.1 * hebbian.oja(x, w)) <= 1e-13
    # Each of the 27 terms on its own against its definition, lr theta x^a y^b w^c.
    for a in range(3):
        for b in range(3):
            for c in range(3):
                theta = reference.polynomial_theta({(a, b, c): 1.0})
                expected = hebb_by_samples(x**a, y**b) * w**c
                assert rel_err(reference.polynomial_update(x, y, w, theta), expected) <= 1e-13, (a, b, c)


def test_polynomial_rule_broadcasts_a_population_of_thetas():
    x, y, w = activity(3, lead=(2,))  # 2 episodes
    thetas = torch.randn(4, 1, 3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=F64)  # 4 members
    together = reference.polynomial_update(x, y, w, thetas)
    assert together.shape == (4, 2, 3, 7)
    for p in range(4):
        for e in range(2):
            one = reference.polynomial_update(x[e], y[e], w[e], thetas[p, 0])
            assert rel_err(together[p, e], one) <= 1e-13


def test_episode_steps_by_the_rule_and_clamps_post():
    x, _, w = activity(4, n_out=2)
    inputs = torch.randn(3, 5, 7, dtype=F64, generator=torch.Generator().manual_seed(1))
    rule = meta.PolynomialRule(lr=0.05, init="oja", dtype=F64)
    weights = meta.run_episode(rule, w, inputs, history=True)
    expected = w
    for t in range(3):
        expected = expected + 0.05 * hebbian.oja(inputs[t], expected)
        assert rel_err(weights[t + 1], expected) <= 1e-13
    post = torch.randn(3, 5, 2, dtype=F64)
    clamped = meta.run_episode(lambda x, y, w: reference.hebb_update(x, y), w, inputs, post=post)
    assert rel_err(clamped, w + sum(hebb_by_samples(inputs[t], post[t]) for t in range(3))) <= 1e-13


def episode_loss(rule, seed=5, steps=7):
    g = torch.Generator().manual_seed(seed)
    w0 = 0.5 * torch.randn(2, 4, generator=g, dtype=F64)
    inputs = torch.randn(steps, 3, 4, generator=g, dtype=F64)
    target = torch.randn(2, 4, generator=g, dtype=F64)
    return lambda **kw: ((meta.run_episode(rule, w0, inputs, activation=torch.tanh, **kw) - target) ** 2).sum()


def finite_difference(loss, parameter, h=1e-6):
    grad = torch.zeros_like(parameter)
    with torch.no_grad():
        for i in range(parameter.numel()):
            flat = parameter.view(-1)
            flat[i] += h
            up = loss().item()
            flat[i] -= 2 * h
            down = loss().item()
            flat[i] += h
            grad.view(-1)[i] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("steps", [1, 7])
def test_meta_gradient_by_autograd_matches_finite_differences(steps):
    g = torch.Generator().manual_seed(steps)
    rule = meta.PolynomialRule(lr=0.1, init_std=0.1, generator=g, dtype=F64)
    loss = episode_loss(rule, steps=steps)
    (grad,) = torch.autograd.grad(loss(), rule.theta)
    assert grad.abs().max() > 1e-3  # the test can fail: the loss depends on theta
    assert rel_err(grad, finite_difference(loss, rule.theta)) <= 1e-6

    abcd = meta.ABCDRule((2, 4), lr=0.2, A=0.5, init_std=0.2, generator=g, dtype=F64)
    loss = episode_loss(abcd, steps=steps)
    grads = torch.autograd.grad(loss(), list(abcd.parameters()))
    for p, grad in zip(abcd.parameters(), grads):
        assert rel_err(grad, finite_difference(loss, p)) <= 1e-6


def test_checkpointed_episode_gives_the_same_meta_gradient():
    rule = meta.PolynomialRule(lr=0.1, init_std=0.1, generator=torch.Generator().manual_seed(0), dtype=F64)
    loss = episode_loss(rule, steps=10)
    (plain,) = torch.autograd.grad(loss(), rule.theta)
    for segment in (1, 3, 10, 25):
        (checkpointed,) = torch.autograd.grad(loss(checkpoint=segment), rule.theta)
        assert rel_err(checkpointed, plain) <= 1e-14, segment


def quadratic(center, curvature):
    """L(theta) = 1/2 (theta - c)^T H (theta - c), batched over a leading dim."""
    def loss(theta):
        d = theta - center
        return 0.5 * ((d @ curvature) * d).sum(-1)
    return loss


def test_es_estimate_is_unbiased_on_a_quadratic():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(5, 5, generator=g, dtype=F64)
    curvature = m @ m.T / 5 + torch.eye(5, dtype=F64)
    center = torch.randn(5, generator=g, dtype=F64)
    theta = torch.randn(5, generator=g, dtype=F64)
    true = curvature @ (theta - center)
    es = meta.EvolutionStrategies([theta], sigma=0.3, population=1000, seed=1)
    estimates = torch.stack([es.estimate(quadratic(center, curvature))[0][0] for _ in range(40)])
    # One estimate is noisy (std ~ |grad| sqrt(6 / 500)); the mean of 40 is within a few percent.
    assert rel_err(estimates[0], true) > 0.02
    assert rel_err(estimates.mean(0), true) <= 0.05
    # The mirrored difference is exact on a quadratic: the estimate does not depend on sigma.
    small = meta.EvolutionStrategies([theta], sigma=1e-3, population=1000, seed=1)
    assert rel_err(small.estimate(quadratic(center, curvature))[0][0], estimates[0]) <= 1e-9


def test_es_writes_grad_for_any_optimizer_and_unbatched_agrees():
    theta = torch.zeros(3, dtype=F64, requires_grad=True)
    center = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    loss = quadratic(center, torch.eye(3, dtype=F64))
    es = meta.EvolutionStrategies([theta], sigma=0.1, population=64, seed=0)
    optimizer = torch.optim.SGD([theta], lr=0.2)
    for _ in range(60):
        optimizer.zero_grad()
        es.estimate_gradient(loss)
        optimizer.step()
    assert rel_err(theta.detach(), center) <= 0.05
    a = meta.EvolutionStrategies([theta.detach()], sigma=0.1, population=8, seed=3)
    b = meta.EvolutionStrategies([theta.detach()], sigma=0.1, population=8, seed=3, batched=False)
    assert rel_err(a.estimate(loss)[0][0], b.estimate(loss)[0][0]) <= 1e-14


def es_run(steps, state=None):
    """ES + Adam on the polynomial rule for `steps` steps, from `state`."""
    rule = meta.PolynomialRule(lr=0.05, dtype=F64)
    es = meta.EvolutionStrategies(rule.parameters(), sigma=0.05, population=6, seed=7)
    optimizer = torch.optim.Adam(rule.parameters(), lr=0.01)
    if state is not None:
        rule.load_state_dict(state["rule"])
        es.load_state_dict(state["es"])
        optimizer.load_state_dict(state["optimizer"])
    g = torch.Generator().manual_seed(11)
    inputs = torch.randn(4, 3, 5, generator=g, dtype=F64)
    w0 = 0.5 * torch.randn(1, 5, generator=g, dtype=F64)

    def population_loss(theta):  # theta (P, 3, 3, 3)
        w = reference.episode(lambda x, y, w: rule(x, y, w, theta=theta), w0.expand(6, 1, 5), inputs)
        return ((w.squeeze(-2) ** 2).sum(-1) - 1) ** 2

    for _ in range(steps):
        optimizer.zero_grad()
        es.estimate_gradient(population_loss)
        optimizer.step()
    return rule.theta.detach().clone(), {"rule": rule.state_dict(), "es": es.state_dict(),
                                         "optimizer": optimizer.state_dict()}


def test_es_resume_from_state_dict_is_bit_exact():
    straight, _ = es_run(6)
    _, state = es_run(3)
    resumed, final = es_run(3, state)
    assert torch.equal(resumed, straight)
    assert final["es"]["steps"] == 6
    assert not torch.equal(straight, es_run(5)[0])  # the steps do move theta


def test_fixed_weight_learner_predicts_from_the_past_only():
    x, y = meta.linear_regression_tasks(4, 6, 3, torch.Generator().manual_seed(0), dtype=F64)
    learner = meta.FixedWeightLearner(3, 1, hidden=8).double()
    before = learner(x, y)
    y2 = y.clone()
    y2[:, 3] += 1.0
    after = learner(x, y2)
    assert torch.equal(before[:, :4], after[:, :4]) and not torch.equal(before[:, 4], after[:, 4])
    learner.freeze()
    assert not any(p.requires_grad for p in learner.parameters())


@pytest.mark.parametrize("make, message", [
    (lambda: meta.PolynomialRule(lr=float("nan")), "PolynomialRule: lr must not be NaN"),
    (lambda: meta.PolynomialRule(init="hebb"), "PolynomialRule: init must be"),
    (lambda: meta.PolynomialRule(init_std=-1.0), "PolynomialRule: init_std must be >= 0"),
    (lambda: meta.ABCDRule(A="1"), "ABCDRule: A must be a real number"),
    (lambda: meta.ABCDRule(shape=(3, 0)), "ABCDRule: shape must be"),
    (lambda: meta.ABCDRule(lr=float("inf")), "ABCDRule: lr must be finite"),
    (lambda: meta.EvolutionStrategies([torch.zeros(2)], population=7), "population must be even"),
    (lambda: meta.EvolutionStrategies([torch.zeros(2)], sigma=0.0), "sigma must be positive"),
    (lambda: meta.EvolutionStrategies([torch.zeros(2)], seed=1.5), "seed must be an int"),
    (lambda: meta.EvolutionStrategies([]), "params must be a non-empty"),
    (lambda: meta.EvolutionStrategies([torch.zeros(2)], ranks="yes"), "ranks must be a bool"),
    (lambda: meta.run_episode(meta.PolynomialRule(), torch.zeros(2, 3), torch.zeros(4, 5, 3), checkpoint=2.5),
     "run_episode: checkpoint must be an int"),
    (lambda: meta.run_episode(meta.PolynomialRule(), torch.zeros(2, 3), torch.zeros(4, 5, 4)),
     r"run_episode: inputs must be \(T, ..., batch, 3\)"),
    (lambda: meta.run_episode(meta.PolynomialRule(), torch.zeros(2, 3), torch.zeros(4, 5, 3),
                              post=torch.zeros(4, 5, 3)),
     r"run_episode: post must have shape \(4, 5, 2\)"),
    (lambda: meta.PolynomialRule()(torch.zeros(5, 3), torch.zeros(5, 2), torch.zeros(2, 4)),
     "PolynomialRule: x must have 4 features"),
    (lambda: meta.ABCDRule()(torch.zeros(5, 3), torch.zeros(4, 2), torch.zeros(2, 3)),
     "ABCDRule: y must have x's batch"),
    (lambda: meta.meta_train(lambda s: torch.zeros(()), torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1),
                             2.0),
     "meta_train: steps must be an int"),
    (lambda: meta.linear_regression_tasks(2, 3, 0), "linear_regression_tasks: dim must be >= 1"),
    (lambda: meta.FixedWeightLearner(3)(torch.zeros(2, 5, 4), torch.zeros(2, 5, 1)), r"x must be \(batch, T, 3\)"),
])
def test_bad_input_names_the_argument(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_es_refuses_a_loss_of_the_wrong_shape():
    es = meta.EvolutionStrategies([torch.zeros(2)], population=4)
    with pytest.raises(ValueError, match=r"loss_fn must return \(4,\) losses, got \(\)"):
        es.estimate(lambda theta: theta.sum())


def test_es_state_of_another_population_is_refused():
    state = meta.EvolutionStrategies([torch.zeros(2)], population=4).state_dict()
    with pytest.raises(ValueError, match="population is 6 here, 4 in the state"):
        meta.EvolutionStrategies([torch.zeros(2)], population=6).load_state_dict(state)


def test_empty_batch_gives_no_update():
    w = torch.randn(2, 3, dtype=F64)
    x, y = torch.zeros(0, 3, dtype=F64), torch.zeros(0, 2, dtype=F64)
    assert torch.equal(reference.polynomial_update(x, y, w, reference.polynomial_theta(reference.OJA_THETA)),
                       torch.zeros_like(w))
    assert torch.equal(reference.abcd_update(x, y, 1.0, 0.0, 0.0, 0.0), torch.zeros_like(w))


def test_es_ranks_depend_only_on_the_order_of_the_losses():
    # Fitness shaping by centred ranks: a monotone transform of the loss gives the same estimate.
    theta = torch.randn(4, dtype=F64, generator=torch.Generator().manual_seed(2))
    loss = quadratic(torch.zeros(4, dtype=F64), torch.eye(4, dtype=F64))
    plain = meta.EvolutionStrategies([theta], sigma=0.1, population=10, seed=5, ranks=True).estimate(loss)[0][0]
    warped = meta.EvolutionStrategies([theta], sigma=0.1, population=10, seed=5, ranks=True)
    assert torch.equal(warped.estimate(lambda t: torch.exp(3 * loss(t)) - 7)[0][0], plain)
    raw = meta.EvolutionStrategies([theta], sigma=0.1, population=10, seed=5).estimate(loss)[0][0]
    assert not torch.equal(raw, plain)
    assert torch.nn.functional.cosine_similarity(plain, theta, 0) > 0.5  # still points uphill
