"""localgrad.metrics.alignment: the angles FA/DFA papers plot."""

import copy
import math

import pytest
import torch
from torch import nn

import localgrad
from localgrad import metrics


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3)).double()


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 10, generator=g, dtype=torch.float64), torch.randint(0, 3, (32,), generator=g)


def test_angle():
    a = torch.tensor([1.0, 0.0])
    assert metrics.angle(a, torch.tensor([0.0, 2.0])) == pytest.approx(90)
    assert metrics.angle(a, torch.tensor([-3.0, 0.0])) == pytest.approx(180)
    assert metrics.angle(a, torch.tensor([1.0, 1.0])) == pytest.approx(45)
    assert metrics.angle(a, torch.zeros(2)) == 90


def test_fa_with_feedback_equal_to_weight_is_perfectly_aligned():
    m = localgrad.convert(model(), rule="fa")
    with torch.no_grad():
        for layer in m:
            if hasattr(layer, "feedback"):
                layer.feedback.copy_(layer.weight)
    for row in metrics.alignment(m, *batch()):
        assert row.update_angle < 1e-5 and row.feedback_angle < 1e-5


def test_dfa_rows_and_the_output_layer():
    m = localgrad.convert(model(), rule="dfa", seed=1)
    rows = metrics.alignment(m, *batch())
    assert [r.name for r in rows] == ["0", "2", "4"]
    assert rows[-1].feedback_angle is None and rows[-1].update_angle < 1e-5
    # The last hidden layer's B against W_out: the angle between the two matrices.
    w_out, b = m[4].weight.detach(), m[2].feedback
    expected = math.degrees(math.acos((w_out * b).sum() / (w_out.norm() * b.norm())))
    assert rows[1].feedback_angle == pytest.approx(expected)
    # The first hidden layer's B against W_out @ W_2.
    prod = w_out @ m[2].weight.detach()
    b0 = m[0].feedback
    expected = math.degrees(math.acos((prod * b0).sum() / (prod.norm() * b0.norm())))
    assert rows[0].feedback_angle == pytest.approx(expected)
    assert all(0 < r.update_angle < 180 for r in rows[:-1])


def test_leaves_the_model_and_brsf_state_alone():
    m = localgrad.convert(model(), rule="brsf")
    before = copy.deepcopy(m.state_dict())
    metrics.alignment(m, *batch())
    assert all(p.grad is None for p in m.parameters())
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_sign_symmetry_aligns_better_than_random_feedback():
    x, y = batch()
    usf = metrics.alignment(localgrad.convert(model(), rule="usf"), x, y)
    fa = metrics.alignment(localgrad.convert(model(), rule="fa"), x, y)
    assert all(u.feedback_angle < 60 < f.feedback_angle for u, f in zip(usf, fa))


def stock_mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 4)).double()


def stock_batch():
    g = torch.Generator().manual_seed(2)
    return torch.randn(16, 12, generator=g, dtype=torch.float64), torch.randint(0, 4, (16,), generator=g)


def test_update_alignment_of_backprop_is_zero():
    rows = metrics.update_alignment(localgrad.learner(model(), "backprop"), *batch())
    assert [name for name, _, _ in rows] == [f"{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]
    for name, degrees, ratio in rows:
        assert degrees < 1e-6 and ratio == pytest.approx(1, abs=1e-12), name


def test_update_alignment_of_zero_divergence_pc_is_backprop():
    # Z-IL with loss "ce" reads each layer's error when the wave of the
    # output error -dCE/dmu reaches it: backprop's gradient (Song et al. 2020, Thm. 1).
    rows = metrics.update_alignment(localgrad.learner(stock_mlp(), "pc-zil"), *stock_batch())
    assert len(rows) == 4
    for name, degrees, ratio in rows:
        assert degrees < 1e-6 and ratio == pytest.approx(1, abs=1e-10), name


def test_update_alignment_of_fa_differs_below_the_output():
    rows = metrics.update_alignment(localgrad.learner(model(), "fa", seed=3), *batch())
    angles = dict((name, degrees) for name, degrees, _ in rows)
    assert angles["0.weight"] > 1
    assert angles["4.weight"] < 1e-6  # the output layer's update is its true gradient


def test_update_alignment_leaves_the_original_alone():
    net = model()
    learner = localgrad.learner(net, "brsf", seed=4)
    before = copy.deepcopy(net.state_dict())
    rng = torch.get_rng_state()
    metrics.update_alignment(learner, *batch())
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_update_alignment_leaves_the_learners_generator_alone():
    # DTP draws its feedback-training noise from its own generator: had the
    # call advanced the original's, the second call would draw other noise.
    net, (x, y) = stock_mlp(), stock_batch()
    learner = localgrad.learner(net, "dtp", seed=5)
    first = metrics.update_alignment(learner, x, y)
    assert metrics.update_alignment(learner, x, y) == first
    assert all(p.grad is None for p in [*net.parameters(), *learner.parameters()])


def test_update_alignment_refuses_sequence_rules():
    learner = localgrad.learner(localgrad.online.LeakyRNN(3, 5, 2).double(), "rtrl")
    with pytest.raises(NotImplementedError, match="rule 'rtrl' takes sequences"):
        metrics.update_alignment(learner, torch.zeros(2, 4, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.long))
