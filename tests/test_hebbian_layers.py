"""localgrad.hebbian: layers write -rate dW into .grad (any optimizer applies
it), learn greedily or all at once, keep their state in state_dict, and the
probe trains on the frozen features."""

import io

import pytest
import torch
from torch import nn

import localgrad
from localgrad import hebbian
from localgrad.reference import hebbian as ref

pytestmark = pytest.mark.filterwarnings("ignore:localgrad.ops")


def test_family_is_listed():
    assert "hebbian" in localgrad.FAMILIES
    assert localgrad.hebbian.HebbianLinear is hebbian.HebbianLinear


@pytest.mark.parametrize("rule", ref.RULE_NAMES)
def test_linear_writes_minus_the_update_into_grad(rule):
    torch.manual_seed(0)
    layer = hebbian.HebbianLinear(12, 5, rule, lr=0.1).double()
    layer.theta = torch.rand(5, dtype=torch.float64) if rule == "bcm" else layer.theta
    x = torch.randn(9, 12, dtype=torch.float64)
    w0 = layer.weight.detach().clone()
    theta0 = None if layer.theta is None else layer.theta.clone()
    out = layer(x)
    eu, eg = ref.hebbian_update(x, w0, rule, theta0, temperature=layer.temperature, p=layer.p, rank=layer.rank,
                                anti=layer.anti, lr=layer.lr, lr_power=layer.lr_power, normalize=layer.normalize)
    assert torch.allclose(out, eu, rtol=1e-12, atol=1e-12)
    assert torch.allclose(layer.weight.grad, eg, rtol=1e-12, atol=1e-14)
    torch.optim.SGD(layer.parameters(), lr=1.0).step()
    assert torch.allclose(layer.weight, w0 - eg)
    if rule == "bcm":
        assert torch.allclose(layer.theta, theta0 + 0.1 * ((eu * eu).mean(0) - theta0))


def test_eval_mode_and_frozen_layers_do_not_learn():
    layer = hebbian.HebbianLinear(6, 3, "softhebb")
    x = torch.randn(4, 6)
    layer.eval()
    layer(x)
    assert layer.weight.grad is None
    layer.train()
    layer.learning = False
    assert torch.allclose(layer(x), x @ layer.weight.T)
    assert layer.weight.grad is None


def test_conv_is_the_linear_rule_on_patches():
    torch.manual_seed(0)
    conv = hebbian.HebbianConv2d(2, 4, 3, "softhebb", padding=1).double()
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    w0 = conv.weight.detach().clone()
    out = conv(x)
    patches = nn.functional.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)
    eu, eg = ref.hebbian_update(patches, w0.reshape(4, -1), "softhebb", temperature=conv.temperature,
                                lr=conv.lr, lr_power=conv.lr_power, normalize=conv.normalize)
    assert torch.allclose(out, nn.functional.conv2d(x, w0, padding=1), atol=1e-12)
    assert torch.allclose(out.permute(0, 2, 3, 1).reshape(-1, 4), eu, atol=1e-12)
    assert torch.allclose(conv.weight.grad.reshape(4, -1), eg, rtol=1e-12, atol=1e-14)


def test_greedy_learning_trains_one_layer_at_a_time():
    torch.manual_seed(0)
    net = nn.Sequential(hebbian.HebbianLinear(10, 8, "softhebb", activation="relu"),
                        hebbian.HebbianLinear(8, 6, "softhebb"))
    x = torch.rand(40, 10)
    first = net[0].weight.detach().clone()
    second = net[1].weight.detach().clone()
    # Learn the first layer only: a model of one layer's stage.
    hebbian.learn(net[:1], x, epochs=1, batch_size=8)
    assert not torch.equal(net[0].weight, first)
    assert torch.equal(net[1].weight, second)
    after_first = net[0].weight.detach().clone()
    hebbian.learn(net, x, epochs=1, batch_size=8, greedy=True)
    assert not torch.equal(net[1].weight, second)
    # All at once: both move in the same steps.
    a, b = net[0].weight.detach().clone(), net[1].weight.detach().clone()
    hebbian.learn(net, x, epochs=1, batch_size=8, greedy=False)
    assert not torch.equal(net[0].weight, a) and not torch.equal(net[1].weight, b)
    assert not torch.equal(after_first, a)


def test_any_optimizer_applies_the_rule():
    torch.manual_seed(0)
    net = nn.Sequential(hebbian.HebbianLinear(10, 8, "oja"))
    x = torch.rand(32, 10)
    w0 = net[0].weight.detach().clone()
    hebbian.learn(net, x, epochs=1, batch_size=32, optimizer_factory=lambda p: torch.optim.Adam(p, lr=1e-3))
    # The same Adam step, applied by hand to the reference's grad.
    _, g = ref.hebbian_update(x, w0, "oja", lr=net[0].lr)
    expected = nn.Parameter(w0.clone())
    expected.grad = g
    torch.optim.Adam([expected], lr=1e-3).step()
    assert torch.allclose(net[0].weight, expected, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(net[0].weight, w0 - g)  # Adam's step, not SGD's


@pytest.mark.parametrize("rule", ["bcm", "softhebb"])
def test_resume_is_exact(rule):
    def make():
        torch.manual_seed(1)
        return nn.Sequential(hebbian.HebbianLinear(10, 6, rule), hebbian.HebbianLinear(6, 4, rule))

    x = torch.rand(64, 10)
    batches = x.split(8)

    def train(net, opt, part):
        for xb in part:
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                net(xb)
            opt.step()

    torch.manual_seed(0)
    net = make()
    opt = torch.optim.SGD(net.parameters(), lr=1.0, momentum=0.9)
    train(net, opt, batches[:4])
    buffer = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict()}, buffer)
    train(net, opt, batches[4:])

    other = make()
    with torch.no_grad():
        for prm in other.parameters():
            prm.normal_()  # different start: everything must come from the state
    other_opt = torch.optim.SGD(other.parameters(), lr=1.0, momentum=0.9)
    buffer.seek(0)
    state = torch.load(buffer)
    other.load_state_dict(state["model"])
    other_opt.load_state_dict(state["opt"])
    train(other, other_opt, batches[4:])
    for (key, a), b in zip(net.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), key
    if rule == "bcm":
        assert "0.theta" in net.state_dict() and net[0].theta.abs().sum() > 0


def test_probe_learns_and_beats_chance():
    from localgrad import data

    ds = data.digits()
    torch.manual_seed(0)
    net = nn.Sequential(hebbian.HebbianLinear(64, 200, "softhebb", activation="triangle"))
    hebbian.learn(net, ds.x_train, epochs=1)
    f_train, f_test = hebbian.features(net, ds.x_train), hebbian.features(net, ds.x_test)
    _, curve, loss = hebbian.fit_probe(f_train, ds.y_train, f_test, ds.y_test, 10, epochs=5)
    assert curve[-1] > 0.85, curve


@pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")
def test_layer_compiles_fullgraph():
    layer = hebbian.HebbianLinear(6, 3, "softhebb")
    x = torch.randn(4, 6)

    @torch.compile(fullgraph=True, backend="eager")
    def forward(x):
        return layer(x)

    out = forward(x)
    assert out.shape == (4, 3) and layer.weight.grad is not None


@pytest.mark.parametrize("rule", ["softhebb", "krotov", "bcm"])
def test_data_parallel_path_computes_the_same_step(monkeypatch, rule):
    """Under a process group the layer averages the raw update (and BCM's
    y^2) before normalising: with one rank's worth of averaging (the
    identity), that path must give the fused op's own step."""
    torch.manual_seed(0)
    x = torch.randn(16, 6, dtype=torch.float64)
    single = hebbian.HebbianLinear(6, 5, rule, dtype=torch.float64)
    parallel = hebbian.HebbianLinear(6, 5, rule, dtype=torch.float64)
    parallel.load_state_dict(single.state_dict())
    single(x)
    seen = []
    monkeypatch.setattr(localgrad.distributed, "world_size", lambda group=None: 2)
    monkeypatch.setattr(localgrad.distributed, "average_tensors", lambda ts, group=None: seen.append(len(ts)))
    parallel(x)
    assert seen == ([1, 1] if rule == "bcm" else [1])
    assert (single.weight.grad - parallel.weight.grad).abs().max() <= 1e-14 * single.weight.grad.abs().max()
    if rule == "bcm":
        assert torch.equal(single.theta, parallel.theta)


@pytest.mark.parametrize("row", ["softhebb", "krotov", "oja", "probe-raw", "probe-random"])
def test_demo_rows_run(row):
    from localgrad import data
    from localgrad.experiments import hebbian_rows as rows

    acc, loss, seconds, curve = rows.train_row(row, data.digits(), width=64, probe_epochs=2)
    assert len(curve) == 2 and acc > 0.3 and seconds > 0
