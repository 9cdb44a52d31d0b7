"""TargetProp on strided-conv nets (Conv2d layers, Flatten, Linear layers;
ConvTranspose2d feedback, Ernoult et al. 2022), float64:

- identity activations, each feedback the adjoint of its layer
  (ConvTranspose2d weight = the Conv2d weight, Linear feedback W^T): (1/beta)
  DTP's and L-DRL's forward update is backprop's gradient for every beta;
  the gated feedback set so gives backprop on a ReLU/tanh net too;
- the L-DRL feedback gradient is in expectation that of
  noise^2 ||G - J^T||^2 (G, J the maps' matrices): it vanishes at the
  adjoint, and training the feedback alone brings it to the adjoint;
- refusals naming the layer, state_dict round trip, stacked samples, empty batch.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from localgrad.reference import target_prop as ref
from localgrad.target_prop import TargetProp

DT = torch.float64


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def conv_net(act=nn.Identity, seed=0):
    """8x8 -> 4x4 (output padding 1 on the way back) -> 2x2 -> 16 -> 6 -> 3."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1), act(),
        nn.Conv2d(3, 4, 2, stride=2), act(),
        nn.Flatten(),
        nn.Linear(16, 6), act(),
        nn.Linear(6, 3),
    ).to(DT)


def layers(model):
    return [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]


def set_adjoint(learner, model):
    with torch.no_grad():
        for fb, m in zip(learner.feedback, layers(model)[1:]):
            fb.weight.copy_(m.weight if isinstance(m, nn.Conv2d) else m.weight.T)


def data(batch=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, 8, 8, generator=g, dtype=DT), torch.randint(0, 3, (batch,), generator=g)


def grads_of(learner, model, x, y):
    model.zero_grad()
    learner.step(x, y)
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return got, want


def test_the_feedback_of_a_conv_layer_is_a_transposed_conv_of_its_geometry():
    model = conv_net()
    learner = TargetProp(model, variant="ldrl")
    kinds = [type(m) for m in learner.feedback]
    assert kinds[0] is nn.ConvTranspose2d and kinds[1:] != [nn.ConvTranspose2d] * 2
    t, c = learner.feedback[0], model[2]
    assert t.weight.shape == c.weight.shape and t.stride == c.stride and t.padding == c.padding


def test_the_feedback_is_drawn_from_the_learners_generator_only():
    model = conv_net()
    torch.manual_seed(7)
    before = torch.get_rng_state()
    a, b = TargetProp(model, variant="ldrl", seed=3), TargetProp(model, variant="ldrl", seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.feedback_parameters(), b.feedback_parameters()))
    c = TargetProp(model, variant="ldrl", seed=4)
    assert not torch.equal(a.feedback[0].weight, c.feedback[0].weight)


def test_conv_feedback_is_the_adjoint_with_the_conv_weight():
    g = torch.Generator().manual_seed(3)
    for size, k, stride, pad in ((8, 3, 2, 1), (9, 3, 2, 1), (7, 5, 3, 2), (6, 2, 1, 0)):
        w = torch.randn(4, 3, k, k, generator=g, dtype=DT)
        x = torch.randn(2, 3, size, size, generator=g, dtype=DT)
        y = F.conv2d(x, w, None, stride, pad)
        u = torch.randn_like(y)
        back = ref.conv_feedback(u, w, torch.zeros(3, dtype=DT), (stride, stride), (pad, pad), x.shape[-2:], 1)
        assert back.shape == x.shape  # the output padding maps the shape back exactly
        assert abs((y * u).sum() - (x * back).sum()) <= 1e-12 * (y * u).abs().sum()


@pytest.mark.parametrize("beta", [2.0, 0.1, 1e-3, 1e-6])
@pytest.mark.parametrize("variant", ["dtp", "ldrl"])
@pytest.mark.parametrize("form", ["nonlinear", "gated"])
def test_linear_conv_net_with_adjoint_feedback_is_backprop_for_every_beta(variant, beta, form):
    model = conv_net()
    x, y = data()
    learner = TargetProp(model, variant=variant, beta=beta, feedback=form)
    set_adjoint(learner, model)
    tol = max(1e-13 / min(beta, 1.0), 1e-12)
    for a, b in zip(*grads_of(learner, model, x, y)):
        assert rel(a, b) <= tol


def test_conv_net_with_random_feedback_is_not_backprop():
    model = conv_net()
    x, y = data()
    got, want = grads_of(TargetProp(model, variant="ldrl", beta=0.1), model, x, y)
    assert rel(got[-1], want[-1]) < 1e-12  # the output layer's target is the loss's own
    assert rel(got[0], want[0]) > 0.1


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh])
def test_gated_adjoint_feedback_on_a_nonlinear_conv_net_is_backprop(act):
    model = conv_net(act)
    x, y = data()
    learner = TargetProp(model, variant="ldrl", beta=1e-3, feedback="gated")
    set_adjoint(learner, model)
    for a, b in zip(*grads_of(learner, model, x, y)):
        assert rel(a, b) <= 1e-9


def test_the_flat_input_is_unflattened_in_front():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Unflatten(1, (2, 8, 8)), *conv_net())
    x, y = data()
    learner = TargetProp(model, variant="dtp", beta=0.01)
    set_adjoint(learner, model)
    for a, b in zip(*grads_of(learner, model, x.flatten(1), y)):
        assert rel(a, b) <= 1e-10


def _matrix(fn, n_in, shape):
    """The matrix (n_out, n_in) of a linear map fn on inputs of `shape`."""
    basis = torch.eye(n_in, dtype=DT).reshape(n_in, *shape)
    return fn(basis).reshape(n_in, -1).T


def test_ldrl_feedback_gradient_is_that_of_the_distance_to_the_adjoint():
    """E[L-DRL loss] = noise^2 (||G - J^T||^2 - ||J||^2) for a linear layer:
    the Monte Carlo gradient (many stacked samples) matches its gradient,
    which vanishes at G = J^T."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Conv2d(2, 2, 3, stride=2, padding=1),
                          nn.Flatten(), nn.Linear(8, 3)).to(DT)
    noise, conv2 = 0.5, model[1]
    learner = TargetProp(model, variant="ldrl", noise=noise, samples=40000)
    x = torch.randn(1, 1, 8, 8, dtype=DT)
    t = learner.feedback[0]
    j = _matrix(lambda h: F.conv2d(h, conv2.weight.detach(), None, 2, 1), 32, (2, 4, 4))  # (8, 32)

    def expected_grad(v):
        v = v.clone().requires_grad_(True)
        g = _matrix(lambda h: ref.conv_feedback(h, v, None, (2, 2), (1, 1), (4, 4), 1), 8, (2, 2, 2))  # (32, 8)
        loss = noise ** 2 * ((g - j.T).pow(2).sum() - j.pow(2).sum())
        return torch.autograd.grad(loss, v)[0]

    for v in (conv2.weight.detach() + 0.3 * torch.randn_like(conv2.weight), conv2.weight.detach()):
        with torch.no_grad():
            t.weight.copy_(v)
        learner.feedback.zero_grad()
        learner.train_feedback(x)
        want = expected_grad(v)
        if want.norm() > 0:
            assert rel(t.weight.grad, want) < 0.05
            scale = want.norm()
        else:  # at the adjoint: only the Monte Carlo noise is left
            assert want.norm() == 0 and t.weight.grad.norm() < 0.05 * scale
        assert t.bias.grad.abs().max() < 1e-12  # c cancels in the L-DRL loss (rounding left)


def test_training_the_ldrl_feedback_alone_brings_it_to_the_adjoint():
    model = conv_net()
    learner = TargetProp(model, variant="ldrl", noise=1.0, samples=32, seed=2)
    opt = torch.optim.SGD(learner.feedback_parameters(), lr=0.05)
    x, _ = data(8)
    targets = [m.weight if isinstance(m, nn.Conv2d) else m.weight.T for m in layers(model)[1:]]
    start = [rel(fb.weight.detach(), w.detach()) for fb, w in zip(learner.feedback, targets)]
    learner.train_feedback(x, opt, 600)
    end = [rel(fb.weight.detach(), w.detach()) for fb, w in zip(learner.feedback, targets)]
    assert min(start) > 0.5 and max(end) < 0.1, (start, end)


def test_stacked_samples_and_empty_batch():
    model = conv_net(nn.ReLU)
    x, y = data()
    for samples in (1, 3):
        learner = TargetProp(model, variant="ldrl", samples=samples, feedback="gated")
        model.zero_grad()
        assert torch.isfinite(learner.step(x, y))
        assert all(torch.isfinite(p.grad).all() for p in [*model.parameters(), *learner.feedback_parameters()])
    model.zero_grad()
    learner.feedback.zero_grad()
    assert learner.step(x[:0], y[:0]) == 0
    assert all(p.grad.abs().max() == 0 for p in [*model.parameters(), *learner.feedback_parameters()])


def test_state_dict_round_trip():
    model = conv_net(nn.ReLU)
    x, y = data()
    a = TargetProp(model, variant="ldrl", seed=4)
    a.step(x, y)
    with torch.no_grad():
        for p in a.feedback_parameters():
            p.add_(0.01)
    state = a.state_dict()
    b = TargetProp(model, variant="ldrl", seed=9)
    b.load_state_dict(state)
    grads = []
    for learner in (a, b):
        model.zero_grad()
        learner.feedback.zero_grad()
        learner.step(x, y)
        grads.append([p.grad.clone() for p in [*model.parameters(), *learner.feedback_parameters()]])
    assert all(torch.equal(u, v) for u, v in zip(*grads))


def _conv(**kw):
    return nn.Conv2d(1, 2, 3, **kw)


@pytest.mark.parametrize("model, match", [
    (nn.Sequential(_conv(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)), r"model\[1\] is MaxPool2d; pooling"),
    (nn.Sequential(_conv(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 3)), r"model\[1\] is AvgPool2d; pooling"),
    (nn.Sequential(_conv(dilation=2), nn.Flatten(), nn.Linear(8, 3)), r"model\[0\] \(Conv2d\) has dilation"),
    (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(8, 3)), r"model\[0\] \(Conv2d\) has groups"),
    (nn.Sequential(_conv(bias=False), nn.Flatten(), nn.Linear(8, 3)), r"model\[0\] \(Conv2d\) has no bias"),
    (nn.Sequential(_conv(padding="same"), nn.Flatten(), nn.Linear(8, 3)), r"model\[0\] \(Conv2d\) has padding="),
    (nn.Sequential(_conv(padding=1, padding_mode="reflect"), nn.Flatten(), nn.Linear(8, 3)), r"padding_mode"),
    (nn.Sequential(_conv(), nn.Linear(8, 3)), r"model\[1\] is a Linear right after a Conv2d"),
    (nn.Sequential(_conv(), nn.Flatten(), nn.Linear(8, 3), nn.Unflatten(1, (3, 1, 1)), nn.Conv2d(3, 2, 1)),
     r"model\[3\] is a Flatten|model\[3\] is Unflatten"),
    (nn.Sequential(_conv(), nn.Flatten(), nn.Linear(8, 4), _conv()), r"model\[3\] is a Conv2d after"),
    (nn.Sequential(_conv(), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3)), r"model\[1\] is BatchNorm2d"),
    (nn.Sequential(_conv(), nn.ReLU(), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)), r"model\[2\] is a second activation"),
    (nn.Sequential(_conv(), nn.Flatten(), nn.ReLU(), nn.Linear(8, 3)), r"model\[2\] is ReLU|model\[2\] is a"),
    (nn.Sequential(nn.ReLU(), _conv(), nn.Flatten(), nn.Linear(8, 3)), r"model\[0\] \(ReLU\) comes before"),
    (nn.Sequential(_conv(), nn.Flatten(), nn.Linear(8, 3), nn.Flatten()), r"model\[3\] is a Flatten"),
])
def test_unsupported_conv_models_are_refused_naming_the_layer(model, match):
    with pytest.raises(ValueError, match=match):
        TargetProp(model, variant="ldrl")


@pytest.mark.parametrize("variant", ["ddtp", "gait"])
def test_linear_only_variants_refuse_conv_models(variant):
    with pytest.raises(ValueError, match=f"variant '{variant}' takes Linear layers only"):
        TargetProp(conv_net(), variant=variant)


def test_conv_model_refuses_bad_input():
    learner = TargetProp(conv_net(), variant="ldrl")
    x, y = data()
    with pytest.raises(ValueError, match=r"x must give \(batch, 2, height, width\)"):
        learner.step(x.flatten(1), y)
    with pytest.raises(ValueError, match="x must be torch.float64"):
        learner.step(x.float(), y)


def _twin_nets(act, seed=0):
    """A conv net whose convolutions cover their whole input (kernel = input
    size, then 1x1 on 1x1), and the MLP with the same weights."""
    torch.manual_seed(seed)
    c = nn.Sequential(nn.Unflatten(1, (2, 3, 3)), nn.Conv2d(2, 5, 3), act(), nn.Conv2d(5, 4, 1), act(),
                      nn.Flatten(), nn.Linear(4, 6), act(), nn.Linear(6, 3)).to(DT)
    m = nn.Sequential(nn.Linear(18, 5), act(), nn.Linear(5, 4), act(), nn.Linear(4, 6), act(), nn.Linear(6, 3)).to(DT)
    with torch.no_grad():
        for a, b in zip(layers(c), layers(m)):
            b.weight.copy_(a.weight.reshape(b.weight.shape))
            b.bias.copy_(a.bias)
    return c, m


@pytest.mark.parametrize("variant", ["tp", "dtp", "ldrl"])
@pytest.mark.parametrize("form", ["nonlinear", "gated"])
@pytest.mark.parametrize("samples", [1, 3])
def test_a_conv_net_that_is_an_mlp_trains_as_the_mlp(variant, form, samples):
    """Same noise draws (the generator makes as many draws at initialisation
    and per step on both), the same feedback: the conv path's .grad (forward
    and feedback) is the MLP path's."""
    c, m = _twin_nets(nn.Tanh)
    x, y = data(6)
    x = x[:, :2, :3, :3].flatten(1)
    lc = TargetProp(c, variant=variant, feedback=form, samples=samples, beta=0.2, seed=5)
    lm = TargetProp(m, variant=variant, feedback=form, samples=samples, beta=0.2, seed=5)
    with torch.no_grad():
        for fc, fm in zip(lc.feedback, lm.feedback):
            fm.weight.copy_(fc.weight.reshape(fm.weight.shape[::-1]).T if fc.weight.dim() == 4 else fc.weight)
            fm.bias.copy_(fc.bias)
    out = []
    for learner in (lc, lm):
        learner.model.zero_grad()
        learner.feedback.zero_grad()
        loss = learner.step(x, y)
        out.append((loss, [p.grad.reshape(-1) for p in learner.model.parameters()],
                    [p.grad for p in learner.feedback_parameters()]))
    (loss_c, fw_c, fb_c), (loss_m, fw_m, fb_m) = out
    assert torch.allclose(loss_c, loss_m, rtol=1e-13, atol=0)
    for a, b in zip(fw_c, fw_m):
        assert rel(a, b) < 1e-11
    for a, b in zip(fb_c, fb_m):
        b = b.T.reshape(a.shape) if a.dim() == 4 else b
        assert (a - b).norm() <= 1e-11 * b.norm() + 1e-15  # L-DRL's bias gradient: 0 in closed form, ~1e-17 here
