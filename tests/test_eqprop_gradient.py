"""The EqProp gradient oracle (Scellier & Bengio 2017, Theorem 1; the GDU
property of Ernoult et al. 2019): at a converged free fixed point s*, the
EqProp estimate tends to the gradient of l(s*) as beta -> 0, with an error
linear in beta for one-sided nudging and quadratic for centered nudging.

The true gradient comes from autograd through many further steps of the same
dynamics started at s* (detached): for a contractive map the derivative of
s_K with respect to theta converges to ds*/dtheta (implicit differentiation).
Why it holds for the hard sigmoid too: s = clamp(dPhi/ds, 0, 1) is exactly the
KKT condition of maximising Phi - 1/2 ||s||^2 (- beta l) over the box
[0, 1]^n, so the fixed points are constrained extrema with a fixed active set.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import localgrad
from localgrad import ops
from localgrad.reference.eqprop import sigma

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")

SIZES = [6, 9, 7, 4]
BATCH = 5
STEPS = 300  # contraction ~0.5 per step: converged to rounding long before


def make_problem(seed, activation):
    g = torch.Generator().manual_seed(seed)
    weights = [0.6 * (torch.rand(b, a, generator=g, dtype=torch.float64) * 2 - 1) / a**0.5
               for a, b in zip(SIZES[:-1], SIZES[1:])]
    lo = -0.5 if activation == 0 else -1.0  # hard sigmoid: some units pinned at 0 or 1
    biases = [torch.rand(b, generator=g, dtype=torch.float64) * (1 - 2 * lo) + lo for b in SIZES[1:]]
    x = torch.rand(BATCH, SIZES[0], generator=g, dtype=torch.float64)
    y = F.one_hot(torch.randint(0, SIZES[-1], (BATCH,), generator=g), SIZES[-1]).to(torch.float64)
    return x, weights, biases, y


def loss_of(out, y, loss):
    if loss == "mse":
        return 0.5 * (out - y).pow(2).sum(1).mean()
    return -(y * torch.log_softmax(out, 1)).sum(1).mean()


def free_fixed_point(x, weights, biases, activation, async_update):
    states = [torch.zeros(BATCH, n, dtype=torch.float64) for n in SIZES[1:]]
    ops.eqprop_relax(x, weights, biases, states, activation=activation, steps=STEPS, async_update=async_update)
    return states


def true_gradient(x, weights, biases, y, fixed, activation, loss):
    """d l(s*) / d theta by autograd through further synchronous steps from s*."""
    w = [t.clone().requires_grad_(True) for t in weights]
    b = [t.clone().requires_grad_(True) for t in biases]
    s = [t.clone() for t in fixed]
    n = len(w)
    for _ in range(STEPS // 2):
        new = []
        for j in range(n):
            pre = (x if j == 0 else s[j - 1]) @ w[j].T + b[j]
            if j + 1 < n:
                pre = pre + s[j + 1] @ w[j + 1]
            new.append(sigma(pre, activation))
        s = new
    grads = torch.autograd.grad(loss_of(s[-1], y, loss), w + b)
    return torch.cat([g.flatten() for g in grads])


def eqprop_estimate(x, weights, biases, y, fixed, beta, nudging, activation, loss, async_update):
    """.grad as EqPropMLP writes it: minus the estimate, batch mean."""

    def phase(signed_beta):
        s = [t.clone() for t in fixed]
        ops.eqprop_relax(x, weights, biases, s, y, beta=signed_beta, nudge=loss, activation=activation,
                         steps=STEPS, async_update=async_update)
        return s

    if nudging == "centered":
        a, b, scale = phase(-beta), phase(beta), 1 / (2 * beta * BATCH)
    elif nudging == "positive":
        a, b, scale = fixed, phase(beta), 1 / (beta * BATCH)
    else:
        a, b, scale = phase(-beta), fixed, 1 / (beta * BATCH)
    gw, gb = ops.eqprop_update(x, a, b, scale)
    return torch.cat([g.flatten() for g in gw + gb])


def fit_slope(betas, errors):
    lx = torch.tensor([math.log(v) for v in betas], dtype=torch.float64)
    ly = torch.tensor([math.log(v) for v in errors], dtype=torch.float64)
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())


@pytest.mark.parametrize(
    "activation,loss,async_update",
    [(0, "mse", False), (0, "ce", True), (1, "mse", True), (2, "ce", False)],
    ids=["hardsigmoid-mse-sync", "hardsigmoid-ce-async", "sigmoid-mse-async", "tanh-ce-sync"],
)
def test_estimate_converges_to_the_gradient_with_the_predicted_order(activation, loss, async_update):
    x, weights, biases, y = make_problem(seed=1, activation=activation)
    fixed = free_fixed_point(x, weights, biases, activation, async_update)
    # The oracle's premise: s* is a fixed point to rounding.
    again = [t.clone() for t in fixed]
    ops.eqprop_relax(x, weights, biases, again, activation=activation, steps=1)
    assert max((a - f).abs().max().item() for a, f in zip(again, fixed)) < 1e-14

    truth = true_gradient(x, weights, biases, y, fixed, activation, loss)
    assert truth.norm() > 1e-3  # a gradient worth matching
    # Small enough that no hard-sigmoid unit crosses 0 or 1 between phases.
    betas = [0.02, 0.01, 0.005, 0.0025]
    errors, cosines = {}, []
    for nudging in ("positive", "negative", "centered"):
        errors[nudging] = []
        for beta in betas:
            est = eqprop_estimate(x, weights, biases, y, fixed, beta, nudging, activation, loss, async_update)
            cosine = F.cosine_similarity(est, truth, dim=0).item()
            assert cosine > 0.99, (nudging, beta, cosine)
            cosines.append(cosine)
            errors[nudging].append(((est - truth).norm() / truth.norm()).item())
    for one_sided in ("positive", "negative"):
        slope = fit_slope(betas, errors[one_sided])
        assert 0.8 < slope < 1.2, (one_sided, slope, errors)
        assert all(c < p for c, p in zip(errors["centered"], errors[one_sided]))
    centered = fit_slope(betas, errors["centered"])
    print(f"slopes: positive {fit_slope(betas, errors['positive']):.3f}, negative "
          f"{fit_slope(betas, errors['negative']):.3f}, centered {centered:.3f}; min cosine {min(cosines):.6f}")
    assert 1.6 < centered < 2.4, (centered, errors)


def test_module_gradient_matches_autograd_at_the_fixed_point():
    """EqPropMLP.eqprop_step writes .grad close to d l(s*)/d theta."""
    from localgrad.eqprop import EqPropMLP

    x, weights, biases, y = make_problem(seed=1, activation=0)
    model = EqPropMLP(SIZES, beta=0.01, nudging="centered", t_free=STEPS, t_nudge=STEPS).double()
    with torch.no_grad():
        for layer, w, b in zip(model.layers, weights, biases):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    loss, pred = model.eqprop_step(x, y.argmax(1))
    fixed = free_fixed_point(x, weights, biases, 0, False)
    truth = true_gradient(x, weights, biases, y, fixed, 0, "mse")
    grads = torch.cat([p.grad.flatten() for p in [m.weight for m in model.layers] + [m.bias for m in model.layers]])
    assert ((grads - truth).norm() / truth.norm()).item() < 1e-3
    assert abs(loss.item() - loss_of(fixed[-1], y, "mse").item()) < 1e-12
    assert torch.equal(pred, fixed[-1].argmax(1))
