"""Spiking e-prop learners against exact oracles (Bellec et al. 2020)."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F

import localgrad
from localgrad.online import ALIF, LIF, SpikingBPTT, SpikingEProp
from localgrad.online.eprop_spiking import step_losses

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="the compiled extension is not built")

MODELS = [pytest.param(LIF, id="LIF"), pytest.param(ALIF, id="ALIF")]
CHUNKS = [(0, 5), (5, 6), (6, 13)]  # lengths 5, 1 and 7


def make(cls, I=5, H=9, K=3, T=13, B=4, loss="mse", seed=0):
    torch.manual_seed(seed)
    model = cls(I, H, K, dtype=torch.float64, weight_scale=2.0, tau_m=10.0, tau_out=5.0)
    xs = torch.randn(T, B, I, dtype=torch.float64)
    if loss == "mse":
        targets = torch.randn(T, B, K, dtype=torch.float64)
    else:
        targets = torch.randint(-1, K, (T, B))
    return model, xs, targets


def bptt(model, xs, targets, loss):
    """Surrogate BPTT gradients, and dE/dz_t from autograd: the gradient of
    the loss w.r.t. each step's spikes through every path but the adaptation
    (which the ALIF eligibility vector carries)."""
    model.zero_grad()
    state = model.initial_state(xs.shape[1])
    zs, ys = [], []
    for t in range(xs.shape[0]):
        state = model.step(xs[t], state)
        state["z"].retain_grad()
        zs.append(state["z"])
        ys.append(state["y"])
    step_losses(torch.stack(ys), targets, loss).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads, torch.stack([z.grad for z in zs])


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "reference"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("cls", MODELS)
def test_total_derivative_signal_gives_bptt(cls, loss, use_kernel):
    # Bellec 2020 eq. 1: dE/dW_ji = sum_t dE/dz_j^t e_ji^t, computed online
    # over chunks of 5, 1 and 7 steps.
    model, xs, targets = make(cls, loss=loss)
    (g_in, g_rec, g_out, g_bias), dz = bptt(model, xs, targets, loss)
    learner = SpikingEProp(model, loss=loss, use_kernel=use_kernel)
    learner.reset(xs.shape[1])
    for a, b in CHUNKS:
        learner.run(xs[a:b], targets[a:b], learning_signal=dz[a:b])
    assert g_rec.abs().max() > 0 and g_in.abs().max() > 0
    assert rel(model.weight_in.grad, g_in) <= 1e-10
    assert rel(model.weight_rec.grad, g_rec) <= 1e-10
    assert (model.weight_rec.grad.diagonal() == 0).all()
    # The readout gradient is exact in e-prop itself.
    model.zero_grad()
    learner.reset(xs.shape[1])
    for a, b in CHUNKS:
        learner.run(xs[a:b], targets[a:b])
    assert rel(model.readout.weight.grad, g_out) <= 1e-10
    assert rel(model.readout.bias.grad, g_bias) <= 1e-10


def readout_signal(dedy, feedback, kappa):
    """L_t = sum_{t' >= t} kappa^(t'-t) dE/dy_t' @ feedback: the learning
    signal e-prop's filtered trace stands for, computed backward in time."""
    out = torch.zeros(dedy.shape[0], dedy.shape[1], feedback.shape[1], dtype=dedy.dtype)
    acc = torch.zeros_like(out[0])
    for t in reversed(range(dedy.shape[0])):
        acc = kappa * acc + dedy[t] @ feedback
        out[t] = acc
    return out


@pytest.mark.parametrize("feedback", ["symmetric", "random"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("cls", MODELS)
def test_filtered_trace_is_future_readout_signal(cls, loss, feedback):
    # Eq. 3 with a leaky readout: sum_t L_t (kappa-filtered e)_t equals
    # sum_t (future-filtered L)_t e_t, so online e-prop equals the given-signal
    # path fed with the readout error sent back through B.
    model, xs, targets = make(cls, loss=loss, seed=1)
    learner = SpikingEProp(model, feedback=feedback, loss=loss, seed=3)
    learner.reset(xs.shape[1])
    for a, b in CHUNKS:
        learner.run(xs[a:b], targets[a:b])
    online = [model.weight_in.grad.clone(), model.weight_rec.grad.clone()]
    with torch.no_grad():
        ys, _, _ = model(xs)
    ys = ys.clone().requires_grad_()
    step_losses(ys, targets, loss).sum().backward()
    signal = readout_signal(ys.grad, learner.feedback_matrix(), model.kappa)
    model.zero_grad()
    other = SpikingEProp(model, feedback=feedback, loss=loss, seed=3)
    other.reset(xs.shape[1])
    other.run(xs, targets, learning_signal=signal)
    assert online[1].abs().max() > 0
    assert rel(online[0], model.weight_in.grad) <= 1e-10
    assert rel(online[1], model.weight_rec.grad) <= 1e-10


@pytest.mark.parametrize("cls", MODELS)
def test_symmetric_eprop_points_like_bptt(cls):
    model, xs, targets = make(cls, I=6, H=24, K=4, T=30, B=16, seed=2)
    (g_in, g_rec, _, _), _ = bptt(model, xs, targets, "mse")
    learner = SpikingEProp(model)
    learner.reset(xs.shape[1])
    learner.run(xs, targets)
    for g, p in ((g_in, model.weight_in), (g_rec, model.weight_rec)):
        cos = F.cosine_similarity(g.flatten(), p.grad.flatten(), dim=0).item()
        assert cos > 0.5, cos


@pytest.mark.parametrize("cls", MODELS)
def test_kernel_learner_equals_eager_reference(cls):
    model, xs, targets = make(cls, loss="ce")
    grads = []
    for use_kernel in (True, False):
        m = copy.deepcopy(model)
        learner = SpikingEProp(m, feedback="random", loss="ce", use_kernel=use_kernel)
        learner.reset(xs.shape[1])
        losses = [learner.run(xs[a:b], targets[a:b]) for a, b in CHUNKS]
        grads.append([p.grad for p in m.parameters()] + losses)
    for a, b in zip(*grads):
        assert rel(a, b) <= 1e-12


def test_step_equals_run():
    model, xs, targets = make(ALIF)
    runs = []
    for by_step in (False, True):
        m = copy.deepcopy(model)
        learner = SpikingEProp(m)
        learner.reset(xs.shape[1])
        if by_step:
            loss = sum(learner.step(xs[t], targets[t]) for t in range(xs.shape[0]))
        else:
            loss = learner.run(xs, targets)
        runs.append([loss] + [p.grad for p in m.parameters()])
    for a, b in zip(*runs):
        assert rel(a, b) <= 1e-12


def test_step_loss_is_torch_loss():
    model, xs, targets = make(LIF, loss="ce")
    learner = SpikingEProp(model, loss="ce")
    learner.reset(xs.shape[1])
    valid = torch.randint(0, 3, (xs.shape[1],))
    loss = learner.step(xs[0], valid)
    assert torch.allclose(loss, F.cross_entropy(learner.last_outputs[0], valid))
    model2, xs2, targets2 = make(LIF)
    learner = SpikingEProp(model2)
    learner.reset(xs2.shape[1])
    assert torch.allclose(learner.step(xs2[0], targets2[0]), F.mse_loss(learner.last_outputs[0], targets2[0]))


@pytest.mark.parametrize("learner_cls", [SpikingEProp, SpikingBPTT])
@pytest.mark.parametrize("cls", MODELS)
def test_resume_is_bit_exact(cls, learner_cls):
    model, xs, targets = make(cls)
    kwargs = {"feedback": "random", "seed": 7} if learner_cls is SpikingEProp else {}
    learner = learner_cls(model, **kwargs)
    learner.reset(xs.shape[1])
    learner.run(xs[:6], targets[:6])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "learner": learner.state_dict(),
                "grads": [p.grad for p in model.parameters()]}, buffer)  # fmt: skip
    learner.run(xs[6:], targets[6:])

    buffer.seek(0)
    saved = torch.load(buffer)
    torch.manual_seed(123)  # another init and another random feedback before loading
    other_model = cls(5, 9, 3, dtype=torch.float64, tau_m=10.0, tau_out=5.0)  # same hyperparameters
    other_model.load_state_dict(saved["model"])
    for p, g in zip(other_model.parameters(), saved["grads"]):
        p.grad = g
    other = learner_cls(other_model, **({"feedback": "random", "seed": 99} if kwargs else {}))
    other.load_state_dict(saved["learner"])
    other.run(xs[6:], targets[6:])
    for a, b in zip(model.parameters(), other_model.parameters()):
        assert torch.equal(a.grad, b.grad)
    for key, value in learner.state_dict()["state"].items():
        assert torch.equal(value, other.state_dict()["state"][key]), key


@pytest.mark.parametrize("learner_cls", [SpikingEProp, SpikingBPTT])
def test_bad_inputs_are_refused_clearly(learner_cls):
    model, xs, targets = make(LIF)
    learner = learner_cls(model)
    with pytest.raises(RuntimeError, match="call reset"):
        learner.step(xs[0], targets[0])
    learner.reset(4)
    with pytest.raises(ValueError, match=r"inputs must have shape \(T, 4, 5\)"):
        learner.run(xs[:, :, :3], targets)
    with pytest.raises(ValueError, match=r"inputs must have shape"):
        learner.run(xs[:, :2], targets[:, :2])
    bad = xs.clone()
    bad[3, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        learner.run(bad, targets)
    with pytest.raises(ValueError, match="mse targets must have shape"):
        learner.run(xs, targets[..., :2])
    with pytest.raises(ValueError, match="x_t must have shape"):
        learner.step(xs, targets)


def test_constructor_errors():
    model = LIF(3, 4, 2)
    with pytest.raises(ValueError, match="feedback must be"):
        SpikingEProp(model, feedback="transpose")
    with pytest.raises(ValueError, match="loss must be"):
        SpikingEProp(model, loss="l1")
    with pytest.raises(TypeError, match="LIF or ALIF"):
        SpikingEProp(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="v_th"):
        LIF(3, 4, 2, v_th=0.0)


@pytest.mark.parametrize("cls", MODELS)
def test_empty_batch(cls):
    model, xs, targets = make(cls, B=0)
    learner = SpikingEProp(model)
    learner.reset(0)
    assert learner.run(xs, targets).item() == 0
    assert all((p.grad == 0).all() for p in model.parameters())


def test_self_connections_stay_zero():
    model, xs, targets = make(ALIF)
    assert (model.weight_rec.diagonal() == 0).all()
    learner = SpikingEProp(model)
    learner.reset(xs.shape[1])
    learner.run(xs, targets)
    assert (model.weight_rec.grad.diagonal() == 0).all()
    SpikingBPTT(model).reset(4)
    model.zero_grad()
    bptt_learner = SpikingBPTT(model)
    bptt_learner.reset(4)
    bptt_learner.run(xs, targets)
    assert (model.weight_rec.grad.diagonal() == 0).all()


@pytest.mark.parametrize("feedback", ["symmetric", "random"])
def test_eprop_fits_a_fixed_batch(feedback):
    # Seeded and deterministic: the loss of a small regression task must fall
    # well below its start under Adam with e-prop gradients.
    torch.manual_seed(0)
    model = ALIF(4, 24, 2, dtype=torch.float64, weight_scale=2.0, tau_out=5.0)
    xs = torch.rand(20, 8, 4, dtype=torch.float64) * 2
    targets = torch.sin(torch.linspace(0, 6, 20, dtype=torch.float64)).view(20, 1, 1).expand(20, 8, 2).contiguous()
    learner = SpikingEProp(model, feedback=feedback, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        learner.reset(8)
        losses.append(learner.run(xs, targets).item())
        opt.step()
        with torch.no_grad():
            model.weight_rec.mul_(model.rec_mask)
    assert losses[-1] < 0.5 * losses[0], losses


def test_spiking_task_rows():
    from localgrad.experiments.spiking_task import ROWS, compare, format_rows

    rows = compare(hidden=12, epochs=1, n_train=128, batch_size=64, channels=6)
    assert [r["rule"] for r in rows] == list(ROWS)
    for r in rows:
        assert 0 <= r["test_acc"] <= 1 and r["ms_per_step"] > 0 and r["bytes_per_sample"] > 0
    assert "eprop_symmetric" in format_rows(rows)


@pytest.mark.parametrize("cls", MODELS)
def test_eprop_of_a_spiking_model_is_spiking_eprop(cls):
    """localgrad.online.EProp picks the spiking rule for LIF/ALIF models and
    gives the same gradients as SpikingEProp built directly."""
    from localgrad.online import EProp, LeakyRNN

    model, xs, targets = make(cls)
    learner = EProp(model, feedback="random", seed=3)
    assert isinstance(learner, SpikingEProp) and learner.feedback == "random" and learner.seed == 3
    learner.reset(xs.shape[1])
    learner.run(xs, targets)
    via_eprop = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    direct = SpikingEProp(model, feedback="random", seed=3)
    direct.reset(xs.shape[1])
    direct.run(xs, targets)
    assert all(torch.equal(a, p.grad) for a, p in zip(via_eprop, model.parameters()))
    assert type(EProp(LeakyRNN(3, 4, 2))) is EProp


def test_demo_spiking_task_prints_its_table(capsys):
    from localgrad import cli

    assert cli.main(["demo", "--mode", "online", "--task", "spiking", "--rules", "eprop_symmetric",
                     "--hidden", "16", "--epochs", "1", "--no-progress", "--device", "cpu", "--neuron", "lif"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "| eprop_symmetric | LIF | 16 |" in out
