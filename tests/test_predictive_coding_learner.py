"""PredictiveCoding, the user-facing learner: its contract with the model,
the optimizer and torch.distributed, and what it refuses."""

import pytest
import torch
from torch import nn

import localgrad
from localgrad.predictive_coding import PredictiveCoding
from localgrad.predictive_coding import learner as learner_module


def mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 9), nn.Tanh(), nn.Linear(9, 7), nn.ReLU(),
                         nn.Linear(7, 4)).to(dtype)


def batch(n=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 4, generator=g, dtype=dtype), torch.randint(0, 4, (n,), generator=g)


def test_family_is_listed():
    assert "predictive_coding" in localgrad.FAMILIES
    assert localgrad.predictive_coding.PredictiveCoding is PredictiveCoding


@pytest.mark.parametrize("variant", ["il", "fpa", "zil", "ipc"])
def test_model_stays_an_ordinary_module(variant):
    model = mlp()
    x, y = batch()
    before = model(x)
    learner = PredictiveCoding(model, variant=variant, loss="ce")
    loss = learner.step(x, y)
    assert type(model) is nn.Sequential
    assert torch.equal(model(x), before)  # step only writes .grad
    assert torch.allclose(loss, nn.functional.cross_entropy(before, y), rtol=1e-14, atol=0)
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


def test_defaults_per_variant():
    model = mlp()
    assert (PredictiveCoding(model, "zil").steps, PredictiveCoding(model, "zil").gamma) == (2, 1.0)
    assert (PredictiveCoding(model, "fpa").steps, PredictiveCoding(model, "fpa").gamma) == (3, 1.0)
    assert (PredictiveCoding(model, "il").steps, PredictiveCoding(model, "il").gamma) == (20, 0.1)
    assert PredictiveCoding(model, "il", steps=5, gamma=0.2).steps == 5


def test_grads_accumulate_and_sgd_descends():
    model = mlp()
    x, y = batch()
    learner = PredictiveCoding(model, variant="zil", loss="ce")
    learner.step(x, y)
    once = [p.grad.clone() for p in model.parameters()]
    learner.step(x, y)
    for p, g in zip(model.parameters(), once):
        assert torch.allclose(p.grad, 2 * g, rtol=1e-14, atol=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        losses.append(learner.step(x, y).item())
        opt.step()
    assert losses[-1] < 0.2 * losses[0]


def test_average_gradients_gets_every_parameter(monkeypatch):
    seen = []
    monkeypatch.setattr(learner_module, "average_gradients", lambda params: seen.append(list(params)))
    model = mlp()
    PredictiveCoding(model, "il").step(*batch())
    assert len(seen) == 1 and {id(p) for p in seen[0]} == {id(p) for p in model.parameters()}


def test_empty_batch():
    model = mlp()
    x, y = batch(0)
    loss = PredictiveCoding(model, "il").step(x, y)
    assert loss.item() == 0
    assert all(bool((p.grad == 0).all()) for p in model.parameters())


def test_float32_model():
    model = mlp(dtype=torch.float32)
    x, y = batch(dtype=torch.float32)
    loss = PredictiveCoding(model, "ipc", loss="ce").step(x, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("model,match", [
    (nn.Linear(3, 2), "must be an nn.Sequential"),
    (nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), "only Flatten/Unflatten/Identity may act on the input"),
    (nn.Sequential(nn.Conv2d(1, 2, 3)), "must end with a Linear layer"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 2)), "BatchNorm2d"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.5), nn.Flatten(), nn.Linear(8, 2)), "deterministic"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU()), "must end with a Linear"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Tanh(), nn.Linear(2, 2)), "a second activation"),
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Conv2d(1, 2, 3)), "must end with a Linear layer"),
    (nn.Sequential(nn.Linear(3, 2, bias=False)), "without bias"),
    (nn.Sequential(nn.Flatten()), "no nn.Linear"),
])
def test_refuses_unsupported_models(model, match):
    with pytest.raises((TypeError, ValueError), match=match):
        PredictiveCoding(model)


def test_refuses_bad_arguments_and_batches():
    model = mlp()
    with pytest.raises(ValueError, match="variant must be one of"):
        PredictiveCoding(model, variant="bp")
    with pytest.raises(ValueError, match="loss must be one of"):
        PredictiveCoding(model, loss="hinge")
    with pytest.raises(ValueError, match="gamma must not be NaN"):
        PredictiveCoding(model, gamma=float("nan"))
    with pytest.raises(ValueError, match="ipc_lr must be > 0"):
        PredictiveCoding(model, variant="ipc", ipc_lr=0)
    learner = PredictiveCoding(model)
    x, y = batch()
    with pytest.raises(ValueError, match=r"x must give \(batch, 12\) features"):
        learner.step(torch.zeros(6, 13, dtype=torch.float64), y)
    with pytest.raises(TypeError, match="like the weights"):
        learner.step(x.float(), y)
    with pytest.raises(ValueError, match=r"class indices y must lie in \[0, 4\)"):
        learner.step(x, y + 4)
    with pytest.raises(ValueError, match=r"float targets y must have shape \(6, 4\)"):
        learner.step(x, torch.zeros(6, 3, dtype=torch.float64))
