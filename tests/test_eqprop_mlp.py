"""EqPropMLP: its API, its refusals, exact resumption and a small training run."""

import io

import pytest
import torch
from torch import nn

import localgrad
from localgrad import data
from localgrad.eqprop import EqPropMLP

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")


def batch(n=8, n_in=12, n_out=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, n_in, generator=g), torch.randint(0, n_out, (n,), generator=g)


def test_layers_are_linear_and_forward_returns_the_output_layer():
    model = EqPropMLP([12, 9, 7, 4], t_free=15)
    assert all(isinstance(m, nn.Linear) for m in model.layers)
    assert [(m.in_features, m.out_features) for m in model.layers] == [(12, 9), (9, 7), (7, 4)]
    x, _ = batch()
    out = model(x)
    states, ran = model.relax(x)
    assert out.shape == (8, 4) and torch.equal(out, states[-1])
    assert ((out >= 0) & (out <= 1)).all()  # hard sigmoid
    assert torch.equal(ran, torch.full((8,), 15))


@pytest.mark.parametrize(
    "options",
    [
        dict(nudging="centered"),
        dict(nudging="positive", update="async"),
        dict(nudging="negative", loss="ce"),
        dict(mode="chl"),
        dict(activation="sigmoid", loss="ce", update="async"),
        dict(activation="tanh"),
    ],
)
def test_eqprop_step_writes_every_grad(options):
    torch.manual_seed(0)
    model = EqPropMLP([12, 9, 4], t_free=20, t_nudge=8, **options)
    x, y = batch()
    loss, pred = model.eqprop_step(x, y)
    assert loss.ndim == 0 and torch.isfinite(loss) and pred.shape == (8,) and pred.dtype == torch.int64
    for p in model.parameters():
        assert p.grad is not None and p.grad.shape == p.shape and torch.isfinite(p.grad).all()
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())
    phases = {"centered": {"free", "negative", "positive"}, "positive": {"free", "positive"},
              "negative": {"free", "negative"}}
    expected = {"free", "clamped"} if options.get("mode") == "chl" else phases[options.get("nudging", "centered")]
    assert set(model.last_steps) == expected
    # .grad accumulates like backward(): a second call on the same batch doubles it.
    first = [p.grad.clone() for p in model.parameters()]
    model.eqprop_step(x, y)
    for p, g in zip(model.parameters(), first):
        assert torch.allclose(p.grad, 2 * g, rtol=1e-5, atol=1e-7)


def test_float_targets_equal_one_hot_class_indices():
    torch.manual_seed(0)
    model = EqPropMLP([12, 9, 4], t_free=10, t_nudge=5)
    x, y = batch()
    loss_idx, _ = model.eqprop_step(x, y)
    g_idx = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss_float, _ = model.eqprop_step(x, torch.nn.functional.one_hot(y, 4).float())
    assert loss_idx == loss_float
    for p, g in zip(model.parameters(), g_idx):
        assert torch.equal(p.grad, g)


def test_warm_start_from_previous_states():
    torch.manual_seed(0)
    model = EqPropMLP([12, 9, 4], t_free=10, update="async")
    x, _ = batch()
    states, _ = model.relax(x)
    continued, _ = model.relax(x, states)
    at_once, _ = model.relax(x, steps=20)
    for a, b in zip(continued, at_once):
        assert torch.equal(a, b)


def test_early_exit_through_tol():
    torch.manual_seed(0)
    model = EqPropMLP([12, 9, 4], t_free=500, tol=1e-7)
    with torch.no_grad():
        for m in model.layers:
            m.weight.mul_(0.5)
    _, ran = model.relax(torch.rand(8, 12))
    assert 0 < int(ran.max()) < 500


def test_empty_batch():
    model = EqPropMLP([12, 9, 4])
    loss, pred = model.eqprop_step(torch.zeros(0, 12), torch.zeros(0, dtype=torch.int64))
    assert pred.shape == (0,)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="beta must be > 0"):
        EqPropMLP([4, 3, 2], beta=0.0, nudging="centered")
    with pytest.raises(ValueError, match="beta must be > 0"):
        EqPropMLP([4, 3, 2], beta=-0.5)
    with pytest.raises(ValueError, match="nudging must be one of"):
        EqPropMLP([4, 3, 2], nudging="both")
    with pytest.raises(ValueError, match="update must be one of"):
        EqPropMLP([4, 3, 2], update="random")
    with pytest.raises(ValueError, match="sizes"):
        EqPropMLP([4])
    EqPropMLP([4, 3, 2], beta=0.0, mode="chl")  # CHL has no beta
    model = EqPropMLP([4, 3, 2])
    with pytest.raises(ValueError, match="x has NaN"):
        model.eqprop_step(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\)"):
        model(torch.zeros(2, 5))
    with pytest.raises(TypeError, match="x must be torch.float32"):
        model(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"class indices y must lie in \[0, 2\)"):
        model.eqprop_step(torch.zeros(2, 4), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="float targets y must have shape"):
        model.eqprop_step(torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="y has NaN"):
        model.eqprop_step(torch.zeros(2, 4), torch.full((2, 2), float("nan")))


def test_resume_is_exact():
    """All state is the weights: a reload with the optimizer continues bit for bit."""
    batches = [batch(seed=s) for s in range(6)]

    def train(model, opt, part):
        for x, y in part:
            opt.zero_grad()
            model.eqprop_step(x, y)
            opt.step()

    torch.manual_seed(0)
    model = EqPropMLP([12, 9, 4], t_free=10, t_nudge=4)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    train(model, opt, batches[:3])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    train(model, opt, batches[3:])

    torch.manual_seed(1)
    resumed = EqPropMLP([12, 9, 4], t_free=10, t_nudge=4)
    resumed_opt = torch.optim.Adam(resumed.parameters(), lr=0.01)
    buffer.seek(0)
    state = torch.load(buffer)
    resumed.load_state_dict(state["model"])
    resumed_opt.load_state_dict(state["opt"])
    train(resumed, resumed_opt, batches[3:])
    for (key, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


@pytest.mark.parametrize("mode,nudging", [("eqprop", "centered"), ("chl", "centered")])
def test_learns_digits(mode, nudging):
    """Seeded smoke run: a few epochs on scikit-learn's digits, far above
    chance (10%); measured 95% (centered EqProp) and 92% (CHL)."""
    torch.manual_seed(0)
    ds = data.digits(seed=0)
    model = EqPropMLP([64, 120, 10], beta=0.5, nudging=nudging, mode=mode, t_free=20, t_nudge=8)
    opt = torch.optim.SGD(
        [{"params": model.layers[0].parameters(), "lr": 0.1}, {"params": model.layers[1].parameters(), "lr": 0.05}],
        momentum=0.9,
    )
    order = torch.Generator().manual_seed(0)
    for _ in range(4):
        for xb, yb in data.batches(ds.x_train, ds.y_train, 32, generator=order):
            opt.zero_grad()
            model.eqprop_step(xb, yb)
            opt.step()
    accuracy = (model(ds.x_test).argmax(1) == ds.y_test).float().mean().item()
    assert accuracy > 0.75, accuracy


def test_demo_rows_train_the_stock_mlp_as_an_eqprop_network():
    """The demo's eqprop rows: localgrad.learner on the demo's MLP, SGD with per-layer rates."""
    from localgrad.experiments import demo

    dataset = data.digits(seed=0)
    for rule in localgrad.rules(family="eqprop"):
        result = demo.train(rule, dataset, [32], epochs=1, batch_size=256, lr=None, seed=0, progress=False)
        assert result.rule == rule and len(result.curve) == 1 and 0.0 <= result.test_accuracy <= 1.0
    centered = demo.train("eqprop", dataset, [32], epochs=2, batch_size=32, lr=None, seed=0, progress=False)
    assert centered.test_accuracy > 0.5, centered.test_accuracy
    with pytest.raises(localgrad.UnsupportedModelError, match="is not a Linear layer"):
        localgrad.learner(demo.lenet(10), "chl")
