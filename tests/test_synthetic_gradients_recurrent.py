"""RecurrentDNI (float64): with the true future gradient at every boundary
the chunks' gradients sum to full BPTT; with its zero-initialised module it
is truncated BPTT; the module regresses onto the bootstrapped target; bad
input; state_dict; learning across boundaries."""

import pytest
import torch
import torch.nn.functional as F

from localgrad.online import BPTT, LeakyRNN
from localgrad.reference import synthetic_gradients as ref
from localgrad.synthetic_gradients import RecurrentDNI
from testing import rel_err

F64 = torch.float64
CHUNKS = (3, 4, 2)


def make(loss, masked=False, seed=0, batch=5):
    torch.manual_seed(seed)
    mask = (torch.rand(6, 6) < 0.5).double() if masked else None
    model = LeakyRNN(3, 6, 2, alpha=0.6, recurrent_mask=mask).double()
    g = torch.Generator().manual_seed(seed + 10)
    T = sum(CHUNKS)
    xs = torch.randn(T, batch, 3, generator=g, dtype=F64)
    ys = (torch.randn(T, batch, 2, generator=g, dtype=F64) if loss == "mse"
          else torch.randint(0, 2, (T, batch), generator=g))
    return model, xs, ys


def step_loss(loss, y, target):
    return F.mse_loss(y, target) if loss == "mse" else F.cross_entropy(y, target)


def full_bptt(model, xs, ys, loss):
    model.zero_grad()
    h = xs.new_zeros(xs.shape[1], model.hidden_size)
    total = 0
    for x, y in zip(xs, ys):
        h, _ = model.cell(x, h)
        total = total + step_loss(loss, model.readout(h), y)
    total.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


def boundaries_and_future_grads(model, xs, ys, loss):
    """h at the end of each chunk and ∂(losses after it)/∂h there."""
    with torch.no_grad():
        h = xs.new_zeros(xs.shape[1], model.hidden_size)
        states = []
        for x in xs:
            h, _ = model.cell(x, h)
            states.append(h)
    ends = [sum(CHUNKS[:i + 1]) for i in range(len(CHUNKS) - 1)]
    futures = []
    for end in ends:
        h = states[end - 1].clone().requires_grad_(True)
        start, total = h, 0
        for x, y in zip(xs[end:], ys[end:]):
            h, _ = model.cell(x, h)
            total = total + step_loss(loss, model.readout(h), y)
        (g,) = torch.autograd.grad(total, start)
        futures.append(g)
    return futures


def chunks(xs, ys):
    start = 0
    for length in CHUNKS:
        yield xs[start:start + length], ys[start:start + length]
        start += length


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("masked", [False, True])
def test_true_future_gradient_at_every_boundary_gives_full_bptt(loss, masked):
    model, xs, ys = make(loss, masked)
    expected = full_bptt(model, xs, ys, loss)
    futures = boundaries_and_future_grads(model, xs, ys, loss)
    learner = RecurrentDNI(model, loss=loss)
    with torch.no_grad():  # a nonzero module: it must not enter when future_grad is given
        for p in learner.sg_parameters():
            p.normal_()
    learner.reset(xs.shape[1])
    for i, (cx, cy) in enumerate(chunks(xs, ys)):
        if i < len(futures):
            learner.run(cx, cy, future_grad=futures[i])
        else:
            learner.run(cx, cy, final=True)
    for p, e in zip(model.parameters(), expected):
        assert rel_err(p.grad, e) <= 1e-12


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_zero_initialised_module_is_truncated_bptt_and_not_full_bptt(loss):
    model, xs, ys = make(loss, seed=1)
    CH = 3
    bptt = BPTT(model, truncation=CH, loss=loss)
    model.zero_grad()
    bptt.reset(xs.shape[1])
    for s in range(0, xs.shape[0], CH):
        bptt.run(xs[s:s + CH], ys[s:s + CH])
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    learner = RecurrentDNI(model, loss=loss)
    learner.reset(xs.shape[1])
    for s in range(0, xs.shape[0], CH):
        learner.run(xs[s:s + CH], ys[s:s + CH])
    got = [p.grad.clone() for p in model.parameters()]
    for g, e in zip(got, expected):
        assert rel_err(g, e) <= 1e-12
    full = full_bptt(model, xs, ys, loss)
    assert max(rel_err(g, e) for g, e in zip(got, full)) > 1e-3


def test_the_module_is_used_and_regresses_onto_the_bootstrapped_target():
    model, xs, ys = make("mse", seed=2)
    B = xs.shape[1]
    learner = RecurrentDNI(model, loss="mse")
    with torch.no_grad():
        for p in learner.sg_parameters():
            p.normal_(std=0.3)
    learner.reset(B)
    learner.run(xs[:3], ys[:3])  # the start of the sequence: M learns nothing here
    assert all(torch.count_nonzero(p.grad) == 0 for p in learner.sg_parameters())
    h0 = learner.h.clone()
    model.zero_grad()
    learner.run(xs[3:7], ys[3:7])
    # By hand: the objective of the chunk, its gradients, and M's target B·∂/∂h0.
    M = learner.synthesizer
    start = h0.clone().requires_grad_(True)
    h, total = start, 0
    for x, y in zip(xs[3:7], ys[3:7]):
        h, _ = model.cell(x, h)
        total = total + F.mse_loss(model.readout(h), y)
    with torch.no_grad():
        g_end = M(h) / B
    objective = total + (h * g_end).sum()
    params = list(model.parameters())
    grads = torch.autograd.grad(objective, [start, *params])
    for p, g in zip(params, grads[1:]):
        assert rel_err(p.grad, g) <= 1e-12
    sg = list(M.parameters())
    expected = torch.autograd.grad(ref.regression_loss(M(h0), B * grads[0]), sg)
    for p, g in zip(sg, expected):
        assert rel_err(p.grad, g) <= 1e-12


def test_bad_input_is_refused_naming_the_argument():
    model, xs, ys = make("mse")
    learner = RecurrentDNI(model)
    with pytest.raises(RuntimeError, match="reset"):
        learner.run(xs[:2], ys[:2])
    learner.reset(5)
    with pytest.raises(ValueError, match=r"future_grad must be a tensor of shape \(5, 6\)"):
        learner.run(xs[:2], ys[:2], future_grad=torch.zeros(5, 7, dtype=F64))
    with pytest.raises(ValueError, match="future_grad and final=True"):
        learner.run(xs[:2], ys[:2], future_grad=torch.zeros(5, 6, dtype=F64), final=True)
    with pytest.raises(TypeError, match="final must be a bool"):
        learner.run(xs[:2], ys[:2], final="yes")
    with pytest.raises(ValueError, match="targets must have shape"):
        learner.run(xs[:2], ys[:1])
    with pytest.raises(ValueError, match="sg_hidden"):
        RecurrentDNI(model, sg_hidden=(0,))
    with pytest.raises(TypeError, match="LeakyRNN"):
        RecurrentDNI(torch.nn.Linear(2, 2))


def test_empty_batch_and_empty_chunk():
    model, xs, ys = make("ce")
    learner = RecurrentDNI(model, loss="ce")
    learner.reset(0)
    assert learner.run(xs[:3, :0], ys[:3, :0]).item() == 0.0
    learner.reset(5)
    learner.run(xs[:0], ys[:0])
    assert all(torch.count_nonzero(p.grad) == 0 for p in [*model.parameters(), *learner.sg_parameters()])


def test_state_dict_resumes_exactly():
    model, xs, ys = make("ce", seed=3)
    a = RecurrentDNI(model, loss="ce", sg_hidden=(4,))
    with torch.no_grad():
        for p in a.sg_parameters():
            p.normal_(std=0.3)
    a.reset(5)
    a.run(xs[:3], ys[:3])
    state = a.state_dict()
    model.zero_grad()
    a.synthesizer.zero_grad()
    a.run(xs[3:6], ys[3:6])
    first = [p.grad.clone() for p in [*model.parameters(), *a.sg_parameters()]]
    b = RecurrentDNI(model, loss="ce", sg_hidden=(4,))
    b.load_state_dict(state)
    model.zero_grad()
    b.run(xs[3:6], ys[3:6])
    for p, g in zip([*model.parameters(), *b.sg_parameters()], first):
        assert torch.equal(p.grad, g)


def test_a_trained_module_carries_credit_across_the_boundary():
    # The loss sits only in the second chunk (recall the first chunk's input,
    # fed zeros meanwhile): truncated BPTT gives W_ih exactly zero gradient
    # from it. Train M alone (the RNN fixed) on fresh batches; then M's
    # prediction at the boundary hands the first chunk W_ih's full-BPTT
    # gradient (measured: cosine 0.99996, the same norm within 0.2 %).
    torch.manual_seed(4)
    model = LeakyRNN(1, 8, 1, alpha=1.0).double()
    learner = RecurrentDNI(model)
    opt = torch.optim.Adam(learner.sg_parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        return torch.randn(1, n, 1, generator=g, dtype=F64), torch.zeros(1, n, 1, dtype=F64)

    for _ in range(400):
        x1, x2 = batch(64)
        opt.zero_grad()
        learner.reset(64)
        learner.run(x1)  # no loss: M(h_1) stands in for the next chunk's
        learner.run(x2, x1, final=True)
        opt.step()
    x1, x2 = batch(256)
    model.zero_grad()
    learner.reset(256)
    learner.run(x1)
    synthetic = model.weight_ih.grad.clone()
    model.zero_grad()
    ys, _ = model(torch.cat([x1, x2]))
    F.mse_loss(ys[1], x1[0]).backward()
    full = model.weight_ih.grad.clone()
    cosine = F.cosine_similarity(synthetic.flatten(), full.flatten(), dim=0).item()
    assert cosine > 0.999 and abs(synthetic.norm() / full.norm() - 1) < 0.02, (cosine, synthetic.norm(), full.norm())
    # truncated BPTT (M at its zero start) gives nothing across the boundary
    fresh = RecurrentDNI(model)
    model.zero_grad()
    fresh.reset(256)
    fresh.run(x1)
    fresh.run(x2, x1, final=True)
    assert torch.count_nonzero(model.weight_ih.grad) == 0
