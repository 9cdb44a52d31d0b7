"""The feedback-alignment family (fa, usf, brsf, frsf) on Linear and Conv2d models."""

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from testing import DEVICES, assert_resume_is_exact, rel_err
from torch import nn

import localgrad
from localgrad import reference
from localgrad.feedback_alignment import FAConv2d, FALinear

F64 = torch.float64
FEEDBACK_RULES = ["fa", "usf", "brsf", "frsf"]


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + torch.relu(self.conv(x))


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(12, 9), nn.Tanh(), nn.Linear(9, 7), nn.ReLU(), nn.Linear(7, 4)
    ).to(F64)


def cnn(**conv):
    """A LeNet-like CNN with the modules convert must pass through."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, **conv),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        Residual(4),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Dropout(0.0),
        nn.Flatten(),
        nn.LazyLinear(5),
    ).to(F64)


def materialize(model, x):
    with torch.no_grad():
        model(x)
    return model


def converted_copy(model, rule, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return localgrad.convert(copy.deepcopy(model), rule=rule, **kw)


def feedback_layers(model):
    return [m for m in model.modules() if isinstance(m, (FALinear, FAConv2d))]


def grads(model, x, y):
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y).backward()
    return [x.grad] + [p.grad for p in model.parameters()]


def data(shape, n_classes, n=6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g, dtype=F64), torch.randint(0, n_classes, (n,), generator=g)


CONV_VARIANTS = [
    dict(),
    dict(stride=2, padding=2),
    dict(dilation=2, padding=1),
    dict(padding="same"),
    dict(stride=(2, 1), padding=(1, 0), bias=False),
]


def test_fa_with_feedback_equal_to_weight_is_backprop_mlp():
    model = mlp()
    fa = converted_copy(model, "fa")
    with torch.no_grad():
        for layer in feedback_layers(fa):
            layer.feedback.copy_(layer.weight)
    x, y = data((3, 4), 4)
    for a, b in zip(grads(fa, x, y), grads(model, x, y)):
        assert rel_err(a, b) <= 1e-12


@pytest.mark.parametrize("conv", CONV_VARIANTS)
def test_fa_with_feedback_equal_to_weight_is_backprop_cnn(conv):
    x, y = data((2, 12, 12), 5)
    model = materialize(cnn(**conv), x)
    fa = converted_copy(model, "fa")
    assert len(feedback_layers(fa)) == 4  # three convs (one inside Residual) and the Linear
    with torch.no_grad():
        for layer in feedback_layers(fa):
            layer.feedback.copy_(layer.weight)
    for a, b in zip(grads(fa, x, y), grads(model, x, y)):
        assert rel_err(a, b) <= 1e-12


def test_grouped_convolution():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 3)).to(F64)
    fa = converted_copy(model, "fa")
    with torch.no_grad():
        for layer in feedback_layers(fa):
            layer.feedback.copy_(layer.weight)
    x, y = data((4, 5, 5), 3)
    for a, b in zip(grads(fa, x, y), grads(model, x, y)):
        assert rel_err(a, b) <= 1e-12


@pytest.mark.parametrize("rule", FEEDBACK_RULES)
def test_fa_input_gradient_uses_the_feedback_matrix(rule):
    """The backward sends grad_y through B: grad_x = grad_y B, grad_W true."""
    torch.manual_seed(0)
    layer = converted_copy(nn.Sequential(nn.Linear(5, 3)).to(F64), rule)[0]
    x = torch.randn(4, 5, dtype=F64, requires_grad=True)
    g = torch.randn(4, 3, dtype=F64)
    layer(x).backward(g)
    b = layer.feedback  # for sign rules: the B of the backward just run
    assert rel_err(x.grad, g @ b) <= 1e-12
    assert rel_err(layer.weight.grad, g.T @ x.detach()) <= 1e-12
    assert rel_err(layer.bias.grad, g.sum(0)) <= 1e-12


@pytest.mark.parametrize("model_fn", [mlp, lambda: cnn(padding=1)])
def test_usf_equals_fa_with_feedback_sign_of_weight(model_fn):
    x, y = (data((3, 4), 4) if model_fn is mlp else data((2, 12, 12), 5))
    model = materialize(model_fn(), x)
    usf = converted_copy(model, "usf")
    fa = converted_copy(model, "fa")
    with torch.no_grad():
        for u, f in zip(feedback_layers(usf), feedback_layers(fa)):
            f.feedback.copy_(u.feedback_scale * torch.sign(f.weight))
    for a, b in zip(grads(usf, x, y), grads(fa, x, y)):
        assert rel_err(a, b) <= 1e-12
    # Default scale: the std of the weight's init U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    layer = feedback_layers(usf)[-1]
    assert layer.feedback_scale == pytest.approx(1 / math.sqrt(3 * layer.in_features))


def test_usf_tracks_the_weight_sign():
    model = converted_copy(mlp(), "usf", feedback_scale=1.0)
    layer = feedback_layers(model)[1]
    with torch.no_grad():
        layer.weight.neg_()
    x, y = data((3, 4), 4)
    grads(model, x, y)
    assert torch.equal(layer.feedback, torch.sign(layer.weight.detach()))


def test_brsf_redraws_every_update_and_matches_the_reference():
    model = converted_copy(mlp(), "brsf", seed=4)
    layer = feedback_layers(model)[1]
    x, y = data((3, 4), 4)
    seen = []
    for step in range(1, 4):
        grads(model, x, y)
        assert int(layer.feedback_step) == step
        expected = reference.sign_feedback(
            layer.weight.detach(), int(layer.feedback_seed), step, layer.feedback_scale, True
        )
        assert torch.equal(layer.feedback, expected)
        seen.append(layer.feedback.clone())
    assert not torch.equal(seen[0], seen[1])
    assert torch.equal(torch.sign(seen[0]), torch.sign(layer.weight.detach()))


def test_frsf_keeps_its_magnitudes():
    model = converted_copy(mlp(), "frsf", seed=4)
    layer = feedback_layers(model)[1]
    before = layer.feedback.clone()
    x, y = data((3, 4), 4)
    grads(model, x, y)
    grads(model, x, y)
    assert torch.equal(layer.feedback.abs(), before.abs())
    assert "feedback_step" in dict(layer.named_buffers())


def test_layers_get_distinct_feedback_and_seed_is_reproducible():
    a = converted_copy(mlp(), "fa", seed=1)
    b = converted_copy(mlp(), "fa", seed=1)
    c = converted_copy(mlp(), "fa", seed=2)
    la, lb, lc = feedback_layers(a), feedback_layers(b), feedback_layers(c)
    assert all(torch.equal(p.feedback, q.feedback) for p, q in zip(la, lb))
    assert not torch.equal(la[0].feedback, lc[0].feedback)
    bound = 1 / math.sqrt(la[0].in_features)
    assert la[0].feedback.abs().max() <= bound and la[0].feedback.abs().max() > 0.8 * bound


@pytest.mark.parametrize("rule", FEEDBACK_RULES)
def test_resumed_run_continues_bit_exactly(rule):
    x0, y0 = data((2, 12, 12), 5, n=8)
    base = materialize(cnn(padding=1), x0)
    batches = [data((2, 12, 12), 5, n=8) for _ in range(4)]
    batches = [(x + i, y) for i, (x, y) in enumerate(batches)]
    model = converted_copy(base, rule, seed=3)
    assert_resume_is_exact(model, lambda: converted_copy(base, rule, seed=99), batches, 2)


def test_state_dict_holds_feedback_of_the_weight_shape():
    model = converted_copy(mlp(), "brsf")
    state = model.state_dict()
    for name, layer in model.named_modules():
        if isinstance(layer, FALinear):
            assert state[f"{name}.feedback"].shape == layer.weight.shape
            assert f"{name}.feedback_step" in state and f"{name}.feedback_seed" in state
    state["1.feedback"] = torch.zeros(3, 3, dtype=F64)
    with pytest.raises(RuntimeError, match="feedback"):
        model.load_state_dict(state)


def test_modules_left_on_backprop_are_named_once():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"),
        nn.BatchNorm2d(2),
        nn.Conv2d(2, 2, 2, padding="same"),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3),
    )
    with pytest.warns(UserWarning) as record:
        localgrad.convert(model, rule="fa")
    assert len(record) == 1
    message = str(record[0].message)
    assert "0 (Conv2d, padding_mode='reflect')" in message
    assert "1 (BatchNorm2d)" in message
    assert "2 (Conv2d, padding='same' with an even receptive field)" in message
    assert type(model[0]) is nn.Conv2d and isinstance(model[4], FALinear)
    model(torch.randn(2, 1, 4, 4)).sum().backward()
    assert model[1].weight.grad is not None  # backprop reaches BatchNorm


def test_forward_is_unchanged_and_unconvert_restores_plain_layers():
    x, _ = data((2, 12, 12), 5)
    model = materialize(cnn(padding=1), x)
    fa = converted_copy(model, "usf")
    model.eval()
    fa.eval()
    assert torch.equal(fa(x), model(x))
    weight = fa[0].weight
    localgrad.unconvert(fa)
    assert type(fa[0]) is nn.Conv2d and fa[0].weight is weight
    assert type(fa[-1]) is nn.Linear
    assert not any("feedback" in k for k in fa.state_dict())


def test_bad_requests():
    with pytest.raises(ValueError, match="already converted"):
        localgrad.convert(converted_copy(mlp(), "fa"), rule="usf")
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        localgrad.convert(nn.Sequential(nn.ReLU()), rule="fa")
    with pytest.raises(ValueError, match="unknown rule"):
        localgrad.convert(mlp(), rule="sign")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rule", FEEDBACK_RULES)
def test_training_step_on_device_matches_float64(device, rule):
    x, y = data((2, 12, 12), 5, n=16)
    base = materialize(cnn(padding=1), x)
    ref = converted_copy(base, rule, seed=5)
    expected = grads(ref, x, y)
    model = converted_copy(base, rule, seed=5).to(device=device, dtype=torch.float32)
    actual = grads(model, x.to(device=device, dtype=torch.float32), y.to(device))
    for a, e in zip(actual, expected):
        # The bias of the conv before BatchNorm has a true gradient of 0: judge it absolutely.
        assert rel_err(a.cpu(), e) <= 1e-4 or e.abs().max() < 1e-12 and a.abs().max() < 1e-6


def test_learns_a_task():
    """Every rule fits a small nonlinear problem (loss down by half)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    y = ((x[:, 0] > 0).long() + (x[:, 1] * x[:, 2] > 0).long())
    for rule in FEEDBACK_RULES:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
        localgrad.convert(model, rule=rule)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(100):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.5 * losses[0], rule


@pytest.mark.parametrize("rule", [*FEEDBACK_RULES, "dfa"])
def test_torch_compile_gives_the_same_gradients(rule):
    """Converted models run under torch.compile (with graph breaks at the
    rules' Python hooks) and leave the same .grad as eager mode."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    eager = converted_copy(plain, rule, seed=1)
    compiled_model = converted_copy(plain, rule, seed=1)
    compiled = torch.compile(compiled_model, backend="aot_eager")
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    for _ in range(2):  # twice: brSF's counter advances the same way in both
        for m in (eager, compiled_model):
            m.zero_grad()
        F.cross_entropy(eager(x), y).backward()
        F.cross_entropy(compiled(x), y).backward()
        for a, b in zip(eager.parameters(), compiled_model.parameters()):
            assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)
