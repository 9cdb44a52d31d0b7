"""The DNI learner: splits, shapes, bad input refused naming the argument,
empty batches, .grad accumulation, state_dict, learning, the demo rows."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import localgrad
from localgrad.synthetic_gradients import DNI, SyntheticGradient
from testing import rel_err

F64 = torch.float64


def mlp(*widths, act=nn.ReLU, dtype=F64):
    torch.manual_seed(0)
    layers = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(dtype)


def data(n=8, n_in=6, n_out=3, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=g, dtype=dtype), torch.randint(0, n_out, (n,), generator=g)


def test_family_is_reached_from_the_package():
    assert localgrad.synthetic_gradients.DNI is DNI
    assert "synthetic_gradients" in localgrad.FAMILIES


def test_named_splits_and_interface_shapes():
    model = mlp(6, 5, 4, 3)  # Flatten, Linear, ReLU, Linear, ReLU, Linear
    post = DNI(model)
    assert post.split == [3, 5] and len(post.blocks) == 3
    assert [m.shape for m in post.synthesizers] == [(5,), (4,)] and post.n_outputs == 3
    pre = DNI(model, split="pre-activation", conditioned=True)
    assert pre.split == [2, 4]
    assert [m.n_condition for m in pre.synthesizers] == [3, 3]
    custom = DNI(model, split=[3])
    assert [m.shape for m in custom.synthesizers] == [(5,)]


def test_conv_interfaces_are_sized_by_an_example_input():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()
    with pytest.raises(ValueError, match="example_input"):
        DNI(model)
    x = torch.randn(5, 1, 4, 4, dtype=F64)
    assert DNI(model, example_input=x[:1]).synthesizers[0].shape == (32,)  # the flattened map
    learner = DNI(model, split=[2], example_input=x[:1])  # the interface after the ReLU, a 2x4x4 map
    assert learner.synthesizers[0].shape == (2, 4, 4)
    learner.step(x, torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 4, 4\) like example_input"):
        learner.step(x[:, :, :3], torch.tensor([0, 1, 2, 0, 1]))
    assert all(p.grad is not None for p in [*model.parameters(), *learner.sg_parameters()])


def test_sg_module_output_starts_at_zero_and_keeps_the_shape():
    m = SyntheticGradient((2, 3), n_condition=4, hidden=(5,), dtype=F64)
    h, c = torch.randn(7, 2, 3, dtype=F64), torch.randn(7, 4, dtype=F64)
    out = m(h, c)
    assert out.shape == h.shape and torch.count_nonzero(out) == 0
    assert isinstance(m.net[0], nn.Linear) and m.net[0].in_features == 10


@pytest.mark.parametrize("kwargs, error, match", [
    ({"split": [3, 3]}, ValueError, "split must be strictly increasing"),
    ({"split": [6]}, ValueError, r"split indices must lie in \[1, 5\]"),
    ({"split": [0]}, ValueError, "split"),
    ({"split": []}, ValueError, "split must name at least one cut"),
    ({"split": "middle"}, ValueError, "split must be a sequence of module indices or one of"),
    ({"split": 3}, TypeError, "split must be a sequence"),
    ({"split": [2.5]}, TypeError, "split"),
    ({"lam": 1.5}, ValueError, r"lam must lie in \[0, 1\]"),
    ({"lam": -0.1}, ValueError, "lam must be >= 0"),
    ({"lam": float("nan")}, ValueError, "lam must not be NaN"),
    ({"lam": "0.5"}, TypeError, "lam must be a real number"),
    ({"conditioned": "yes"}, TypeError, "conditioned must be a bool"),
    ({"loss": "hinge"}, ValueError, "loss must be one of ce, mse"),
    ({"sg_hidden": (0,)}, ValueError, "sg_hidden"),
    ({"sg_hidden": 5}, TypeError, "sg_hidden must be a sequence"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        DNI(mlp(6, 5, 4, 3), **kwargs)


def test_bad_models_are_refused():
    with pytest.raises(TypeError, match="model must be an nn.Sequential"):
        DNI(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="no interface"):
        DNI(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="empty"):
        DNI(nn.Sequential())


def test_ddp_wrapper_gets_a_hint():
    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    with pytest.raises(TypeError, match="not its DistributedDataParallel wrapper"):
        DNI(Wrapper(mlp(6, 5, 3)))


@pytest.mark.parametrize("make, error, match", [
    (lambda x, y: (x.float(), y), TypeError, "x must be torch.float64"),
    (lambda x, y: (x, y[:-1]), ValueError, r"class indices y must be an integer tensor of shape \(8,\)"),
    (lambda x, y: (x, y + 3), ValueError, r"class indices y must lie in \[0, 3\)"),
    (lambda x, y: (x, y.double()), ValueError, "loss 'ce' takes class indices y"),
    (lambda x, y: (x, y.bool()), ValueError, "class indices y"),
    (lambda x, y: (x, [0] * 8), TypeError, "y must be a tensor"),
    (lambda x, y: (x.tolist(), y), TypeError, "x must be a tensor"),
    (lambda x, y: (x[:, :4], y), ValueError, r"x must give \(batch, 6\) features to the first Linear"),
    (lambda x, y: (x[0], y), ValueError, r"x must give \(batch, 6\) features"),
])
def test_bad_batches_are_refused(make, error, match):
    learner = DNI(mlp(6, 5, 4, 3))
    x, y = make(*data())
    with pytest.raises(error, match=match):
        learner.step(x, y)


def test_float_mse_targets_are_checked():
    learner = DNI(mlp(6, 5, 4, 3), loss="mse", conditioned=True)
    x, _ = data()
    with pytest.raises(ValueError, match=r"float targets y must have shape \(8, 3\)"):
        learner.step(x, torch.zeros(8, 4, dtype=F64))
    bad = torch.zeros(8, 3, dtype=F64)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN"):
        learner.step(x, bad)
    learner.step(x, torch.randn(8, 3, dtype=F64))


@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_an_empty_batch_writes_zero_gradients(conditioned, loss):
    model = mlp(6, 5, 4, 3)
    learner = DNI(model, conditioned=conditioned, loss=loss, sg_hidden=(3,))
    x, y = data(0)
    out = learner.step(x, y)
    assert out.item() == 0.0
    for p in [*model.parameters(), *learner.sg_parameters()]:
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0


def test_step_accumulates_into_grad():
    model = mlp(6, 5, 4, 3)
    learner = DNI(model, conditioned=True)
    with torch.no_grad():
        for p in learner.sg_parameters():
            p.normal_()
    x, y = data()
    learner.step(x, y)
    once = [p.grad.clone() for p in [*model.parameters(), *learner.sg_parameters()]]
    learner.step(x, y)
    for p, g in zip([*model.parameters(), *learner.sg_parameters()], once):
        assert rel_err(p.grad, 2 * g) <= 1e-14


def test_frozen_parameters_get_no_grad():
    model = mlp(6, 5, 4, 3)
    model[1].weight.requires_grad_(False)
    learner = DNI(model, lam=1.0)
    learner.step(*data())
    assert model[1].weight.grad is None and model[1].bias.grad is not None


def test_state_dict_round_trip_continues_exactly():
    x, y = data(16)
    a_model, b_model = mlp(6, 5, 4, 3), mlp(6, 5, 4, 3)
    a, b = DNI(a_model, conditioned=True), DNI(b_model, conditioned=True)
    opt = torch.optim.SGD([*a_model.parameters(), *a.sg_parameters()], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        a.step(x, y)
        opt.step()
    b_model.load_state_dict(a_model.state_dict())
    b.load_state_dict(a.state_dict())
    for learner, model in ((a, a_model), (b, b_model)):
        model.zero_grad()
        learner.synthesizers.zero_grad()
        learner.step(x, y)
    for p, q in zip([*a_model.parameters(), *a.sg_parameters()], [*b_model.parameters(), *b.sg_parameters()]):
        assert torch.equal(p.grad, q.grad)
    with pytest.raises(ValueError, match="conditioned"):
        DNI(mlp(6, 5, 4, 3)).load_state_dict(a.state_dict())


@pytest.mark.parametrize("conditioned", [False, True])
def test_dni_learns_a_small_problem(conditioned):
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(256, 6, generator=g, dtype=F64)
    with torch.no_grad():
        y = teacher(x).argmax(1)
    model = mlp(6, 16, 16, 3)
    learner = DNI(model, conditioned=conditioned, split="pre-activation")
    opt = torch.optim.Adam([*model.parameters(), *learner.sg_parameters()], lr=1e-2)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = learner.step(x, y)
        first = loss.item() if first is None else first
        opt.step()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).double().mean().item()
    assert learner.step(x, y).item() < 0.5 * first and acc > 0.85, (first, loss.item(), acc)


def test_float32_and_lower_blocks_learn_once_the_modules_have():
    model = mlp(6, 8, 8, 3, dtype=torch.float32)
    learner = DNI(model, conditioned=True)
    x, y = data(32, dtype=torch.float32)
    opt = torch.optim.SGD(learner.sg_parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        learner.step(x, y)
        opt.step()
    model.zero_grad()
    learner.step(x, y)
    assert model[1].weight.grad.abs().sum() > 0 and model[1].weight.grad.dtype == torch.float32


def test_demo_rows_are_wired_but_not_default(monkeypatch):
    from localgrad import cli
    from localgrad.experiments import demo

    assert set(localgrad.rules(family="synthetic_gradients")) == {"dni", "cdni"}
    assert not {"dni", "cdni"} & set(demo.DEFAULT_RULES)
    seen = {}
    monkeypatch.setattr(demo, "run", lambda rules, **kw: seen.setdefault("rules", rules))
    assert cli.main(["demo", "--rules", "backprop,dni,cdni"]) == 0
    assert seen["rules"] == ["backprop", "dni", "cdni"]
    learner = localgrad.learner(demo.mlp([784, 256, 256, 10]), "cdni").inner
    assert learner.conditioned and learner.split == [2, 4] and learner.lam == 0.0


def test_the_dni_learner_refuses_conv_nets_naming_the_layer():
    from localgrad.experiments import demo

    with pytest.raises(localgrad.UnsupportedModelError, match=r"model\.1 is a Conv2d"):
        localgrad.learner(demo.lenet(10), "dni")
