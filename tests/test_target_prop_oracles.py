"""Target propagation against what theory says it computes (float64):

- linear layers, feedback V_l = W_l^T: (1/beta) DTP's forward update is
  backprop's gradient, for every beta (through the learner);
- nonlinear layers, feedback whose Jacobian at the forward pass is J_f^T
  (Ernoult 2022's Jacobian matching condition): the relative error to
  backprop falls like beta (fitted slope ~ 1);
- L-DRL on linear layers: the expected feedback gradient is
  2 noise^2 (V - W^T), and training the feedback alone converges to W^T;
- an invertible linear net with exact inverses (TP and DTP), and DDTP with
  Q_l the pseudo-inverse of the upper layers' Jacobian: the Gauss-Newton
  target; DRL training converges to the damped pseudo-inverse;
- GAIT-prop with orthogonal square weights and LeakyReLU (small gamma): backprop.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from localgrad.activations import Activation
from localgrad.reference import target_prop as ref
from localgrad.target_prop import TargetProp

DT = torch.float64


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def backprop_grads(model, x, y, loss="ce"):
    model.zero_grad()
    out = model(x)
    value = F.cross_entropy(out, y) if loss == "ce" else 0.5 * (out - y).pow(2).sum(1).mean()
    value.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


def learner_grads(learner, x, y):
    learner.model.zero_grad()
    learner.step(x, y)
    grads = [p.grad.clone() for p in learner.model.parameters()]
    learner.model.zero_grad()
    return grads


def linear_net(sizes, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]).to(DT)


@pytest.mark.parametrize("beta", [2.0, 0.5, 0.1, 1e-3, 1e-6])
@pytest.mark.parametrize("variant", ["dtp", "ldrl"])
def test_linear_dtp_with_transposed_feedback_is_backprop_for_every_beta(variant, beta):
    model = linear_net([7, 6, 5, 4, 3])
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 7, generator=g, dtype=DT), torch.randint(0, 3, (9,), generator=g)
    learner = TargetProp(model, variant=variant, beta=beta)
    with torch.no_grad():
        for l, m in enumerate(learner.feedback):  # g_{l+2}(h) = W_{l+2}^T h + c, any c
            m.weight.copy_(model[l + 1].weight.T)
    tol = 1e-13 / min(beta, 1.0)  # rounding of t - h, divided by beta
    for a, b in zip(learner_grads(learner, x, y), backprop_grads(model, x, y)):
        assert rel(a, b) <= max(tol, 1e-12)


def test_linear_dtp_with_random_feedback_is_not_backprop():
    model = linear_net([7, 6, 5, 4, 3])
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 7, generator=g, dtype=DT), torch.randint(0, 3, (9,), generator=g)
    learner = TargetProp(model, variant="dtp", beta=0.1)
    got, want = learner_grads(learner, x, y), backprop_grads(model, x, y)
    assert rel(got[-1], want[-1]) < 1e-12  # the output layer's target is the loss's own
    assert rel(got[0], want[0]) > 0.1


def _jmc_inverses(hs, pre, weights, kinds, slopes):
    """g_l(h) = s_{l-1}(a_{l-1} + diag(1/s'_{l-1}) W_l^T diag(s'_l) (h - h_l)),
    per sample: g_l(h_l) = h_{l-1} and J_g(h_l) = J_f^T, nonlinear around it."""
    inverses = []
    for l in range(2, len(hs)):
        d_up = ref.derivative(pre[l - 1], kinds[l - 1], slopes[l - 1])
        d_low = ref.derivative(pre[l - 2], kinds[l - 2], slopes[l - 2])

        def g(h, l=l, d_up=d_up, d_low=d_low):
            move = ((h - hs[l]) * d_up) @ weights[l - 1] / d_low
            return ref.activate(pre[l - 2] + move, kinds[l - 2], slopes[l - 2])

        inverses.append(g)
    return inverses


def test_nonlinear_dtp_with_jacobian_matched_feedback_approaches_backprop_like_beta():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 5), nn.Sigmoid(), nn.Linear(5, 4), nn.Tanh(),
                          nn.Linear(4, 3)).to(DT)
    learner = TargetProp(model, "dtp")
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 6, generator=g, dtype=DT), torch.randint(0, 3, (8,), generator=g)
    want = backprop_grads(model, x, y)
    weights, biases, hs, pre = learner._forward(x)
    target = F.one_hot(y, 3).to(DT)
    inverses = _jmc_inverses(hs, pre, weights, learner.kinds, learner.slopes)
    betas = [0.04, 0.02, 0.01, 0.005, 0.0025]
    errors = []
    for beta in betas:
        t_out = ref.output_target(hs[-1], target, beta, "ce")
        targets = ref.tp_targets(hs, t_out, inverses, difference=True)
        grads = ref.forward_gradients(hs, pre, targets, learner.kinds, learner.slopes, [beta] * 4)
        got = torch.cat([torch.cat([gw.flatten(), gb]) for gw, gb in grads])
        ref_flat = torch.cat([w.flatten() for w in want])
        errors.append(rel(got, ref_flat))
    slopes = [math.log(errors[i] / errors[i + 1]) / math.log(betas[i] / betas[i + 1]) for i in range(len(betas) - 1)]
    assert all(0.9 < s < 1.1 for s in slopes), (errors, slopes)
    assert errors[-1] < 1e-2 and errors[0] > 1e-5, errors  # a real O(beta) term, and it vanishes


def test_ldrl_expected_feedback_gradient_in_closed_form():
    # E[grad_V] = 2 noise^2 (V - W^T); the bias gets no gradient on linear layers.
    model = linear_net([5, 4, 3])
    noise, n = 0.3, 40000
    learner = TargetProp(model, "ldrl", noise=noise, seed=3)
    x = torch.randn(n, 5, dtype=DT, generator=torch.Generator().manual_seed(4))
    learner.train_feedback(x)
    v, c = learner.feedback[0].weight, learner.feedback[0].bias
    expected = 2 * noise ** 2 * (v.detach() - model[1].weight.detach().T)
    assert rel(v.grad, expected) < 0.05
    assert c.grad.abs().max().item() < 1e-12


def test_ldrl_feedback_training_converges_to_the_transpose():
    model = linear_net([6, 5, 4, 3])
    learner = TargetProp(model, "ldrl", noise=1.0, seed=5)
    opt = torch.optim.SGD(learner.feedback_parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, 150, 0.3)
    g = torch.Generator().manual_seed(6)
    start = [rel(m.weight.detach(), model[2 * 0 + l + 1].weight.detach().T) for l, m in enumerate(learner.feedback)]
    for _ in range(600):
        opt.zero_grad()
        learner.train_feedback(torch.randn(128, 6, generator=g, dtype=DT))
        opt.step()
        sched.step()
    for l, m in enumerate(learner.feedback):
        err = rel(m.weight.detach(), model[l + 1].weight.detach().T)
        assert err < 0.02 and err < start[l] / 20, (l, err, start[l])


def test_dtp_reconstruction_training_does_not_converge_to_the_transpose():
    # DTP's inverse loss aims at W^{-1}-like maps, not W^T: L-DRL's target differs.
    torch.manual_seed(0)
    model = linear_net([6, 5, 4, 3])
    learner = TargetProp(model, "dtp", noise=1.0, seed=5)
    opt = torch.optim.SGD(learner.feedback_parameters(), lr=0.02)
    g = torch.Generator().manual_seed(6)
    for _ in range(300):
        opt.zero_grad()
        learner.train_feedback(torch.randn(128, 6, generator=g, dtype=DT))
        opt.step()
    assert rel(learner.feedback[0].weight.detach(), model[1].weight.detach().T) > 0.2


def _square_net(n=5, depth=4, seed=0):
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth):
        lin = nn.Linear(n, n).to(DT)
        with torch.no_grad():
            lin.weight.copy_(torch.eye(n, dtype=DT) + 0.3 * torch.randn(n, n, dtype=DT) / math.sqrt(n))
        layers.append(lin)
    return nn.Sequential(*layers)


def _gauss_newton_grads(model, x, target, loss="mse"):
    """dW_l from the Gauss-Newton target h_l - beta J_l^+ dloss/dh_L (J_l the
    Jacobian of the layers above l), divided by beta: J_l^+ e h_{l-1}^T / B."""
    ws = [m.weight.detach() for m in model]
    hs = [x]
    for m in model:
        hs.append(m(hs[-1]).detach())
    e = ref.loss_gradient(hs[-1], target, loss)
    grads = []
    for l in range(1, len(ws) + 1):
        jac = torch.eye(ws[-1].shape[0], dtype=DT)
        for w in reversed(ws[l:]):
            jac = jac @ w
        delta = e @ torch.linalg.pinv(jac).T / x.shape[0]
        grads += [delta.T @ hs[l - 1], delta.sum(0)]
    return grads


@pytest.mark.parametrize("variant", ["tp", "dtp"])
@pytest.mark.parametrize("beta", [1.0, 0.1])
def test_exact_inverses_give_the_gauss_newton_target(variant, beta):
    model = _square_net()
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(6, 5, generator=g, dtype=DT), torch.randn(6, 5, generator=g, dtype=DT)
    learner = TargetProp(model, variant=variant, beta=beta, loss="mse")
    with torch.no_grad():
        for l, m in enumerate(learner.feedback):  # g_l = f_l^{-1}
            inv = torch.linalg.inv(model[l + 1].weight)
            m.weight.copy_(inv)
            m.bias.copy_(-inv @ model[l + 1].bias)
    got = learner_grads(learner, x, y)
    want = _gauss_newton_grads(model, x, y)
    for a, b in zip(got, want):
        assert rel(a, b) < 1e-11
    bp = backprop_grads(model, x, y, loss="mse")
    assert rel(got[0], bp[0]) > 0.05  # Gauss-Newton, not the gradient


def test_ddtp_with_pseudo_inverse_feedback_gives_the_gauss_newton_target():
    model = linear_net([6, 7, 5, 3])  # narrowing: J_l^+ is a right inverse
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(6, 6, generator=g, dtype=DT), torch.randn(6, 3, generator=g, dtype=DT)
    learner = TargetProp(model, variant="ddtp", beta=0.3, loss="mse")
    ws = [m.weight.detach() for m in model]
    with torch.no_grad():
        for l, m in enumerate(learner.feedback, start=1):
            jac = torch.eye(3, dtype=DT)
            for w in reversed(ws[l:]):
                jac = jac @ w
            m.weight.copy_(torch.linalg.pinv(jac))
    for a, b in zip(learner_grads(learner, x, y), _gauss_newton_grads(model, x, y)):
        assert rel(a, b) < 1e-11


def test_drl_training_converges_to_the_damped_pseudo_inverse():
    # Meulemans 2020: the DRL's minimiser is Q = J^T (J J^T + lam I)^{-1}.
    model = linear_net([6, 5, 4, 3])
    lam = 0.5
    learner = TargetProp(model, "ddtp", noise=1.0, lam=lam, seed=9)
    opt = torch.optim.SGD(learner.feedback_parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, 150, 0.3)
    g = torch.Generator().manual_seed(10)
    for _ in range(600):
        opt.zero_grad()
        learner.train_feedback(torch.randn(128, 6, generator=g, dtype=DT))
        opt.step()
        sched.step()
    ws = [m.weight.detach() for m in model]
    for l, m in enumerate(learner.feedback, start=1):
        jac = torch.eye(3, dtype=DT)
        for w in reversed(ws[l:]):
            jac = jac @ w
        damped = jac.T @ torch.linalg.inv(jac @ jac.T + lam * torch.eye(3, dtype=DT))
        assert rel(m.weight.detach(), damped) < 0.03


def _orthogonal_gait_net(n=6, n_in=5, depth=4, seed=0, orthogonal=True):
    torch.manual_seed(seed)
    layers = [nn.Linear(n_in, n), nn.LeakyReLU(0.2)]
    for i in range(depth - 1):
        layers.append(nn.Linear(n, n))
        if i < depth - 2:
            layers.append(nn.LeakyReLU(0.2))
    model = nn.Sequential(*layers).to(DT)
    if orthogonal:
        with torch.no_grad():
            for m in model[2:]:
                if isinstance(m, nn.Linear):
                    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=DT))
                    m.weight.copy_(q)
    return model


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_gait_with_orthogonal_weights_and_leaky_relu_is_backprop(loss):
    model = _orthogonal_gait_net()
    g = torch.Generator().manual_seed(11)
    x = torch.randn(7, 5, generator=g, dtype=DT)
    y = torch.randint(0, 6, (7,), generator=g) if loss == "ce" else torch.randn(7, 6, generator=g, dtype=DT)
    learner = TargetProp(model, "gait", beta=1e-2, gamma=1e-2, loss=loss)
    for a, b in zip(learner_grads(learner, x, y), backprop_grads(model, x, y, loss)):
        assert rel(a, b) < 1e-6


def test_gait_without_orthogonal_weights_is_not_backprop():
    model = _orthogonal_gait_net(orthogonal=False)
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(7, 5, generator=g, dtype=DT), torch.randint(0, 6, (7,), generator=g)
    got = learner_grads(TargetProp(model, "gait", beta=1e-2, gamma=1e-2), x, y)
    assert rel(got[0], backprop_grads(model, x, y)[0]) > 0.05


def test_gait_targets_invert_the_layers():
    # gamma = 1 with f' = 1 (identity activations): t_{l-1} = f_l^{-1}(t_l) exactly.
    model = _square_net()
    learner = TargetProp(model, "gait", gamma=1.0, loss="mse")
    x = torch.randn(4, 5, dtype=DT)
    weights, biases, hs, pre = learner._forward(x)
    t_out = hs[-1] + 0.1
    targets = ref.gait_targets(hs, pre, t_out, weights, biases, learner.kinds, learner.slopes, 1.0)
    for l in range(1, 4):
        assert torch.allclose(targets[l - 1] @ weights[l].T + biases[l], targets[l], rtol=0, atol=1e-12)
    assert Activation(learner.kinds[0]) is Activation.IDENTITY


def _nonlinear_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 4), nn.Sigmoid(),
                         nn.Linear(4, 3)).to(DT)


@pytest.mark.parametrize("beta", [1.0, 0.1, 1e-4])
def test_gated_feedback_set_to_the_transpose_is_backprop_on_a_nonlinear_net(beta):
    # g_l(h) = W_l^T (s_l'(a_l) * h) + c: J_g = J_f^T exactly, and g is linear in h.
    model = _nonlinear_net()
    g = torch.Generator().manual_seed(12)
    x, y = torch.randn(9, 6, generator=g, dtype=DT), torch.randint(0, 3, (9,), generator=g)
    learner = TargetProp(model, "dtp", beta=beta, feedback="gated")
    with torch.no_grad():
        for l, m in enumerate(learner.feedback):
            m.weight.copy_(model[2 * l + 2].weight.T)
    for a, b in zip(learner_grads(learner, x, y), backprop_grads(model, x, y)):
        assert rel(a, b) <= 1e-12 / min(beta, 1.0)


def test_ldrl_gated_feedback_converges_to_the_transpose_on_a_nonlinear_net():
    # Columns of units that are rarely active (a ReLU unit on 2 % of the
    # inputs) learn slowly, and the finite noise sees F's curvature: judged on
    # the columns of units active on at least 10 % of the inputs.
    model = _nonlinear_net()
    learner = TargetProp(model, "ldrl", noise=0.05, seed=13, feedback="gated")
    start = [rel(m.weight.detach(), model[2 * l + 2].weight.detach().T) for l, m in enumerate(learner.feedback)]
    opt = torch.optim.Adam(learner.feedback_parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.StepLR(opt, 200, 0.3)
    g = torch.Generator().manual_seed(14)
    for _ in range(800):
        opt.zero_grad()
        learner.train_feedback(torch.randn(128, 6, generator=g, dtype=DT))
        opt.step()
        sched.step()
    _, _, _, pre = learner._forward(torch.randn(2000, 6, generator=g, dtype=DT))
    for l, (m, gate) in enumerate(zip(learner.feedback, learner._gates(pre))):
        cols = (gate > 0).to(DT).mean(0) >= 0.1
        assert cols.sum() >= 3
        err = rel(m.weight.detach()[:, cols], model[2 * l + 2].weight.detach().T[:, cols])
        assert err < 0.05 and err < start[l] / 15, (l, err, start[l])
