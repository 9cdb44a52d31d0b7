"""The Learner API over every registered rule: the registry, one step's
`.grad`, bit-exact resume, the empty batch, bad input, frozen parameters."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from learner_models import REFUSE_MLP, batch_for, model_for, stock_mlp

import localgrad

RULES = localgrad.rules()
FAMILIES = set(localgrad.FAMILIES)


def build(rule, seed=0, model_seed=0):
    model = model_for(rule, model_seed)
    learner = localgrad.learner(model, rule, seed=seed)
    optimizer = torch.optim.Adam([*model.parameters(), *learner.parameters()], lr=1e-2)
    return model, learner, optimizer


def train(learner, optimizer, rule, steps, first=0):
    for s in range(first, first + steps):
        optimizer.zero_grad()
        learner.step(*batch_for(rule, 6, s))
        optimizer.step()


def test_registry_lists_every_family_with_its_papers():
    assert len(RULES) >= 30 and len(set(RULES)) == len(RULES)
    for rule in RULES:
        info = localgrad.rule_info(rule)
        assert info.name == rule and info.family in FAMILIES and info.inputs in ("static", "sequence")
        assert info.summary and info.paper
    assert {localgrad.rule_info(r).family for r in RULES} == FAMILIES - {"meta"}
    assert set(localgrad.rules("static")) | set(localgrad.rules("sequence")) == set(RULES)
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        localgrad.learner(stock_mlp(), "nope")


def test_each_kind_of_model_has_one_exact_gradient_baseline():
    # What benchmarks and tables divide by: backprop for static models, BPTT for each recurrent kind.
    assert [r for r in RULES if localgrad.rule_info(r).baseline] == ["backprop", "bptt", "bptt-spiking"]


@pytest.mark.parametrize("rule", localgrad.rules("static"))
def test_stock_mlp_is_trained_or_refused_by_name(rule):
    if rule in REFUSE_MLP:
        with pytest.raises(localgrad.UnsupportedModelError, match=REFUSE_MLP[rule]):
            localgrad.learner(stock_mlp(), rule)
    else:
        assert isinstance(localgrad.learner(stock_mlp(), rule), localgrad.Learner)


@pytest.mark.parametrize("rule", RULES)
def test_one_step_writes_finite_grad_into_every_trainable_parameter(rule):
    model, learner, _ = build(rule)
    out = learner.step(*batch_for(rule, 6))
    assert isinstance(out, localgrad.StepOutput) and out.loss.dim() == 0 and torch.isfinite(out.loss)
    params = [*model.parameters(), *learner.parameters()]
    assert params
    for p in params:
        assert p.grad is not None and p.grad.shape == p.shape and torch.isfinite(p.grad).all()
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())
    pred = learner.predict(batch_for(rule, 3)[0])
    assert pred.shape[0] == 3 and torch.isfinite(pred).all()


@pytest.mark.parametrize("rule", RULES)
def test_resume_into_objects_built_with_another_seed_is_bit_exact(rule):
    model, learner, optimizer = build(rule, seed=0)
    train(learner, optimizer, rule, 3)
    saved = copy.deepcopy([model.state_dict(), learner.state_dict(), optimizer.state_dict()])
    train(learner, optimizer, rule, 2, first=3)
    model2, learner2, optimizer2 = build(rule, seed=7, model_seed=5)
    model2.load_state_dict(saved[0])
    learner2.load_state_dict(saved[1])
    optimizer2.load_state_dict(saved[2])
    train(learner2, optimizer2, rule, 2, first=3)
    for a, b in zip([*model.parameters(), *learner.parameters()], [*model2.parameters(), *learner2.parameters()]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("rule", RULES)
def test_empty_batch_adds_zeros(rule):
    model, learner, _ = build(rule)
    x, y = batch_for(rule, 0)
    out = learner.step(x, y)
    assert out.loss.item() == 0.0
    for p in [*model.parameters(), *learner.parameters()]:
        assert p.grad is not None and not p.grad.any()


@pytest.mark.parametrize("rule", RULES)
def test_bad_input_names_the_argument(rule):
    model, learner, _ = build(rule)
    x, y = batch_for(rule, 4)
    with pytest.raises(TypeError, match="x must have the model's dtype"):
        learner.step(x.float(), y)
    with pytest.raises(ValueError, match="y must have x's batch size 4"):
        learner.step(x, y[:3])
    with pytest.raises(ValueError, match=r"y must lie in \[0, \d+\)"):
        learner.step(x, torch.full_like(y, 99))
    with pytest.raises(TypeError, match="x must be a tensor"):
        learner.step(x.tolist(), y)
    for p in model.parameters():
        assert p.grad is None


# Rules that refuse a model with frozen parameters, and what they say.
REFUSE_FROZEN = {"pc-ipc": "frozen parameters"}


@pytest.mark.parametrize("rule", RULES)
def test_frozen_parameters_get_no_grad(rule):
    model, learner, _ = build(rule)
    first = next(model.parameters())
    first.requires_grad_(False)
    if rule in REFUSE_FROZEN:
        with pytest.raises(ValueError, match=REFUSE_FROZEN[rule]):
            learner.step(*batch_for(rule, 6))
        return
    learner.step(*batch_for(rule, 6))
    assert first.grad is None
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("rule", RULES)
def test_state_dict_survives_torch_save_and_a_weights_only_load(rule):
    model, learner, _ = build(rule)
    learner.step(*batch_for(rule, 4))
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    buffer.seek(0)
    _, other, _ = build(rule, seed=5)
    other.load_state_dict(torch.load(buffer, weights_only=True))
