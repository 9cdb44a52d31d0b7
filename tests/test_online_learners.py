"""The learners' contract: clear errors, empty batches, bit-exact resume from
state_dict (hidden state, sensitivities/traces, RNG), and learning a task."""

import io
import os

import pytest
import torch

from localgrad.online import BPTT, KFRTRL, RFLO, RTRL, UORO, EProp, LeakyRNN, SnAp

LEARNERS = {
    "rtrl": RTRL,
    "snap1": lambda m: SnAp(m, 1),
    "snap2": lambda m: SnAp(m, 2),
    "rflo": RFLO,
    "eprop": EProp,
    "eprop_random": lambda m: EProp(m, feedback="random", seed=3),
    "uoro": lambda m: UORO(m, seed=5),
    "kfrtrl": lambda m: KFRTRL(m, seed=5),
    "kfrtrl2": lambda m: KFRTRL(m, rank=2, seed=5),
    "bptt": BPTT,
}


def model(mask=True):
    torch.manual_seed(0)
    pattern = (torch.rand(5, 5) < 0.5).float() if mask else None
    return LeakyRNN(3, 5, 2, alpha=0.5, recurrent_mask=pattern)


@pytest.mark.parametrize("rule", list(LEARNERS))
def test_clear_errors(rule):
    learner = LEARNERS[rule](model())
    x = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match=r"reset\(batch_size\)"):
        learner.step(x, torch.randn(4, 2))
    learner.reset(4)
    with pytest.raises(ValueError, match="3 features"):
        learner.step(torch.randn(4, 5), torch.randn(4, 2))
    with pytest.raises(ValueError, match="batch 4"):
        learner.step(torch.randn(2, 3), torch.randn(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        learner.step(torch.full((4, 3), float("nan")), torch.randn(4, 2))
    with pytest.raises(ValueError, match="targets contain NaN"):
        learner.step(x, torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="targets must have shape"):
        learner.step(x, torch.randn(4, 3))
    with pytest.raises(ValueError, match="loss_mask"):
        learner.run(x[None], torch.randn(1, 4, 2), loss_mask=torch.ones(2, dtype=torch.bool))


def test_model_refuses_bad_mask_and_settings():
    with pytest.raises(ValueError, match=r"recurrent_mask must have shape \(5, 5\)"):
        LeakyRNN(3, 5, 2, recurrent_mask=torch.ones(4, 5))
    with pytest.raises(ValueError, match="alpha"):
        LeakyRNN(3, 5, 2, alpha=0.0)
    with pytest.raises(ValueError, match="activation"):
        LeakyRNN(3, 5, 2, activation="gelu")
    with pytest.raises(ValueError, match="feedback"):
        EProp(model(), feedback="sign")
    with pytest.raises(ValueError, match="n must be"):
        SnAp(model(), 0)
    with pytest.raises(TypeError, match="LeakyRNN"):
        RTRL(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"rank": 0}, ValueError, "KFRTRL: rank must be >= 1, got 0"),
    ({"rank": -2}, ValueError, "rank must be >= 1"),
    ({"rank": 2.0}, TypeError, "KFRTRL: rank must be an int"),
    ({"rank": 1.5}, TypeError, "rank must be an int"),
    ({"rank": "2"}, TypeError, "rank must be an int"),
    ({"rank": True}, TypeError, "rank must be an int"),
    ({"eps": float("nan")}, ValueError, "KFRTRL: eps must not be NaN"),
    ({"eps": 0.0}, ValueError, "eps must be positive"),
    ({"eps": float("inf")}, ValueError, "eps must be finite"),
    ({"seed": 1.5}, TypeError, "KFRTRL: seed must be an int"),
    ({"loss": "l1"}, ValueError, "loss must be one of"),
])
def test_kfrtrl_refuses_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        KFRTRL(model(), **kwargs)


def test_kfrtrl_state_of_another_rank_is_refused():
    a, b = KFRTRL(model(), rank=2), KFRTRL(model(), rank=1)
    a.reset(2)
    with pytest.raises(ValueError, match="rank 2, this learner rank 1"):
        b.load_state_dict(a.state_dict())


def test_kfrtrl_draws_from_its_own_generator():
    """Same seed, same run: equal .grad whatever the global RNG; another seed
    gives another estimate."""
    xs, ys = torch.randn(4, 3, 3), torch.randn(4, 3, 2)
    out = []
    for seed, global_seed in ((7, 0), (7, 1), (8, 0)):
        m = model()
        torch.manual_seed(global_seed)
        learner = KFRTRL(m, rank=2, seed=seed)
        learner.reset(3)
        learner.run(xs, ys)
        out.append(m.weight_hh.grad.clone())
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], out[2])


def test_mask_keeps_weights_sparse():
    m = model()
    learner = RTRL(m)
    learner.reset(2)
    learner.run(torch.randn(3, 2, 3), torch.randn(3, 2, 2))
    assert (m.weight_hh.grad[m.recurrent_mask == 0] == 0).all()
    assert (m.weight_hh[m.recurrent_mask == 0] == 0).all()


@pytest.mark.parametrize("rule", list(LEARNERS))
def test_empty_batch_and_empty_chunk(rule):
    m = model()
    learner = LEARNERS[rule](m)
    learner.reset(0)
    loss = learner.run(torch.randn(3, 0, 3), torch.randn(3, 0, 2))
    assert loss.numel() == 1
    learner.reset(2)
    learner.run(torch.randn(0, 2, 3), torch.randn(0, 2, 2))


@pytest.mark.parametrize("rule", [r for r in LEARNERS if r != "bptt"])
def test_resume_is_bit_exact(rule):
    g = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(9, 3, 3, generator=g), torch.randn(9, 3, 2, generator=g)

    def train(m, learner, part_x, part_y):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for s in range(0, part_x.shape[0], 2):
            opt.zero_grad()
            learner.run(part_x[s:s + 2], part_y[s:s + 2])
            opt.step()

    m = model()
    learner = LEARNERS[rule](m)
    learner.reset(3)
    train(m, learner, xs[:4], ys[:4])
    buffer = io.BytesIO()
    torch.save({"model": m.state_dict(), "learner": learner.state_dict()}, buffer)
    train(m, learner, xs[4:], ys[4:])

    torch.manual_seed(99)  # the resumed run must not depend on the global RNG
    other = LeakyRNN(3, 5, 2, alpha=0.5, recurrent_mask=m.recurrent_mask)
    resumed = LEARNERS[rule](other)
    buffer.seek(0)
    state = torch.load(buffer)
    other.load_state_dict(state["model"])
    resumed.load_state_dict(state["learner"])
    train(other, resumed, xs[4:], ys[4:])
    for (key, a), b in zip(m.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), key
    assert torch.equal(learner.h, resumed.h)


def test_bptt_truncation_cuts_the_graph():
    m = model(False).double()
    xs, ys = torch.randn(6, 2, 3, dtype=torch.float64), torch.randn(6, 2, 2, dtype=torch.float64)
    full, cut = [], []
    for trunc, out in ((None, full), (1, cut)):
        m.zero_grad()
        learner = BPTT(m, truncation=trunc)
        learner.reset(2)
        learner.run(xs, ys)
        out.append(m.weight_hh.grad.clone())
    assert not torch.allclose(full[0], cut[0])
    # truncation=1 keeps only the immediate Jacobian: RFLO with α=1 and symmetric feedback computes the same.
    m1 = LeakyRNN(3, 5, 2, alpha=1.0).double()
    grads = []
    for learner in (BPTT(m1, truncation=1), RFLO(m1, feedback="symmetric")):
        m1.zero_grad()
        learner.reset(2)
        learner.run(xs, ys)
        grads.append(m1.weight_hh.grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ["rtrl", "snap1", "eprop", "rflo", "uoro", "kfrtrl", "kfrtrl2", "bptt"])
def test_learns_a_small_regression(rule):
    """Mean MSE over the last passes falls well below the first pass (seeded,
    margins of several times the spread across seeds)."""
    torch.manual_seed(0)
    m = LeakyRNN(2, 8, 1, alpha=0.5)
    learner = LEARNERS[rule](m)
    opt = torch.optim.Adam(m.parameters(), lr=0.03)
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(10, 16, 2, generator=g)
    ys = 0.5 * torch.cumsum(xs[..., :1], 0) / torch.arange(1, 11).view(10, 1, 1)  # running mean of input 0
    losses = []
    for _ in range(60):
        learner.reset(16)
        opt.zero_grad()
        losses.append(learner.run(xs, ys).item())
        opt.step()
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0], losses[::10]


def test_delayed_recall_task_and_online_demo(capsys):
    """Chance is 1/4; the online demo mode prints its table; e-prop solves the
    short-delay task well above chance (seeded, wide margin)."""
    from localgrad import cli
    from localgrad.experiments import online_tasks as tasks

    task = tasks.delayed_recall(delay=3, n_train=256, n_test=256)
    assert task.chance == 0.25 and task.x_train.shape == (5, 256, 5)
    assert cli.main(["demo", "--mode", "online", "--rules", "eprop", "--iterations", "10"]) == 0
    out = capsys.readouterr().out
    assert "eprop" in out and "chance 0.25" in out and "alpha 0.5" in out
    result = tasks.train_rule("eprop", task, hidden=16, iterations=80, lr=2e-2)
    assert result.test_accuracy > 0.8


def test_saved_bytes_counts_each_saved_tensor_once_and_skips_shared_ones():
    """BPTT's memory figure: y * y saves y twice, which is one tensor in memory;
    the weight is shared by the batch and left out when named."""
    from localgrad.online.memory import saved_bytes

    w = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(2, 3, requires_grad=True)

    def run():
        y = x @ w  # saves x (24 bytes) and w (36)
        (y * y).sum().backward()  # saves y (24) twice

    assert saved_bytes(run) == 24 + 36 + 24
    assert saved_bytes(run, [w]) == 24 + 24


@pytest.mark.skipif(not os.path.isfile("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
                    and not os.environ.get("LOCALGRAD_DATA"), reason="Fashion-MNIST is not installed")
def test_sequential_fashion_mnist_reads_each_image_row_by_row():
    from localgrad import data
    from localgrad.experiments import online_tasks as tasks

    task = tasks.fashion_sequences(n_train=64, n_test=32)
    images = data.fashion_mnist(64, 32)
    assert task.x_train.shape == (28, 64, 28) and task.x_test.shape == (28, 32, 28) and task.chance == 0.1
    # Step t of sequence n is row t of image n: pixels 28 t .. 28 t + 27.
    assert torch.equal(task.x_train[5, 7], images.x_train[7, 140:168])
    assert torch.equal(task.y_test, images.y_test)
    result = tasks.train_rule("eprop", task, hidden=8, iterations=2, batch_size=4)
    assert 0.0 <= result.test_accuracy <= 1.0 and result.ms_per_step > 0
