"""TargetProp, the user-facing learner: its contract with the model, the
optimizer, state_dict and torch.distributed, and what it refuses."""

import copy
import io

import pytest
import torch
from torch import nn

import localgrad
from localgrad.target_prop import VARIANTS, TargetProp
from localgrad.target_prop import learner as learner_module

DT = torch.float64


def mlp(seed=0, dtype=DT):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 9), nn.Tanh(), nn.Linear(9, 7), nn.ReLU(),
                         nn.Linear(7, 4)).to(dtype)


def square(seed=0, dtype=DT):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.LeakyReLU(0.1), nn.Linear(6, 6), nn.Tanh(),
                         nn.Linear(6, 6)).to(dtype)


def model_for(variant, seed=0, dtype=DT):
    return square(seed, dtype) if variant == "gait" else mlp(seed, dtype)


def batch(n=6, dtype=DT, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 4, generator=g, dtype=dtype), torch.randint(0, 4, (n,), generator=g)


def test_family_is_listed():
    assert "target_prop" in localgrad.FAMILIES
    assert localgrad.target_prop.TargetProp is TargetProp
    assert set(VARIANTS) == {"tp", "dtp", "ddtp", "ldrl", "gait"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_stays_an_ordinary_module_and_every_parameter_gets_grad(variant):
    model = model_for(variant)
    x, y = batch()
    before = model(x)
    learner = TargetProp(model, variant=variant)
    loss = learner.step(x, y)
    assert type(model) is nn.Sequential
    assert torch.equal(model(x), before)
    assert torch.allclose(loss, nn.functional.cross_entropy(before, y), rtol=1e-14, atol=0)
    params = [*model.parameters(), *learner.feedback_parameters()]
    assert all(p.grad is not None and p.grad.shape == p.shape and torch.isfinite(p.grad).all() for p in params)
    assert (len(learner.feedback_parameters()) == 0) == (variant == "gait")


def test_feedback_shapes():
    model = mlp()
    layerwise = TargetProp(model, "dtp").feedback
    assert [tuple(m.weight.shape) for m in layerwise] == [(9, 7), (7, 4)]
    assert [tuple(m.bias.shape) for m in layerwise] == [(9,), (7,)]
    direct = TargetProp(model, "ddtp").feedback
    assert [tuple(m.weight.shape) for m in direct] == [(9, 4), (7, 4)] and direct[0].bias is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_grads_accumulate(variant):
    model = model_for(variant)
    x, y = batch()
    learner = TargetProp(model, variant=variant)
    state = learner.state_dict()
    learner.step(x, y)
    params = [*model.parameters(), *learner.feedback_parameters()]
    once = [p.grad.clone() for p in params]
    learner.load_state_dict(state)  # the same noise again
    learner.step(x, y)
    for p, g in zip(params, once):
        assert torch.allclose(p.grad, 2 * g, rtol=1e-13, atol=1e-300)


# Not "tp": without DTP's difference correction its targets are only as good
# as the learned inverses, and on this tiny net its loss does not fall in 150
# steps (Lee et al. 2015's reason for the correction); its demo row learns.
@pytest.mark.parametrize("variant", ["dtp", "ddtp", "ldrl", "gait"])
def test_any_optimizer_descends(variant):
    model = model_for(variant)
    x, y = batch(16)
    learner = TargetProp(model, variant=variant, beta=0.5)
    opt = torch.optim.Adam([*model.parameters(), *learner.feedback_parameters()], lr=0.01)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        losses.append(learner.step(x, y).item())
        opt.step()
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


@pytest.mark.parametrize("variant", ["dtp", "ldrl", "ddtp", "tp"])
def test_resume_is_bit_exact(variant):
    def run(learner, model, opt, steps, start):
        for s in range(start, start + steps):
            x, y = batch(5, seed=100 + s)
            opt.zero_grad()
            learner.step(x, y)
            opt.step()

    def fresh():
        model = mlp()
        learner = TargetProp(model, variant=variant, seed=3)
        opt = torch.optim.Adam([*model.parameters(), *learner.feedback_parameters()], lr=0.01)
        return model, learner, opt

    model, learner, opt = fresh()
    run(learner, model, opt, 6, 0)
    want = [p.detach().clone() for p in (*model.parameters(), *learner.feedback_parameters())]

    model, learner, opt = fresh()
    run(learner, model, opt, 3, 0)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "learner": learner.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    model2, learner2, opt2 = fresh()  # same seed, but a resumed run must take the saved noise state
    learner2.generator.manual_seed(999)
    model2.load_state_dict(saved["model"])
    learner2.load_state_dict(saved["learner"])
    opt2.load_state_dict(saved["opt"])
    run(learner2, model2, opt2, 3, 3)
    got = [p.detach() for p in (*model2.parameters(), *learner2.feedback_parameters())]
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_state_dict_holds_feedback_and_noise_state():
    learner = TargetProp(mlp(), "ldrl", seed=4)
    state = learner.state_dict()
    assert set(state) == {"variant", "feedback", "rng_state"}
    assert set(state["feedback"]) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    with pytest.raises(ValueError, match="variant 'ldrl'"):
        TargetProp(mlp(), "dtp").load_state_dict(state)


def test_seed_sets_feedback_and_noise_and_leaves_the_global_rng_alone():
    a, b = TargetProp(mlp(), "dtp", seed=1), TargetProp(mlp(), "dtp", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.feedback_parameters(), b.feedback_parameters()))
    c = TargetProp(mlp(), "dtp", seed=2)
    assert not torch.equal(a.feedback_parameters()[0], c.feedback_parameters()[0])
    model = mlp()
    state = torch.get_rng_state()
    learner = TargetProp(model, "ldrl", seed=5)
    learner.step(*batch())
    assert torch.equal(torch.get_rng_state(), state)  # feedback init and noise: the learner's own generator


def test_average_gradients_gets_every_parameter(monkeypatch):
    seen = []
    monkeypatch.setattr(learner_module, "average_gradients", lambda params, group=None: seen.append(list(params)))
    model = mlp()
    learner = TargetProp(model, "ldrl")
    learner.step(*batch())
    want = {id(p) for p in (*model.parameters(), *learner.feedback_parameters())}
    assert len(seen) == 1 and {id(p) for p in seen[0]} == want


def test_replicated_state_names_feedback_and_generator():
    from localgrad.distributed import replicated_state

    model = mlp()
    learner = TargetProp(model, "dtp")
    tensors, generators = replicated_state(learner)
    ids = {id(t) for t in tensors}
    assert all(id(p) in ids for p in (*model.parameters(), *learner.feedback_parameters()))
    assert generators == [learner.generator]


@pytest.mark.parametrize("variant", VARIANTS)
def test_empty_batch(variant):
    model = model_for(variant)
    learner = TargetProp(model, variant)
    loss = learner.step(*batch(0))
    assert loss.item() == 0
    params = [*model.parameters(), *learner.feedback_parameters()]
    assert all(bool((p.grad == 0).all()) for p in params)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_model(variant):
    model = model_for(variant, dtype=torch.float32)
    learner = TargetProp(model, variant)
    loss = learner.step(*batch(dtype=torch.float32))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad.dtype == torch.float32 for p in learner.feedback_parameters())


def test_mse_targets():
    model = mlp()
    x, _ = batch()
    y = torch.randn(6, 4, dtype=DT)
    loss = TargetProp(model, "dtp", loss="mse").step(x, y)
    assert torch.allclose(loss, 0.5 * (model(x) - y).pow(2).sum(1).mean())


@pytest.mark.parametrize("model,match", [
    (nn.Linear(3, 2), "model must be an nn.Sequential"),
    (nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), r"model\[0\] \(ReLU\) comes before the first Linear"),
    (nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.Linear(2, 2)), r"model\[1\] is BatchNorm1d"),
    (nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.1), nn.Linear(2, 2)), r"model\[1\] is Dropout"),
    (nn.Sequential(nn.Conv2d(1, 2, 3)), "a conv model must end with an nn.Linear"),  # Conv2d: test_target_prop_conv
    (nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Tanh(), nn.Linear(2, 2)), "a second activation"),
    (nn.Sequential(nn.Linear(3, 2, bias=False)), "without bias"),
    (nn.Sequential(nn.Flatten()), "no nn.Linear"),
])
def test_refuses_unsupported_models(model, match):
    with pytest.raises(ValueError, match=match):
        TargetProp(model)


@pytest.mark.parametrize("kwargs,match", [
    ({"variant": "bp"}, "variant must be one of"),
    ({"loss": "hinge"}, "loss must be one of"),
    ({"beta": 0}, "beta must be positive"),
    ({"beta": -0.1}, "beta must be positive"),
    ({"beta": float("nan")}, "beta must not be NaN"),
    ({"beta": float("inf")}, "beta must be finite"),
    ({"noise": 0}, "noise must be positive"),
    ({"gamma": float("nan")}, "gamma must not be NaN"),
    ({"lam": -1}, "lam must be >= 0"),
    ({"ortho": float("inf")}, "ortho must be finite"),
    ({"feedback": "mirror"}, "feedback must be one of nonlinear, gated"),
    ({"feedback": "gated", "variant": "ddtp"}, "variant 'ddtp' has none"),
])
def test_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TargetProp(mlp(), **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"seed": 2.5}, "seed must be an int"),
    ({"seed": "3"}, "seed must be an int"),
    ({"seed": True}, "seed must be an int"),
    ({"beta": "0.1"}, "beta must be a real number"),
    ({"lam": True}, "lam must be a real number"),
])
def test_refuses_arguments_of_the_wrong_type(kwargs, match):
    with pytest.raises(TypeError, match=match):
        TargetProp(mlp(), **kwargs)


def test_gait_refuses_non_square_and_non_invertible_layers():
    with pytest.raises(ValueError, match="'gait' needs square layers 2..L.*Linear layer 2 is 7 x 9"):
        TargetProp(mlp(), "gait")
    relu = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(ValueError, match="invertible activations.*layer 2 has RELU"):
        TargetProp(relu, "gait")
    flat = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 4), nn.LeakyReLU(0.0), nn.Linear(4, 4))
    with pytest.raises(ValueError, match="slope 0"):
        TargetProp(flat, "gait")
    TargetProp(nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 4)), "gait")  # layer 1: any shape, any activation


def test_refuses_bad_batches():
    learner = TargetProp(mlp())
    x, y = batch()
    with pytest.raises(ValueError, match=r"x must give \(batch, 12\) features"):
        learner.step(torch.randn(6, 5, dtype=DT), y)
    with pytest.raises(ValueError, match="x must be torch.float64"):
        learner.step(x.float(), y)
    with pytest.raises(ValueError, match=r"class indices y must have shape \(6,\)"):
        learner.step(x, y[:5])
    with pytest.raises(ValueError, match=r"class indices y must lie in \[0, 4\)"):
        learner.step(x, y + 4)
    with pytest.raises(ValueError, match=r"float targets y must have shape \(6, 4\)"):
        learner.step(x, torch.randn(6, 3, dtype=DT))
    with pytest.raises(ValueError, match="y must be a tensor"):
        learner.step(x, [0] * 6)


def test_refuses_fsdp_sharded_parameters(monkeypatch):
    from localgrad import distributed

    monkeypatch.setattr(distributed, "_is_sharded", lambda t: True)
    with pytest.raises(RuntimeError, match="TargetProp does not support FSDP2"):
        TargetProp(mlp()).step(*batch())


def test_deepcopy_of_the_model_is_independent():
    model = mlp()
    learner = TargetProp(model, "dtp")
    clone = copy.deepcopy(model)
    learner.step(*batch())
    assert all(p.grad is None for p in clone.parameters())


def test_gait_orthogonality_penalty():
    model = square()
    x, y = batch()
    plain = TargetProp(model, "gait")
    plain.step(x, y)
    base = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    TargetProp(model, "gait", ortho=0.5).step(x, y)
    for l, m in enumerate(m for m in model if isinstance(m, nn.Linear)):
        w = m.weight.detach()
        extra = 0.5 * w @ (w.T @ w - torch.eye(w.shape[1], dtype=DT)) if l else torch.zeros_like(w)
        assert torch.allclose(m.weight.grad, base[2 * l] + extra, rtol=1e-12, atol=1e-14)
        assert torch.equal(m.bias.grad, base[2 * l + 1])
    with pytest.raises(ValueError, match="ortho is GAIT-prop's"):
        TargetProp(mlp(), "dtp", ortho=0.1)
    with pytest.raises(ValueError, match="ortho must not be NaN"):
        TargetProp(model, "gait", ortho=float("nan"))


def test_train_feedback_iterations_equal_repeated_updates():
    """train_feedback(x, optimizer, K) is K manual (zero_grad, train_feedback,
    step) rounds on the batch: the forward pass, made once, is the same."""
    from localgrad.experiments.demo import mlp

    x = torch.randn(6, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    finals = []
    for fused in (True, False):
        torch.manual_seed(0)
        learner = TargetProp(mlp([10, 8, 6, 3]).double(), variant="ldrl", feedback="gated", samples=2, seed=4)
        opt = torch.optim.SGD(learner.feedback_parameters(), lr=0.1, momentum=0.9)
        if fused:
            learner.train_feedback(x, opt, 3)
        else:
            for _ in range(3):
                opt.zero_grad()
                learner.train_feedback(x)
                opt.step()
        finals.append([p.detach().clone() for p in learner.feedback_parameters()])
    for a, b in zip(*finals):
        assert torch.equal(a, b)
    assert not torch.equal(finals[0][0], TargetProp(mlp([10, 8, 6, 3]).double(), variant="ldrl", feedback="gated",
                                                    seed=4).feedback_parameters()[0])


def test_samples_and_iterations_are_checked():
    from localgrad.experiments.demo import mlp

    with pytest.raises(ValueError, match="samples"):
        TargetProp(mlp([4, 3, 2]), samples=0)
    with pytest.raises(TypeError, match="samples"):
        TargetProp(mlp([4, 3, 2]), samples=1.5)
    learner = TargetProp(mlp([4, 3, 2]), variant="dtp")
    with pytest.raises(ValueError, match="iterations"):
        learner.train_feedback(torch.randn(2, 4), None, 2)
