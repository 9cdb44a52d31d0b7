"""convert(model, rule="dfa"): the gradients it leaves in .grad, and its state."""

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from testing import DEVICES, assert_resume_is_exact, rel_err, without_extension
from torch import nn

import localgrad
from localgrad.feedback_alignment import DFALinear

F64 = torch.float64


def mlp(*modules):
    torch.manual_seed(0)
    return nn.Sequential(*modules).to(F64)


def deep_mlp():
    return mlp(
        nn.Flatten(),
        nn.Linear(12, 9),
        nn.Tanh(),
        nn.Linear(9, 7),
        nn.ReLU(),
        nn.Linear(7, 6),
        nn.LeakyReLU(0.3),
        nn.Linear(6, 5),
        nn.Sigmoid(),
        nn.Linear(5, 8),  # no activation: identity
        nn.Linear(8, 4),
    )


def dfa_formula(model, x, y):
    """Nøkland 2016, written out independently of localgrad: hidden layer l gets
    delta_l = (e @ B_l) * f'(a_l), dW_l = delta_l^T x_l; the output layer its
    true gradient. Returns {parameter name: expected grad}."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    derivs = {
        nn.Tanh: lambda a: 1 - torch.tanh(a) ** 2,
        nn.ReLU: lambda a: (a > 0).to(a.dtype),
        nn.Sigmoid: lambda a: torch.sigmoid(a) * (1 - torch.sigmoid(a)),
    }
    h = x.flatten(1)
    inputs, slopes_of = [], []
    modules = [m for m in model if not isinstance(m, nn.Flatten)]
    pre = {}
    for i, m in enumerate(modules):
        if isinstance(m, nn.Linear):
            inputs.append(h)
            h = h @ m.weight.detach().T + m.bias.detach()
            pre[len(inputs) - 1] = h
            nxt = modules[i + 1] if i + 1 < len(modules) else None
            slopes_of.append(nxt)
        else:
            h = m(h)
    out = h.detach().requires_grad_(True)
    (e,) = torch.autograd.grad(F.cross_entropy(out, y), out)
    grads = {}
    for l, layer in enumerate(linears):
        if l == len(linears) - 1:
            delta = e
        else:
            act = slopes_of[l]
            a = pre[l]
            if isinstance(act, nn.LeakyReLU):
                d = torch.where(a > 0, torch.ones_like(a), torch.full_like(a, act.negative_slope))
            elif isinstance(act, nn.Linear) or act is None:
                d = torch.ones_like(a)
            else:
                d = derivs[type(act)](a)
            delta = (e @ layer.feedback) * d
        grads[id(layer.weight)] = delta.T @ inputs[l]
        grads[id(layer.bias)] = delta.sum(0)
    return grads


def run_step(model, x, y):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def test_gradients_match_the_dfa_formula():
    model = localgrad.convert(deep_mlp(), rule="dfa", seed=3)
    x = torch.randn(11, 3, 4, dtype=F64)
    y = torch.randint(0, 4, (11,))
    run_step(model, x, y)
    expected = dfa_formula(model, x, y)
    for p in model.parameters():
        assert p.grad is not None
        assert rel_err(p.grad, expected[id(p)]) <= 1e-12


def test_one_hidden_layer_with_feedback_equal_to_output_weight_is_backprop():
    """With B_1 = W_2 (both n_out x H_1) DFA's error is backprop's, exactly."""
    for act in (nn.ReLU(), nn.Tanh(), nn.Sigmoid()):
        plain = mlp(nn.Linear(10, 16), act, nn.Linear(16, 5))
        dfa = localgrad.convert(copy.deepcopy(plain), rule="dfa")
        with torch.no_grad():
            dfa[0].feedback.copy_(dfa[2].weight)
        x, y = torch.randn(13, 10, dtype=F64), torch.randint(0, 5, (13,))
        run_step(plain, x, y)
        run_step(dfa, x, y)
        for p, q in zip(plain.parameters(), dfa.parameters()):
            assert rel_err(q.grad, p.grad) <= 1e-12


def test_output_layer_keeps_its_true_gradient_and_hidden_layers_are_not_swept():
    model = localgrad.convert(deep_mlp(), rule="dfa")
    plain = localgrad.unconvert(copy.deepcopy(model))
    x, y = torch.randn(6, 12, dtype=F64), torch.randint(0, 4, (6,))
    # No backward sweep: the graph does not reach the input through the
    # layers; the hidden weights are reached through the DFA broadcast node
    # only, which gives them DFA's gradient (checked below), not backprop's.
    x_in = x.clone().requires_grad_()
    assert torch.autograd.grad(model(x_in).sum(), x_in, allow_unused=True) == (None,)
    run_step(model, x, y)
    run_step(plain, x, y)
    assert rel_err(model[-1].weight.grad, plain[-1].weight.grad) <= 1e-12
    assert rel_err(model[-1].bias.grad, plain[-1].bias.grad) <= 1e-12
    assert rel_err(model[1].weight.grad, plain[1].weight.grad) > 1e-3  # DFA is not backprop


def test_forward_matches_the_unconverted_model():
    plain = deep_mlp()
    model = localgrad.convert(copy.deepcopy(plain), rule="dfa")
    x = torch.randn(5, 12, dtype=F64)
    assert torch.equal(model(x), plain(x))
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


def test_gradients_accumulate_like_autograd():
    model = localgrad.convert(deep_mlp(), rule="dfa")
    x1, y1 = torch.randn(4, 12, dtype=F64), torch.randint(0, 4, (4,))
    x2, y2 = torch.randn(5, 12, dtype=F64), torch.randint(0, 4, (5,))
    run_step(model, x1, y1)
    g1 = [p.grad.clone() for p in model.parameters()]
    run_step(model, x2, y2)
    g2 = [p.grad.clone() for p in model.parameters()]
    # Two forwards before one backward, and two backwards into the same .grad.
    model.zero_grad(set_to_none=True)
    (F.cross_entropy(model(x1), y1) + F.cross_entropy(model(x2), y2)).backward()
    for p, a, b in zip(model.parameters(), g1, g2):
        assert rel_err(p.grad, a + b) <= 1e-12
    model.zero_grad(set_to_none=False)
    F.cross_entropy(model(x1), y1).backward()
    F.cross_entropy(model(x2), y2).backward()
    for p, a, b in zip(model.parameters(), g1, g2):
        assert rel_err(p.grad, a + b) <= 1e-12


def test_leading_dimensions_are_batch():
    model = localgrad.convert(mlp(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), rule="dfa")
    flat = copy.deepcopy(model)
    x = torch.randn(2, 7, 6, dtype=F64)
    target = torch.randn(2, 7, 3, dtype=F64)
    model.zero_grad()
    F.mse_loss(model(x), target).backward()
    flat.zero_grad()
    F.mse_loss(flat(x.reshape(14, 6)), target.reshape(14, 3)).backward()
    for p, q in zip(model.parameters(), flat.parameters()):
        assert rel_err(p.grad, q.grad) <= 1e-12


def test_empty_batch():
    model = localgrad.convert(deep_mlp(), rule="dfa")
    out = model(torch.randn(0, 12, dtype=F64))
    out.sum().backward()
    for p in model.parameters():
        assert p.grad is not None and not p.grad.any()


def test_state_dict_holds_feedback_and_a_resumed_run_continues_exactly():
    model = localgrad.convert(deep_mlp(), rule="dfa", seed=1)
    keys = model.state_dict().keys()
    hidden = [m for m in model.modules() if isinstance(m, DFALinear)][:-1]
    assert all(hasattr(m, "feedback") for m in hidden)
    assert sum(k.endswith("feedback") for k in keys) == len(hidden)
    assert not hasattr(model[-1], "feedback")
    assert model[1].feedback.shape == (4, 9)

    data = [(torch.randn(8, 12, dtype=F64), torch.randint(0, 4, (8,))) for _ in range(6)]
    # The other model has other feedback until the state is loaded.
    assert_resume_is_exact(model, lambda: localgrad.convert(deep_mlp(), rule="dfa", seed=99), data, 3, lr=0.1)


def test_wrong_feedback_shape_in_state_dict_is_refused():
    model = localgrad.convert(deep_mlp(), rule="dfa")
    state = model.state_dict()
    state["1.feedback"] = torch.zeros(4, 10, dtype=F64)
    with pytest.raises(RuntimeError, match="feedback"):
        model.load_state_dict(state)


def test_moving_the_model_keeps_feedback_in_use():
    """.to() replaces the feedback views; the rule must follow them."""
    model = localgrad.convert(deep_mlp(), rule="dfa", seed=2).float()
    assert model[1].feedback.dtype == torch.float32
    x, y = torch.randn(6, 12), torch.randint(0, 4, (6,))
    run_step(model, x, y)
    expected = dfa_formula(model.double(), x.double(), y)
    model.float()
    run_step(model, x, y)
    for p in model.parameters():
        assert rel_err(p.grad, expected[id(p)]) <= 1e-5
    with torch.no_grad():
        model[1].feedback.mul_(2)  # in place: seen through the shared matrix
    run_step(model, x, y)
    assert rel_err(model[1].weight.grad, 2 * expected[id(model[1].weight)]) <= 1e-5


def test_optimizer_built_before_convert_still_trains():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    localgrad.convert(model, rule="dfa")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_seed_sets_feedback():
    a = localgrad.convert(deep_mlp(), rule="dfa", seed=5)
    b = localgrad.convert(deep_mlp(), rule="dfa", seed=5)
    c = localgrad.convert(deep_mlp(), rule="dfa", seed=6)
    assert torch.equal(a[1].feedback, b[1].feedback)
    assert not torch.equal(a[1].feedback, c[1].feedback)
    bound = 1 / 9**0.5  # U(-1/sqrt(width), 1/sqrt(width)), width 9
    assert a[1].feedback.abs().max() <= bound


def test_unconvert_returns_plain_layers_with_the_same_parameters():
    model = localgrad.convert(deep_mlp(), rule="dfa")
    weight = model[1].weight
    localgrad.unconvert(model)
    assert type(model[1]) is nn.Linear and model[1].weight is weight
    assert not any(k.endswith("feedback") for k in model.state_dict())
    x, y = torch.randn(3, 12, dtype=F64), torch.randint(0, 4, (3,))
    run_step(model, x, y)
    assert model[1].weight.grad is not None  # plain backprop again
    localgrad.convert(model, rule="dfa")  # and convertible again


def test_backprop_rule_leaves_the_model_alone():
    model = deep_mlp()
    assert localgrad.convert(model, rule="backprop") is model
    assert not any(isinstance(m, DFALinear) for m in model.modules())


class FunctionalActivation(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 5), nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class SharedActivation(nn.Module):
    """One activation module used after every layer: allowed."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 5), nn.Linear(5, 6), nn.Linear(6, 2)
        self.act = nn.Tanh()

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


def test_shared_activation_module():
    torch.manual_seed(0)
    model = localgrad.convert(SharedActivation().double(), rule="dfa")
    x, y = torch.randn(5, 4, dtype=F64), torch.randint(0, 2, (5,))
    run_step(model, x, y)
    with torch.no_grad():  # converted layers outside the model's forward order
        h1 = torch.tanh(model.fc1(x))
        h2 = torch.tanh(model.fc2(h1))
        out = model.fc3(h2)
    out.requires_grad_(True)
    (e,) = torch.autograd.grad(F.cross_entropy(out, y), out)
    delta1 = (e @ model.fc1.feedback) * (1 - h1**2)
    assert rel_err(model.fc1.weight.grad, delta1.T @ x) <= 1e-12


def test_bad_models_get_clear_errors():
    with pytest.raises(ValueError, match="unknown rule"):
        localgrad.convert(deep_mlp(), rule="magic")
    with pytest.raises(ValueError, match="already converted"):
        localgrad.convert(localgrad.convert(deep_mlp(), rule="dfa"), rule="dfa")
    with pytest.raises(ValueError, match="no nn.Linear"):
        localgrad.convert(nn.Sequential(nn.ReLU()), rule="dfa")
    with pytest.raises(ValueError, match="must be an nn.Linear"):
        localgrad.convert(nn.Sequential(nn.Linear(3, 3), nn.Conv2d(1, 1, 1)), rule="dfa")
    with pytest.raises(ValueError, match="example_input"):
        localgrad.convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)), rule="dfa")
    with pytest.raises(ValueError, match="inject"):
        localgrad.convert(deep_mlp(), rule="dfa", inject="everywhere")
    model = localgrad.convert(mlp(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)), rule="dfa")
    with pytest.raises(RuntimeError, match="out of order"):
        model[2](torch.randn(3, 5, dtype=F64))


def test_functional_activation_is_named_and_takes_the_error_at_the_output():
    torch.manual_seed(0)
    model = localgrad.convert(FunctionalActivation().double(), rule="dfa")
    x, y = torch.randn(3, 4, dtype=F64), torch.randint(0, 2, (3,))
    with pytest.warns(UserWarning, match="applied directly to the output of fc1"):
        run_step(model, x, y)
    with torch.no_grad():
        out = model.fc2(torch.relu(model.fc1(x)))
    out.requires_grad_(True)
    (e,) = torch.autograd.grad(F.cross_entropy(out, y), out)
    assert rel_err(model.fc1.weight.grad, (e @ model.fc1.feedback).T @ x) <= 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_step(model, x, y)  # said once


def test_inject_at_output_ignores_the_activation():
    model = localgrad.convert(deep_mlp(), rule="dfa", inject="output", seed=3)
    x, y = torch.randn(5, 12, dtype=F64), torch.randint(0, 4, (5,))
    run_step(model, x, y)
    with torch.no_grad():
        out = model(x)
    out.requires_grad_(True)
    (e,) = torch.autograd.grad(F.cross_entropy(out, y), out)
    assert rel_err(model[3].weight.grad, (e @ model[3].feedback).T @ torch.tanh(model[1](x)).detach()) <= 1e-12


def lenet(**conv):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, **conv),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Dropout(0.0),
        nn.LazyLinear(7),
        nn.Sigmoid(),
        nn.Linear(7, 3),
    ).to(F64)


@pytest.mark.parametrize("conv", [dict(), dict(stride=2, padding=2), dict(dilation=2, padding=1)])
def test_conv_gradients_match_the_dfa_formula(conv):
    x, y = torch.randn(6, 1, 12, 12, dtype=F64), torch.randint(0, 3, (6,))
    model = lenet(**conv)
    model(x)  # materialise the lazy layer
    localgrad.convert(model, rule="dfa", example_input=x, seed=2)
    c1, c2, l1, out_layer = model[0], model[3], model[7], model[9]
    assert c1.feedback.shape == (3, math.prod(c1.output_map)) and c1.output_map[0] == 4
    run_step(model, x, y)
    with torch.no_grad():
        a1 = F.conv2d(x, c1.weight, c1.bias, c1.stride, c1.padding, c1.dilation)
        h1 = F.relu(a1)
        p1 = F.max_pool2d(h1, 2)
        a2 = F.conv2d(p1, c2.weight, c2.bias, 1, 1)
        h2 = torch.tanh(a2)
        a3 = h2.flatten(1) @ l1.weight.T + l1.bias
        h3 = torch.sigmoid(a3)
        out = h3 @ out_layer.weight.T + out_layer.bias
    out.requires_grad_(True)
    (e,) = torch.autograd.grad(F.cross_entropy(out, y), out)
    d1 = ((e @ c1.feedback) * (h1 > 0).flatten(1)).view_as(a1)
    d2 = ((e @ c2.feedback) * (1 - h2**2).flatten(1)).view_as(a2)
    d3 = (e @ l1.feedback) * h3 * (1 - h3)
    # The conv weight gradient of delta, written out independently: autograd of <a(W), delta>.
    for layer, inp, delta, kw in [(c1, x, d1, conv), (c2, p1, d2, dict(padding=1))]:
        w = layer.weight.detach().clone().requires_grad_(True)
        b = layer.bias.detach().clone().requires_grad_(True)
        (F.conv2d(inp, w, b, **kw) * delta).sum().backward()
        assert rel_err(layer.weight.grad, w.grad) <= 1e-12
        assert rel_err(layer.bias.grad, b.grad) <= 1e-12
    assert rel_err(l1.weight.grad, d3.T @ h2.flatten(1)) <= 1e-12
    assert rel_err(out_layer.weight.grad, e.T @ h3) <= 1e-12


def test_conv_model_state_dict_and_map_check():
    x = torch.randn(2, 1, 12, 12, dtype=F64)
    model = lenet()
    model(x)
    localgrad.convert(model, rule="dfa", example_input=x)
    assert model.state_dict()["0.feedback"].shape == (3, 4 * 10 * 10)
    with pytest.raises(RuntimeError, match="output map"):
        model(torch.randn(2, 1, 14, 14, dtype=F64))


def test_modules_without_a_dfa_gradient_are_named_once():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.warns(UserWarning, match=r"get no gradient: 1 \(BatchNorm2d\)"):
        localgrad.convert(model, rule="dfa", example_input=torch.randn(1, 1, 4, 4))
    assert model[1].training and model[1].num_batches_tracked == 0  # the sizing pass left BN alone


def test_reference_fallback_without_the_extension(monkeypatch):
    """Importing and training work without localgrad._C (CPU); the op warns once."""
    model = localgrad.convert(deep_mlp(), rule="dfa", seed=3)
    x, y = torch.randn(7, 12, dtype=F64), torch.randint(0, 4, (7,))
    run_step(model, x, y)
    compiled = [p.grad.clone() for p in model.parameters()]
    without_extension(monkeypatch)
    with pytest.warns(RuntimeWarning, match="reference"):
        run_step(model, x, y)
    for p, g in zip(model.parameters(), compiled):
        assert rel_err(p.grad, g) <= 1e-12


@pytest.mark.parametrize("device", DEVICES)
def test_float32_training_step_on_device(device):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
    model = localgrad.convert(copy.deepcopy(plain), rule="dfa").to(device)
    x, y = torch.randn(32, 20), torch.randint(0, 10, (32,))
    run_step(model, x.to(device), y.to(device))
    expected = dfa_formula(model.cpu().double(), x.double(), y)
    model.to(device).float()
    run_step(model, x.to(device), y.to(device))
    for p in model.parameters():
        assert rel_err(p.grad.cpu(), expected[id(p)]) <= 1e-5


class MeanOverTime(nn.Module):
    def forward(self, x):
        return x.mean(1)


def test_rows_must_match_the_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), MeanOverTime(), nn.Linear(5, 2)).double()
    localgrad.convert(model, rule="dfa")
    out = model(torch.randn(3, 7, 4, dtype=F64))
    with pytest.raises(RuntimeError, match="produced 21 rows"):
        out.sum().backward()
