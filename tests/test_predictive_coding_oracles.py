"""Exact oracles of predictive coding (float64): Z-IL and FPA equal backprop,
IL's inference descends its energy, and IL's update tends to backprop's as
the output is weakly nudged."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from localgrad import ops
from localgrad.predictive_coding import PredictiveCoding
from localgrad.reference import predictive_coding as ref
from testing import rel_err

ACTS = [nn.Tanh, nn.ReLU, nn.Sigmoid, lambda: nn.LeakyReLU(0.1)]


def make_mlp(depth, seed, widths=None, act=nn.Tanh):
    g = torch.Generator().manual_seed(seed)
    widths = widths or [7, 13, 9, 11, 6, 8][: depth + 1]
    layers = [nn.Flatten()]
    for i in range(depth):
        lin = nn.Linear(widths[i], widths[i + 1]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g, dtype=torch.float64) * 0.6)
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g, dtype=torch.float64) * 0.3)
        layers.append(lin)
        if i < depth - 1:
            layers.append(act())
    x = torch.randn(10, widths[0], generator=g, dtype=torch.float64)
    y = torch.randint(0, widths[depth], (10,), generator=g)
    return nn.Sequential(*layers), x, y


def backprop_grads(model, x, y, loss):
    model.zero_grad()
    out = model(x)
    if loss == "mse":
        value = 0.5 * (out - F.one_hot(y, out.shape[1]).double()).pow(2).sum(1).mean()
    else:
        value = F.cross_entropy(out, y)
    value.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads, value.detach()


def pc_grads(model, x, y, **kwargs):
    model.zero_grad()
    loss = PredictiveCoding(model, **kwargs).step(x, y)
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads, loss


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("act", range(len(ACTS)))
def test_zil_equals_backprop(depth, loss, act):
    model, x, y = make_mlp(depth, seed=depth * 10 + act, act=ACTS[act])
    expected, bp_loss = backprop_grads(model, x, y, loss)
    got, pc_loss = pc_grads(model, x, y, variant="zil", loss=loss)
    torch.testing.assert_close(pc_loss, bp_loss, rtol=1e-14, atol=0)
    for g, e in zip(got, expected):
        assert rel_err(g, e) <= 1e-10


def test_zil_single_layer_is_the_delta_rule():
    model, x, y = make_mlp(1, seed=3)
    expected, _ = backprop_grads(model, x, y, "mse")
    got, _ = pc_grads(model, x, y, variant="zil")
    for g, e in zip(got, expected):
        assert rel_err(g, e) <= 1e-12


@pytest.mark.parametrize("depth", [2, 3, 5])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_fpa_equals_backprop_from_L_steps(depth, loss):
    model, x, y = make_mlp(depth, seed=100 + depth, act=nn.Tanh)
    expected, _ = backprop_grads(model, x, y, loss)
    for steps in (depth, depth + 3):
        got, _ = pc_grads(model, x, y, variant="fpa", loss=loss, steps=steps)
        for g, e in zip(got, expected):
            assert rel_err(g, e) <= 1e-10
    # One step short, the first layer has not heard of the error yet.
    got, _ = pc_grads(model, x, y, variant="fpa", loss=loss, steps=depth - 2)
    assert rel_err(got[0], expected[0]) > 1e-3


def _mlp_args(model):
    lins = [m for m in model if isinstance(m, nn.Linear)]
    learner = PredictiveCoding(model)
    return [m.weight.detach() for m in lins], [m.bias.detach() for m in lins], learner.kinds, learner.slopes


# Smooth activations: with ReLU the energy is only piecewise smooth, and a
# step that crosses a kink may raise it by O(gamma^2).
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("act", [0, 2])
def test_il_energy_never_increases(loss, act):
    model, x, y = make_mlp(4, seed=7, act=ACTS[act])
    weights, biases, kinds, slopes = _mlp_args(model)
    target = F.one_hot(y, weights[-1].shape[0]).double()
    states = ref.forward(x, weights, biases, kinds, slopes)[:-1]
    energies = [ref.energy(x, weights, biases, states, target, kinds, slopes, ref.LOSSES[loss]).item()]
    for _ in range(200):
        ops.predictive_coding_infer(x, weights, biases, states, target, kinds, slopes, variant="il",
                                    loss=loss, steps=1, gamma=0.05)
        energies.append(ref.energy(x, weights, biases, states, target, kinds, slopes, ref.LOSSES[loss]).item())
    diffs = [b - a for a, b in zip(energies, energies[1:])]
    assert max(diffs) <= 1e-12 * energies[0]
    assert energies[-1] < 0.99 * energies[0]


def test_il_update_tends_to_backprop_under_weak_nudging():
    """Output energy weighted by beta (its precision): IL at equilibrium,
    divided by beta, approaches backprop's update with an O(beta) error."""
    model, x, y = make_mlp(3, seed=11, act=nn.Tanh)
    weights, biases, kinds, slopes = _mlp_args(model)
    expected, _ = backprop_grads(model, x, y, "mse")
    ff = ref.forward(x, weights, biases, kinds, slopes)
    target = F.one_hot(y, weights[-1].shape[0]).double()
    errs = []
    for beta in [0.004, 0.002, 0.001, 0.0005]:
        states = [a.clone() for a in ff[:-1]]
        errors = ops.predictive_coding_infer(x, weights, biases, states, target, kinds, slopes, variant="il",
                                             output_precision=beta, steps=1500, gamma=0.05)
        gw, gb = ops.predictive_coding_update(x, states, errors, kinds, slopes, -1.0 / (beta * x.shape[0]))
        got = [t for pair in zip(gw, gb) for t in pair]
        errs.append(max(rel_err(g, e) for g, e in zip(got, expected)))
    orders = [math.log(a / b) / math.log(2) for a, b in zip(errs, errs[1:])]
    assert errs[-1] < 0.02, errs
    for order in orders:
        assert 0.85 < order < 1.15, (errs, orders)


def test_ipc_with_sgd_reproduces_its_inner_weight_steps():
    model, x, y = make_mlp(3, seed=5)
    weights, biases, kinds, slopes = _mlp_args(model)
    target = F.one_hot(y, weights[-1].shape[0]).double()
    states = ref.forward(x, weights, biases, kinds, slopes)[:-1]
    lr = 0.05
    _, _, w_end, b_end = ref.predictive_coding_infer(x, weights, biases, states, target, kinds, slopes,
                                                     ref.IPC, ref.MSE, 1.0, 7, 0.1, lr / x.shape[0])
    learner = PredictiveCoding(model, variant="ipc", steps=7, gamma=0.1, ipc_lr=lr)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    learner.step(x, y)
    opt.step()
    lins = [m for m in model if isinstance(m, nn.Linear)]
    for m, w, b in zip(lins, w_end, b_end):
        assert rel_err(m.weight.detach(), w) <= 1e-12
        assert rel_err(m.bias.detach(), b) <= 1e-12


def make_cnn(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 9), nn.Sigmoid(), nn.Linear(9, 5),
    ).double()
    g = torch.Generator().manual_seed(seed)
    return model, torch.randn(6, 64, generator=g, dtype=torch.float64), torch.randint(0, 5, (6,), generator=g)


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("variant", ["zil", "fpa"])
def test_cnn_zil_and_fpa_equal_backprop(loss, variant):
    model, x, y = make_cnn(3)
    expected, bp_loss = backprop_grads(model, x, y, loss)
    got, pc_loss = pc_grads(model, x, y, variant=variant, loss=loss)
    torch.testing.assert_close(pc_loss, bp_loss, rtol=1e-14, atol=0)
    for g, e in zip(got, expected):
        assert rel_err(g, e) <= 1e-10


@pytest.mark.parametrize("variant", ["il", "fpa", "zil", "ipc"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_autograd_block_path_equals_fused_mlp_path(variant, loss):
    """The path Conv2d models take, run on an MLP, gives the fused op's update."""
    from localgrad.predictive_coding import generic

    model, x, y = make_mlp(4, seed=21, act=nn.Tanh)
    steps = 5 if variant in ("il", "ipc") else None
    expected, _ = pc_grads(model, x, y, variant=variant, loss=loss, steps=steps)
    start = [p.detach().clone() for p in model.parameters()]
    learner = PredictiveCoding(model, variant=variant, loss=loss, steps=steps)
    mods = list(model)
    blocks, pending = [], []
    for m in mods:
        if isinstance(m, nn.Linear):
            blocks.append(generic.Block(pending, m))
            pending = []
        else:
            pending.append(m)
    learner.blocks = blocks
    got, _ = pc_grads_with(learner, model, x, y)
    for g, e in zip(got, expected):
        assert rel_err(g, e) <= 1e-10
    # iPC moves the parameters inside inference and puts them back for the optimizer.
    assert all(torch.equal(p, p0) for p, p0 in zip(model.parameters(), start))


def pc_grads_with(learner, model, x, y):
    model.zero_grad()
    loss = learner.step(x, y)
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads, loss
