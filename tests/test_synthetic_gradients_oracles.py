"""Exact oracles of synthetic gradients (float64): BP(1) is backprop; the
learner is BP(λ) as the reference writes it; BP(0) on a linear net by hand;
a linear cDNI at the output of an MSE model represents the exact gradient,
its least-squares fit reaches it, and training the SG module converges to it
(without the label it cannot)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from localgrad.reference import synthetic_gradients as ref
from localgrad.synthetic_gradients import DNI
from testing import rel_err

F64 = torch.float64
ACTS = [nn.Tanh, nn.ReLU, nn.Sigmoid, lambda: nn.LeakyReLU(0.1)]


def make_mlp(depth, seed, act=nn.Tanh, widths=(7, 13, 9, 11, 6, 8), batch=10):
    g = torch.Generator().manual_seed(seed)
    layers = [nn.Flatten()]
    for i in range(depth):
        lin = nn.Linear(widths[i], widths[i + 1]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g, dtype=F64) * 0.6)
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g, dtype=F64) * 0.3)
        layers.append(lin)
        if i < depth - 1:
            layers.append(act())
    x = torch.randn(batch, widths[0], generator=g, dtype=F64)
    y = torch.randint(0, widths[depth], (batch,), generator=g)
    return nn.Sequential(*layers), x, y


def make_cnn(seed, batch=6):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 4, 3), nn.Tanh(),
                          nn.Flatten(), nn.Linear(4 * 2 * 2, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(seed + 1)
    return model, torch.randn(batch, 1, 8, 8, generator=g, dtype=F64), torch.randint(0, 3, (batch,), generator=g)


def randomise(learner, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.sg_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def model_grads(model):
    return [p.grad.clone() for p in model.parameters()]


def backprop(model, x, y, loss):
    model.zero_grad()
    out = model(x)
    if loss == "mse":
        target = y if y.is_floating_point() else F.one_hot(y, out.shape[1]).to(out)
        value = 0.5 * (out - target).pow(2).sum(1).mean()
    else:
        value = F.cross_entropy(out, y)
    value.backward()
    grads = model_grads(model)
    model.zero_grad()
    return grads, value.detach()


def assert_grads_equal(actual, expected, tol=1e-12):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert rel_err(a, e) <= tol, f"parameter {i}: {rel_err(a, e):.2e}"


@pytest.mark.parametrize("depth", [2, 3, 5])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("conditioned", [False, True])
def test_bp_lambda_one_is_backprop_on_mlps(depth, act, loss, conditioned):
    model, x, y = make_mlp(depth, seed=depth, act=act)
    learner = DNI(model, conditioned=conditioned, lam=1.0, loss=loss, sg_hidden=(4,))
    randomise(learner, seed=1)  # the SG modules' predictions must not leak into the update
    expected, expected_loss = backprop(model, x, y, loss)
    got_loss = learner.step(x, y)
    assert_grads_equal(model_grads(model), expected)
    assert abs(got_loss - expected_loss) <= 1e-14 * abs(expected_loss)


def test_bp_lambda_one_is_backprop_on_a_cnn_and_any_split():
    model, x, y = make_cnn(0)
    expected, _ = backprop(model, x, y, "ce")
    for split in (None, [2], [3, 5], [1, 2, 3, 4, 5, 6, 7, 8]):
        learner = DNI(model, split=split, lam=1.0, example_input=x[:2], conditioned=True)
        randomise(learner, seed=2)
        model.zero_grad()
        learner.step(x, y)
        assert_grads_equal(model_grads(model), expected)


def test_bp_lambda_one_is_backprop_with_float_mse_targets():
    model, x, _ = make_mlp(3, seed=7)
    y = torch.randn(x.shape[0], 11, dtype=F64)
    learner = DNI(model, lam=1.0, loss="mse", conditioned=True)
    randomise(learner, seed=3)
    expected, _ = backprop(model, x, y, "mse")
    learner.step(x, y)
    assert_grads_equal(model_grads(model), expected)


def test_bp_lambda_below_one_is_not_backprop():
    # The oracle above can fail: with the same random SG modules, λ < 1 moves off backprop.
    model, x, y = make_mlp(3, seed=3)
    expected, _ = backprop(model, x, y, "ce")
    for lam in (0.0, 0.5, 0.999):
        learner = DNI(model, lam=lam)
        randomise(learner, seed=4)
        model.zero_grad()
        learner.step(x, y)
        got = model_grads(model)
        assert_grads_equal(got[-2:], expected[-2:])  # the top block always has its true gradient
        assert max(rel_err(a, e) for a, e in zip(got[:-2], expected[:-2])) > 1e-6


def _reference(learner, x, y):
    def output_grad(out):
        with torch.enable_grad():
            out = out.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(learner._per_sample_losses(out, y).sum(), out)
        return g

    cond = learner._condition(y)
    synthetic = [lambda h, m=m: m(h, cond) for m in learner.synthesizers]
    params = [list(b.parameters()) for b in learner.blocks]
    return ref.bp_lambda(learner.blocks, params, x, output_grad, synthetic, learner.lam)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("sg_hidden", [(), (6,)])
def test_the_learner_is_the_reference_bp_lambda(lam, conditioned, sg_hidden):
    model, x, y = make_mlp(4, seed=11, act=nn.ReLU)
    learner = DNI(model, lam=lam, conditioned=conditioned, sg_hidden=sg_hidden)
    randomise(learner, seed=5)
    learner.step(x, y)
    expected = _reference(learner, x, y)
    assert_grads_equal(model_grads(model), [u for block in expected["updates"] for u in block])
    # The SG modules' gradients: regression onto the reference's targets.
    sg = list(learner.sg_parameters())
    got = [p.grad.clone() for p in sg]
    cond = learner._condition(y)
    loss = sum(ref.regression_loss(m(h, cond), t)
               for m, h, t in zip(learner.synthesizers, expected["h"], expected["targets"]))
    assert_grads_equal(got, torch.autograd.grad(loss, sg))


def test_the_learner_is_the_reference_on_a_cnn():
    model, x, y = make_cnn(3)
    learner = DNI(model, lam=0.0, conditioned=True, example_input=x[:1])
    randomise(learner, seed=6, scale=0.05)
    learner.step(x, y)
    expected = _reference(learner, x, y)
    assert_grads_equal(model_grads(model), [u for block in expected["updates"] for u in block])


def test_bp_zero_on_a_linear_net_by_hand():
    # h1 = W1 x + b1, h2 = W2 h1 + b2, out = W3 h2 + b3, ĝ_k = A_k h_k + c_k.
    # BP(0): block 1 learns from ĝ_1, block 2 from ĝ_2, block 3 from the loss;
    # t_1 = ĝ_2 W2, t_2 = (out - onehot(y)) W3 (mse).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3), nn.Linear(3, 2)).double()
    x, y = torch.randn(9, 4, dtype=F64), torch.randint(0, 2, (9,))
    learner = DNI(model, lam=0.0, loss="mse")
    randomise(learner, seed=8)
    learner.step(x, y)
    (W1, b1), (W2, b2), (W3, b3) = [(m.weight.detach(), m.bias.detach()) for m in model]
    (A1, c1), (A2, c2) = [(m.net[0].weight.detach(), m.net[0].bias.detach()) for m in learner.synthesizers]
    B = x.shape[0]
    h1 = x @ W1.T + b1
    h2 = h1 @ W2.T + b2
    out = h2 @ W3.T + b3
    g1, g2 = h1 @ A1.T + c1, h2 @ A2.T + c2
    e = out - F.one_hot(y, 2).double()
    expected = [g1.T @ x / B, g1.sum(0) / B, g2.T @ h1 / B, g2.sum(0) / B, e.T @ h2 / B, e.sum(0) / B]
    assert_grads_equal(model_grads(model), expected)
    t1, t2 = g2 @ W2, e @ W3
    r1, r2 = g1 - t1, g2 - t2
    sg_expected = [r1.T @ h1 / B, r1.sum(0) / B, r2.T @ h2 / B, r2.sum(0) / B]
    assert_grads_equal([p.grad for p in learner.sg_parameters()], sg_expected)


def test_zero_initialised_modules_give_the_blocks_below_the_top_no_gradient_at_first():
    model, x, y = make_mlp(3, seed=1)
    learner = DNI(model)
    learner.step(x, y)
    grads = model_grads(model)
    assert all(torch.count_nonzero(g) == 0 for g in grads[:-2])
    expected, _ = backprop(model, x, y, "ce")
    assert_grads_equal(grads[-2:], expected[-2:])


# --- the linear cDNI at the output of an MSE model ----------------------------


def _output_problem(seed, n=400):
    """A model whose top block is one Linear (MSE), a batch, and the exact
    per-sample gradient at the top interface h."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    g = torch.Generator().manual_seed(seed + 100)
    x, y = torch.randn(n, 6, generator=g, dtype=F64), torch.randint(0, 3, (n,), generator=g)
    with torch.no_grad():
        h = model[1](model[0](x))
        exact = (model[2](h) - F.one_hot(y, 3).double()) @ model[2].weight
    return model, x, y, h, exact


def test_the_exact_linear_output_sg_is_the_gradient():
    model, _, y, h, exact = _output_problem(0)
    A, c = ref.exact_linear_output_sg(model[2].weight.detach(), model[2].bias.detach())
    predicted = torch.cat([h, F.one_hot(y, 3).double()], 1) @ A.T + c
    assert rel_err(predicted, exact) <= 1e-13


def test_least_squares_linear_cdni_reaches_the_exact_gradient_and_dni_does_not():
    model, x, y, h, exact = _output_problem(1)
    onehot = F.one_hot(y, 3).double()
    A, c = ref.fit_linear_sg(torch.cat([h, onehot], 1), exact)
    assert rel_err(torch.cat([h, onehot], 1) @ A.T + c, exact) <= 1e-10  # on the batch it was fit to ...
    # ... and held-out samples from the same model
    g = torch.Generator().manual_seed(999)
    xt, yt = torch.randn(200, 6, generator=g, dtype=F64), torch.randint(0, 3, (200,), generator=g)
    with torch.no_grad():
        ht = model[1](model[0](xt))
        exact_t = (model[2](ht) - F.one_hot(yt, 3).double()) @ model[2].weight
    assert rel_err(torch.cat([ht, F.one_hot(yt, 3).double()], 1) @ A.T + c, exact_t) <= 1e-10
    # Without the label a linear SG cannot represent it: the residual stays large.
    A0, c0 = ref.fit_linear_sg(h, exact)
    assert rel_err(h @ A0.T + c0, exact) > 0.1


def _train_output_sg(conditioned, steps):
    model, x, y, h, exact = _output_problem(2)
    learner = DNI(model, conditioned=conditioned, loss="mse")
    optimizer = torch.optim.Adam(learner.sg_parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.995)
    for _ in range(steps):
        optimizer.zero_grad()
        model.zero_grad()  # the model stays fixed: only the SG module learns
        learner.step(x, y)
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        predicted = learner.synthesizers[0](h, learner._condition(y))
    return rel_err(predicted, exact), learner, model


def test_training_the_linear_cdni_converges_to_the_exact_gradient():
    err, learner, model = _train_output_sg(conditioned=True, steps=1500)
    assert err <= 1e-10, err
    # and its coefficients act as the closed form does on any (h, onehot)
    A, c = ref.exact_linear_output_sg(model[2].weight.detach(), model[2].bias.detach())
    lin = learner.synthesizers[0].net[0]
    g = torch.Generator().manual_seed(5)
    hs, ys = torch.randn(50, 4, generator=g, dtype=F64), torch.randint(0, 3, (50,), generator=g)
    inputs = torch.cat([hs, F.one_hot(ys, 3).double()], 1)
    assert rel_err(F.linear(inputs, lin.weight, lin.bias), inputs @ A.T + c) <= 1e-5


def test_training_the_unconditioned_linear_sg_does_not():
    err, _, _ = _train_output_sg(conditioned=False, steps=300)
    assert err > 0.1, err
