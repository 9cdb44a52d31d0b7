"""Broadcast alignment (Samadi, Lillicrap & Tweed 2017): the output error is
broadcast to every hidden layer through fixed random matrices; with the
cell's derivative it is DFA's update, without it the plain broadcast."""

import copy

import pytest
import torch
import torch.nn.functional as F
from test_dfa_rule import deep_mlp, dfa_formula, lenet, run_step
from testing import assert_resume_is_exact, rel_err

import localgrad

F64 = torch.float64


def test_with_derivative_the_update_is_the_broadcast_formula_and_equals_dfa():
    x, y = torch.randn(9, 3, 4, dtype=F64), torch.randint(0, 4, (9,))
    plain = deep_mlp()
    ba = localgrad.convert(copy.deepcopy(plain), rule="ba", seed=5)
    dfa = localgrad.convert(plain, rule="dfa", seed=5)
    run_step(ba, x, y)
    run_step(dfa, x, y)
    expected = dfa_formula(ba, x, y)
    for p, q in zip(ba.parameters(), dfa.parameters()):
        assert rel_err(p.grad, expected[id(p)]) <= 1e-12
        assert torch.equal(p.grad, q.grad)


def test_without_derivative_the_hidden_teaching_signal_is_e_times_B():
    plain = deep_mlp()
    model = localgrad.convert(copy.deepcopy(plain), rule="ba", derivative=False, seed=5)
    x, y = torch.randn(6, 12, dtype=F64), torch.randint(0, 4, (6,))
    run_step(model, x, y)
    with torch.no_grad():
        out = model(x)
        inputs, h = [], x
        for m in model:
            if isinstance(m, torch.nn.Linear):
                inputs.append(h)
            h = m(h)
    out.requires_grad_(True)
    (e,) = torch.autograd.grad(F.cross_entropy(out, y), out)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    for layer, inp in zip(linears[:-1], inputs[:-1]):
        delta = e @ layer.feedback  # no f'(a): the plain broadcast
        assert rel_err(layer.weight.grad, delta.T @ inp) <= 1e-12
        assert rel_err(layer.bias.grad, delta.sum(0)) <= 1e-12
    assert rel_err(linears[-1].weight.grad, e.T @ inputs[-1]) <= 1e-12
    # The derivative matters: the two variants differ on this network.
    other = localgrad.convert(plain, rule="ba", seed=5)
    run_step(other, x, y)
    assert rel_err(other[1].weight.grad, linears[0].weight.grad) > 1e-3


def test_conv_model_converts_and_matches_dfa():
    x, y = torch.randn(4, 1, 12, 12, dtype=F64), torch.randint(0, 3, (4,))
    models = []
    for rule in ("ba", "dfa"):
        model = lenet()
        model(x)
        models.append(localgrad.convert(model, rule=rule, example_input=x, seed=1))
        run_step(models[-1], x, y)
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(p.grad, q.grad)
    with pytest.raises(ValueError, match=r"rule='ba'.*example_input"):
        model = lenet()
        model(x)
        localgrad.convert(model, rule="ba")


def test_state_dict_resume_and_alignment_report_name_the_rule():
    model = localgrad.convert(deep_mlp(), rule="ba", seed=2)
    assert model.state_dict()["1.feedback"].shape == (4, 9)
    x, y = torch.randn(8, 12, dtype=F64), torch.randint(0, 4, (8,))
    assert {r.rule for r in localgrad.metrics.alignment(model, x, y)} == {"ba"}
    batches = [(torch.randn(8, 12, dtype=F64), torch.randint(0, 4, (8,))) for _ in range(4)]
    assert_resume_is_exact(model, lambda: localgrad.convert(deep_mlp(), rule="ba", seed=9), batches, split=2)
