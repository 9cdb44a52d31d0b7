"""PEPITA: the learner's update equals Dellaferrera & Kreiman's formula
computed independently, sample by sample (float64, 1e-12); zero feedback
leaves the hidden layers alone; weight decay and weight mirroring (the
adaptive feedback of Srinivasan et al. 2024) as the reference computes them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from testing import linear_classes, rel_err

import localgrad
from localgrad.reference.pepita import mirror_updates, pepita_updates


def mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(),
                         nn.Linear(5, 3)).to(dtype)


def batch(n=5, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def linears(model):
    return [m for m in model if isinstance(m, nn.Linear)]


def loop_level_update(model, feedback, x, y, loss="ce"):
    """The paper's Algorithm 1, one sample and one unit at a time."""
    layers = linears(model)
    acts = [torch.relu, torch.tanh, lambda t: t]
    n_out = layers[-1].out_features
    dw = [torch.zeros_like(l.weight) for l in layers]
    db = [torch.zeros_like(l.bias) for l in layers]
    for n in range(x.shape[0]):
        def forward(h0):
            hs = [h0]
            for layer, act in zip(layers, acts):
                z = torch.stack([sum(layer.weight[i, j] * hs[-1][j] for j in range(layer.in_features)) + layer.bias[i]
                                 for i in range(layer.out_features)])
                hs.append(act(z))
            return hs

        hs = forward(x[n])
        target = F.one_hot(y[n], n_out).to(x)
        out = hs[-1]
        e = torch.exp(out) / torch.exp(out).sum() - target if loss == "ce" else out - target
        modulated = torch.stack([x[n, i] + sum(feedback[i, k] * e[k] for k in range(n_out)) for i in range(x.shape[1])])
        hm = forward(modulated)
        for l, layer in enumerate(layers):
            for i in range(layer.out_features):
                delta = e[i] if l == len(layers) - 1 else hs[l + 1][i] - hm[l + 1][i]
                db[l][i] += delta / x.shape[0]
                for j in range(layer.in_features):
                    dw[l][i, j] += delta * hm[l][j] / x.shape[0]
    return dw, db


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_update_is_the_papers_formula_sample_by_sample(loss):
    model = mlp()
    # A feedback scale 100x the paper's, so that the modulation moves the hidden units measurably.
    learner = localgrad.learner(model, "pepita", seed=2, feedback_scale=5.0, loss=loss)
    x, y = batch()
    with torch.no_grad():
        dw, db = loop_level_update(mlp(), learner.feedback(), x, y, loss)
    learner.step(x, y)
    for layer, w, b in zip(linears(model), dw, db):
        assert w.abs().max() > 1e-4  # every layer moves: the test can tell a wrong layer from a right one
        assert rel_err(layer.weight.grad, w) <= 1e-12 and rel_err(layer.bias.grad, b) <= 1e-12


def test_update_equals_the_reference():
    model = mlp()
    learner = localgrad.learner(model, "pepita", seed=3, weight_decay=0.01)
    x, y = batch(7)
    ref = mlp()
    layers = [(l.weight.detach(), l.bias.detach(), act) for l, act in zip(linears(ref), [torch.relu, torch.tanh,
                                                                                          lambda t: t])]
    expected = pepita_updates(layers, x, F.one_hot(y, 3).double(), learner.feedback(), weight_decay=0.01)
    learner.step(x, y)
    for layer, (w, b) in zip(linears(model), expected):
        assert rel_err(layer.weight.grad, w) <= 1e-12 and rel_err(layer.bias.grad, b) <= 1e-12


def test_zero_feedback_leaves_the_hidden_layers_alone_and_the_output_layer_gets_cross_entropys_gradient():
    model = mlp()
    learner = localgrad.learner(model, "pepita", feedback_scale=0.0)
    assert not learner.feedback().any()
    x, y = batch()
    learner.step(x, y)
    layers = linears(model)
    for layer in layers[:-1]:
        assert not layer.weight.grad.any() and not layer.bias.grad.any()
    ref = mlp()
    F.cross_entropy(ref(x), y).backward()
    assert rel_err(layers[-1].weight.grad, linears(ref)[-1].weight.grad) <= 1e-12
    assert rel_err(layers[-1].bias.grad, linears(ref)[-1].bias.grad) <= 1e-12


def test_fixed_feedback_has_the_papers_scale_and_comes_from_the_seed():
    a = localgrad.learner(mlp(), "pepita", seed=4)
    b = localgrad.learner(mlp(), "pepita", seed=4)
    c = localgrad.learner(mlp(), "pepita", seed=5)
    f = a.feedback()
    assert f.shape == (8, 3) and torch.equal(f, b.feedback()) and not torch.equal(f, c.feedback())
    bound = 0.05 * math.sqrt(6 / 3)
    assert f.abs().max() <= bound and f.abs().max() > 0.8 * bound


def test_weight_mirroring_trains_the_feedback_maps_as_the_reference_does():
    model = mlp()
    learner = localgrad.learner(model, "pepita", seed=6, feedback="mirror", mirror_batch=9)
    shapes = [tuple(b.shape) for b in learner.parameters()]
    assert shapes == [(8, 6), (6, 5), (5, 3)]
    f = learner.feedback()
    assert torch.allclose(f, learner.parameters()[0] @ learner.parameters()[1] @ learner.parameters()[2])
    x, y = batch()
    noise = learner.draw_mirror_noise()
    assert [tuple(n.shape) for n in noise] == [(9, 8), (9, 6), (9, 5)] and abs(float(torch.cat(
        [n.flatten() for n in noise[:1]]).mean())) < 1e-12
    ref = mlp()
    layers = [(l.weight.detach(), l.bias.detach(), act) for l, act in zip(linears(ref), [torch.relu, torch.tanh,
                                                                                          lambda t: t])]
    expected = pepita_updates(layers, x, F.one_hot(y, 3).double(), f)
    expected_mirror = mirror_updates(layers, noise)
    learner.step(x, y)
    for layer, (w, _) in zip(linears(model), expected):
        assert rel_err(layer.weight.grad, w) <= 1e-12
    for b, e in zip(learner.parameters(), expected_mirror):
        assert rel_err(b.grad, e) <= 1e-12
    assert not torch.equal(noise[0], learner.draw_mirror_noise()[0])  # a new draw every step


def test_mirroring_aligns_the_feedback_with_the_transposed_forward_map():
    """Descending the mirror gradients makes F = B_1 B_2 B_3 point along
    -(W_3 W_2 W_1)^T on a linear net: the alignment the 2024 paper builds
    on (cosine 0.00 at the random start, 0.97 after 400 steps here). The
    optimizer decays B, as the authors' mirroring does: it forgets the
    random start."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 5), nn.Linear(5, 3)).double()
    learner = localgrad.learner(model, "pepita", seed=1, feedback="mirror", mirror_batch=64)
    opt = torch.optim.SGD(learner.parameters(), lr=0.5, weight_decay=0.01)
    w = (model[2].weight @ model[1].weight @ model[0].weight).T.detach()
    cos = lambda: F.cosine_similarity(learner.feedback().flatten(), -w.flatten(), dim=0).item()
    assert abs(cos()) < 0.2
    for _ in range(400):
        opt.zero_grad()
        learner._mirror()
        learner.counter[1] += 1
        opt.step()
    assert cos() > 0.9


def test_refuses_what_is_not_a_stock_mlp_and_bad_options_by_name():
    with pytest.raises(localgrad.UnsupportedModelError, match=r"model\[1\] \(Conv1d\)"):
        localgrad.learner(nn.Sequential(nn.Linear(4, 4), nn.Conv1d(1, 1, 1), nn.Linear(4, 2)), "pepita")
    for options, error, match in [({"feedback": "learned"}, ValueError, "feedback must be one of"),
                                  ({"loss": "hinge"}, ValueError, "loss must be 'ce' or 'mse'"),
                                  ({"feedback_scale": -1.0}, ValueError, "feedback_scale must be >= 0"),
                                  ({"weight_decay": float("nan")}, ValueError, "weight_decay must not be NaN"),
                                  ({"mirror_batch": 0}, ValueError, "mirror_batch must be >= 1")]:
        with pytest.raises(error, match=match):
            localgrad.learner(mlp(), "pepita", **options)


def test_float32_agrees_with_float64():
    x, y = batch(6)
    grads = {}
    for dtype in (torch.float64, torch.float32):
        model = mlp(dtype=dtype)
        localgrad.learner(model, "pepita", seed=2, feedback_scale=1.0).step(x.to(dtype), y)
        grads[dtype] = [p.grad for p in model.parameters()]
    for a, b in zip(grads[torch.float32], grads[torch.float64]):
        assert rel_err(a, b) <= 1e-5


@pytest.mark.parametrize("feedback", ["fixed", "mirror"])
def test_a_few_hundred_steps_learn_a_separable_task(feedback):
    x, y = linear_classes(8)
    model = mlp()
    learner = localgrad.learner(model, "pepita", feedback=feedback)
    opt = learner.default_optimizer(0.05)
    for step in range(300):
        rows = slice(32 * (step % 16), 32 * (step % 16 + 1))
        opt.zero_grad()
        learner.step(x[rows], y[rows])
        opt.step()
    assert (model(x).argmax(1) == y).double().mean() > 0.7  # chance: about 1/3
