"""Forward gradients (fg-weight, fg-activity, fg-local): the learner's
.grad equals the papers' estimator computed from backprop's gradient and the
same tangents (float64, 1e-12), the estimator is unbiased with error
falling as 1/sqrt(K), and options and models are checked by name."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from testing import linear_classes, rel_err

import localgrad
from localgrad.reference.forward_gradient import activity_estimate, weight_estimate


def mlp(seed=0, dtype=torch.float64, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(7, 6, bias=bias), nn.Tanh(), nn.Linear(6, 5, bias=bias), nn.ReLU(),
                         nn.Linear(5, 3, bias=bias)).to(dtype)


def batch(n=5, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 7, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def linears(model):
    return [m for m in model if isinstance(m, nn.Linear)]


def per_tangent(drawn):
    """[[u_l of tangent k] per layer] per tangent, from the learner's (K, batch, n_l) per layer."""
    return [[u[k] for u in drawn] for k in range(drawn[0].shape[0])]


def per_sample_z_grads(model, x, y, loss="ce"):
    """Backprop's per-sample dL_n/dz_l of every Linear, and every Linear's input."""
    zs, inputs = [], []
    h = x
    for m in model:
        if isinstance(m, nn.Linear):
            inputs.append(h.detach())
            h = m(h)
            h.retain_grad()
            zs.append(h)
        else:
            h = m(h)
    if loss == "ce":
        losses = F.cross_entropy(h, y, reduction="none")
    else:
        losses = 0.5 * (h - F.one_hot(y, h.shape[1]).to(h)).pow(2).sum(1)
    losses.sum().backward()
    return [z.grad for z in zs], inputs


@pytest.mark.parametrize("tangents", [1, 3])
def test_weight_perturbation_is_the_directional_derivative_times_the_tangent(tangents):
    model = mlp()
    learner = localgrad.learner(model, "fg-weight", seed=3, tangents=tangents)
    x, y = batch()
    drawn = learner.draw_tangents(x)
    reference = mlp()
    F.cross_entropy(reference(x), y).backward()
    names = [n for n, _ in reference.named_parameters()]
    assert set(drawn) == set(names) and all(v.shape[0] == tangents for v in drawn.values())
    expected = weight_estimate([p.grad for p in reference.parameters()],
                               [[drawn[n][k] for n in names] for k in range(tangents)])
    learner.step(x, y)
    for p, e in zip(model.parameters(), expected):
        assert rel_err(p.grad, e) <= 1e-12


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("tangents", [1, 2])
def test_activity_perturbation_matches_ren_et_al_from_backprops_per_sample_gradients(loss, tangents):
    model = mlp()
    learner = localgrad.learner(model, "fg-activity", seed=4, tangents=tangents, loss=loss)
    x, y = batch(6)
    drawn = learner.draw_tangents(x)
    grad_z, inputs = per_sample_z_grads(mlp(), x, y, loss)
    expected = activity_estimate(grad_z, inputs, per_tangent(drawn))
    learner.step(x, y)
    for layer, (dw, db) in zip(linears(model), expected):
        assert rel_err(layer.weight.grad, dw) <= 1e-12
        assert rel_err(layer.bias.grad, db) <= 1e-12


def test_local_losses_use_each_blocks_own_head_and_train_the_heads_exactly():
    model = mlp()
    learner = localgrad.learner(model, "fg-local", seed=5, tangents=2)
    x, y = batch(6)
    drawn = learner.draw_tangents(x)
    heads = [(h.weight.detach().clone(), h.bias.detach().clone()) for h in learner.heads]
    assert len(heads) == 2 and len(learner.parameters()) == 4
    # Backprop through each block alone, its input detached, against its own head's loss.
    grad_z, inputs, head_grads = [], [], []
    h = x.detach()
    for l, layer in enumerate(linears(model)):
        inputs.append(h)
        z = layer(h).detach().requires_grad_(True)
        act = {0: torch.tanh, 1: torch.relu, 2: lambda t: t}[l](z)
        if l < 2:
            w, b = (t.clone().requires_grad_(True) for t in heads[l])
            out = act @ w.T + b
            F.cross_entropy(out, y, reduction="sum").backward()
            head_grads.append((w.grad / len(y), b.grad / len(y)))
        else:
            F.cross_entropy(act, y, reduction="sum").backward()
        grad_z.append(z.grad)
        h = act.detach()
    expected = activity_estimate(grad_z, inputs, per_tangent(drawn), local=True)
    learner.step(x, y)
    for layer, (dw, db) in zip(linears(model), expected):
        assert rel_err(layer.weight.grad, dw) <= 1e-12 and rel_err(layer.bias.grad, db) <= 1e-12
    for head, (dw, db) in zip(learner.heads, head_grads):
        assert rel_err(head.weight.grad, dw) <= 1e-12 and rel_err(head.bias.grad, db) <= 1e-12


def test_the_mean_over_k_tangents_converges_to_backprop_at_one_over_sqrt_k():
    """For v ~ N(0, I) over P coordinates, E||mean_K (g.v)v - g||^2 =
    (P + 1) ||g||^2 / K: the relative error is sqrt((P + 1) / K). Averaged
    over 40 fixed seeds its square is within 30 % of that at every K (the
    spread of such a mean is a few percent), and it falls 16-fold over a
    256-fold K."""
    model = mlp()
    x, y = batch(8)
    reference = mlp()
    F.cross_entropy(reference(x), y).backward()
    g = torch.cat([p.grad.flatten() for p in reference.parameters()])
    n_params = g.numel()
    errors = {}
    for k in (4, 64, 1024):
        squares = []
        for seed in range(40 if k < 1024 else 10):
            model.zero_grad()
            localgrad.learner(model, "fg-weight", seed=seed, tangents=k).step(x, y)
            est = torch.cat([p.grad.flatten() for p in model.parameters()])
            squares.append(((est - g).norm() / g.norm()).item() ** 2)
        errors[k] = math.sqrt(sum(squares) / len(squares))
        expected = math.sqrt((n_params + 1) / k)
        assert 0.7 * expected <= errors[k] <= 1.3 * expected, (k, errors[k], expected)
    assert errors[1024] < errors[4] / 10


def test_activity_estimate_is_unbiased_through_the_learner():
    """Over U perturbed units the estimate of a sample's dL/dz has relative
    variance about (U + 1) / K; with U = 14 and K = 16,000 the weights'
    estimate is within a few percent of backprop's (Frobenius norm), a
    biased one (a missing layer, a wrong sign, a wrong input) 100 % off."""
    model = mlp()
    x, y = batch(4)
    reference = mlp()
    F.cross_entropy(reference(x), y).backward()
    localgrad.learner(model, "fg-activity", seed=11, tangents=16000).step(x, y)
    est = torch.cat([p.grad.flatten() for p in model.parameters()])
    ref = torch.cat([p.grad.flatten() for p in reference.parameters()])
    assert ((est - ref).norm() / ref.norm()).item() < 0.1


def test_tangents_change_every_step_and_come_from_the_seed_alone():
    x, y = batch()
    a = localgrad.learner(mlp(), "fg-weight", seed=1)
    b = localgrad.learner(mlp(), "fg-weight", seed=1)
    torch.manual_seed(123)  # the global generator plays no part
    first = a.draw_tangents(x)
    torch.manual_seed(456)
    assert all(torch.equal(first[n], t) for n, t in b.draw_tangents(x).items())
    a.step(x, y)
    second = a.draw_tangents(x)
    assert not any(torch.equal(first[n], t) for n, t in second.items())
    c = localgrad.learner(mlp(), "fg-weight", seed=2)
    assert not any(torch.equal(first[n], t) for n, t in c.draw_tangents(x).items())


def test_weight_perturbation_trains_any_module_and_skips_frozen_parameters():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(7, 4).double(), nn.Linear(4, 3).double()

        def forward(self, x):
            return self.b(torch.sin(self.a(x)))

    torch.manual_seed(0)
    net = Net()
    net.a.bias.requires_grad_(False)
    learner = localgrad.learner(net, "fg-weight")
    drawn = learner.draw_tangents(batch()[0])
    assert set(drawn) == {"a.weight", "b.weight", "b.bias"}
    learner.step(*batch())
    assert net.a.bias.grad is None and net.a.weight.grad is not None


def test_the_activity_rules_refuse_what_is_not_a_stock_mlp_by_name():
    with pytest.raises(localgrad.UnsupportedModelError, match=r"model\[1\] \(Conv1d\)"):
        localgrad.learner(nn.Sequential(nn.Linear(4, 4), nn.Conv1d(1, 1, 1), nn.Linear(4, 2)), "fg-activity")
    with pytest.raises(localgrad.UnsupportedModelError, match="must end with an nn.Linear"):
        localgrad.learner(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "fg-local")


@pytest.mark.parametrize("options, error, match", [
    ({"perturbation": "node"}, ValueError, "perturbation must be one of"),
    ({"loss": "hinge"}, ValueError, "loss must be 'ce' or 'mse'"),
    ({"tangents": 0}, ValueError, "tangents must be >= 1"),
    ({"tangents": 2.0}, TypeError, "tangents must be an int"),
    ({"perturbation": "weight", "local": True}, ValueError, "local losses are implemented with perturbation='activity'"),
])
def test_bad_options_are_named(options, error, match):
    with pytest.raises(error, match=match):
        localgrad.learner(mlp(), "fg-activity", **options)


@pytest.mark.parametrize("rule", ["fg-weight", "fg-activity", "fg-local"])
def test_float32_estimate_agrees_with_float64(rule):
    x, y = batch(6)
    grads = {}
    for dtype in (torch.float64, torch.float32):
        model = mlp(dtype=dtype)
        localgrad.learner(model, rule, seed=2).step(x.to(dtype), y)
        grads[dtype] = [p.grad for p in model.parameters()]
    for a, b in zip(grads[torch.float32], grads[torch.float64]):
        assert rel_err(a, b) <= 1e-4


@pytest.mark.parametrize("rule", ["fg-activity", "fg-local"])
def test_a_few_hundred_steps_learn_a_separable_task(rule):
    x, y = linear_classes(7)
    model = mlp()
    learner = localgrad.learner(model, rule, tangents=4)
    opt = learner.default_optimizer(1e-2)
    for step in range(300):
        rows = slice(32 * (step % 16), 32 * (step % 16 + 1))
        opt.zero_grad()
        learner.step(x[rows], y[rows])
        opt.step()
    assert (model(x).argmax(1) == y).double().mean() > 0.8
