"""The online-RNN ops (rtrl_step, snap_step, rflo_chunk, uoro_step, kfrtrl_step) against
their references: several shapes, batch 0/1/odd, chunk lengths 0/1/odd,
masks, float32 tolerances, opcheck, compile, bad input."""

import pytest
import torch
from testing import (cpu_kernels, DEVICES, EMULATED, grid_cap, KERNEL_DEVICES, kernels, rel_err, TOLERANCE,
                     without_extension)

import localgrad
from localgrad import ops
from localgrad.online import LeakyRNN, SnAp
from localgrad.reference import online_rnn as ref

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="the compiled extension is not built")

# (batch, hidden, input); the last has 71 parameter columns: RFLO's 32-wide
# column tiles, two whole and a partial tail.
SHAPES = [(0, 3, 4), (1, 1, 1), (3, 5, 4), (5, 7, 2), (2, 16, 9), (3, 20, 50)]


def poison_allocator(numel, dtype, device):
    """Free a NaN block so that a kernel output allocated next over the same
    memory fails the comparison if any element stays unwritten."""
    torch.full((max(numel, 1) * 2,), float("nan"), dtype=dtype, device=device)


def inputs(batch, hidden, input, dtype, device, mask, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)  # noqa: E731
    m = (torch.rand(hidden, hidden, generator=g) < 0.5).to(dtype=dtype, device=device) if mask else None
    w = r(hidden, hidden) * (m if m is not None else 1)
    return dict(weight_hh=w, h_prev=r(batch, hidden), x=r(batch, input), dphi=r(batch, hidden).abs(), hh_mask=m), r


def tolerance(dtype):
    return TOLERANCE[dtype] * (10 if dtype == torch.float32 else 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask", [False, True])
def test_rtrl_step_matches_reference(device, dtype, shape, mask):
    batch, hidden, inp = shape
    kw, r = inputs(batch, hidden, inp, dtype, device, mask)
    m = r(batch, hidden, hidden * (inp + hidden + 1))
    expected = ref.rtrl_step(m.double(), *(v.double() if v is not None else None for v in kw.values()), 0.7)
    poison_allocator(m.numel(), dtype, device)
    got = ops.rtrl_step(m, *kw.values(), 0.7)
    assert got.shape == m.shape and got.dtype == dtype
    assert rel_err(got, expected) <= tolerance(dtype)


def snap_lists(hidden, mask, n, device):
    model = LeakyRNN(1, hidden, 1, recurrent_mask=None if mask is None else mask.cpu())
    s = SnAp(model, n)
    return [t.to(device) for t in (s.entry_unit, s.entry_row, s.nbr_ptr, s.nbr_entry, s.nbr_weight)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_snap_step_matches_reference(device, dtype, shape, mask, n):
    batch, hidden, inp = shape
    kw, r = inputs(batch, hidden, inp, dtype, device, mask)
    lists = snap_lists(hidden, kw["hh_mask"], n, device)
    m = r(batch, lists[0].numel(), inp + hidden + 1)
    dbl = [v.double() if v is not None else None for v in kw.values()]
    expected = ref.snap_step(m.double(), *dbl, 0.6, *lists)
    poison_allocator(m.numel(), dtype, device)
    got = ops.snap_step(m, *kw.values(), 0.6, *lists)
    assert rel_err(got, expected) <= tolerance(dtype)
    # Without the range checks (lists known good): the same result.
    assert torch.equal(ops.snap_step(m, *kw.values(), 0.6, *lists, check_indices=False), got)


def test_snap_learner_checks_its_lists_on_the_first_step_only(monkeypatch):
    """Issue 22 P2: the op's range checks cost 9 device syncs per call on
    CUDA; SnAp builds its lists itself and has them checked once."""
    from localgrad.online import snap as snap_module

    seen = []
    real = ops.snap_step

    def spy(*args, check_indices=True):
        seen.append(check_indices)
        return real(*args, check_indices=check_indices)

    monkeypatch.setattr(snap_module.ops, "snap_step", spy)
    torch.manual_seed(0)
    model = LeakyRNN(2, 5, 1, recurrent_mask=(torch.rand(5, 5) < 0.5).double()).double()
    learner = SnAp(model, 1)
    learner.reset(3)
    learner.run(torch.randn(4, 3, 2, dtype=torch.float64), torch.randn(4, 3, 1, dtype=torch.float64))
    learner.run(torch.randn(2, 3, 2, dtype=torch.float64), torch.randn(2, 3, 1, dtype=torch.float64))
    assert seen == [True] + [False] * 5


def test_snap_1_full_net_equals_rtrl_diagonal():
    """SnAp-1's update is RTRL's restricted to each unit's own row: on an
    influence that is zero off that pattern, the kept entries agree."""
    batch, hidden, inp = 3, 5, 2
    kw, r = inputs(batch, hidden, inp, torch.float64, "cpu", False)
    cols = inp + hidden + 1
    lists = snap_lists(hidden, None, 1, "cpu")
    compact = r(batch, hidden, cols)
    full = torch.zeros(batch, hidden, hidden, cols, dtype=torch.float64)
    idx = torch.arange(hidden)
    full[:, idx, idx] = compact
    rtrl = ops.rtrl_step(full.view(batch, hidden, -1), *kw.values(), 0.8).view(batch, hidden, hidden, cols)
    snap = ops.snap_step(compact, *kw.values(), 0.8, *lists)
    assert rel_err(snap, rtrl[:, idx, idx]) <= 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("steps", [0, 1, 5])
@pytest.mark.parametrize("mask", [False, True])
def test_rflo_chunk_matches_reference(device, dtype, shape, steps, mask):
    batch, hidden, inp = shape
    kw, r = inputs(batch, hidden, inp, dtype, device, mask)
    trace = r(batch, hidden, inp + hidden + 1)
    xs, h_prevs, dphis, signals = r(steps, batch, inp), r(steps, batch, hidden), r(steps, batch, hidden), r(steps, batch, hidden)
    args = (trace, xs, h_prevs, dphis, signals, kw["hh_mask"])
    exp_trace, exp_grad = ref.rflo_chunk(*(a.double() if a is not None else None for a in args), 0.3)
    poison_allocator(trace.numel(), dtype, device)
    got_trace, got_grad = ops.rflo_chunk(*args, 0.3)
    assert got_grad.shape == (hidden, inp + hidden + 1)
    assert rel_err(got_trace, exp_trace) <= tolerance(dtype)
    assert rel_err(got_grad, exp_grad) <= tolerance(dtype) * max(steps, 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask", [False, True])
def test_uoro_step_matches_reference(device, dtype, shape, mask):
    batch, hidden, inp = shape
    kw, r = inputs(batch, hidden, inp, dtype, device, mask)
    s, theta = r(batch, hidden), r(batch, hidden, inp + hidden + 1)
    nu = torch.randint(0, 2, (batch, hidden), generator=torch.Generator().manual_seed(3)).to(dtype=dtype, device=device) * 2 - 1
    args = (s, theta, kw["weight_hh"], nu, kw["h_prev"], kw["x"], kw["dphi"], kw["hh_mask"])
    exp_s, exp_theta = ref.uoro_step(*(a.double() if a is not None else None for a in args), 0.7, 1e-7)
    poison_allocator(theta.numel(), dtype, device)
    got_s, got_theta = ops.uoro_step(*args, 0.7, 1e-7)
    assert rel_err(got_s, exp_s) <= tolerance(dtype)
    assert rel_err(got_theta, exp_theta) <= tolerance(dtype)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(1, 20, 50), (1, 3, 2), (2, 33, 7), (40, 6, 5)])
def test_uoro_step_tiles_match_the_cpu_kernel(device, dtype, shape):
    """Issue 22 P4: the CUDA step splits each sample's θ̃ row over blocks
    while the batch is small (at 8 emulated SMs: 6 tiles at (1, 20, 50), 1 at
    batch 40); every tile count gives the CPU kernel's result."""
    batch, hidden, inp = shape
    kw, r = inputs(batch, hidden, inp, dtype, device, mask=True, seed=5)
    s, theta = r(batch, hidden), r(batch, hidden, inp + hidden + 1)
    nu = torch.randint(0, 2, (batch, hidden), generator=torch.Generator().manual_seed(4)).to(dtype=dtype, device=device) * 2 - 1
    args = (s, theta, kw["weight_hh"], nu, kw["h_prev"], kw["x"], kw["dphi"], kw["hh_mask"])
    with cpu_kernels():
        exp_s, exp_theta = ops.uoro_step(*(a.cpu() for a in args), 0.7, 1e-7)
    poison_allocator(theta.numel(), dtype, device)
    got_s, got_theta = ops.uoro_step(*args, 0.7, 1e-7)
    assert rel_err(got_s.cpu(), exp_s) <= tolerance(dtype)
    assert rel_err(got_theta.cpu(), exp_theta) <= tolerance(dtype)


def test_uoro_first_step_from_zero():
    """ρ0 = 1 when s̃ = θ̃ = 0 (both norms are ε), so the first estimate is νᵀ∂F/∂θ scaled by ρ1."""
    kw, r = inputs(2, 4, 3, torch.float64, "cpu", False)
    s, theta = torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4, 8, dtype=torch.float64)
    nu = torch.ones(2, 4, dtype=torch.float64)
    got = ops.uoro_step(s, theta, kw["weight_hh"], nu, kw["h_prev"], kw["x"], kw["dphi"], None, 0.5)
    exp = ref.uoro_step(s, theta, kw["weight_hh"], nu, kw["h_prev"], kw["x"], kw["dphi"], None, 0.5, 1e-7)
    assert all(rel_err(a, b) <= 1e-12 for a, b in zip(got, exp))


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("op", ["rtrl_step", "snap_step", "rflo_chunk", "uoro_step"])
def test_ops_cuda_match_cpu(device, op):
    args = opcheck_args()[op]
    with cpu_kernels():
        cpu = getattr(ops, op)(*args)
    moved = [a.to(device) if torch.is_tensor(a) else a for a in args]
    got = getattr(ops, op)(*moved)
    for g, c in zip(got if isinstance(got, tuple) else (got,), cpu if isinstance(cpu, tuple) else (cpu,)):
        assert g.device.type == torch.device(device).type and rel_err(g.cpu(), c) <= 1e-12


def opcheck_args():
    kw, r = inputs(3, 5, 4, torch.float64, "cpu", True)
    cols = 4 + 5 + 1
    lists = snap_lists(5, kw["hh_mask"], 2, "cpu")
    v = list(kw.values())
    return {
        "rtrl_step": (r(3, 5, 5 * cols), *v, 0.7),
        "snap_step": (r(3, lists[0].numel(), cols), *v, 0.7, *lists),
        "rflo_chunk": (r(3, 5, cols), r(2, 3, 4), r(2, 3, 5), r(2, 3, 5), r(2, 3, 5), kw["hh_mask"], 0.7),
        "uoro_step": (r(3, 5), r(3, 5, cols), kw["weight_hh"], r(3, 5).sign(), kw["h_prev"], kw["x"], kw["dphi"],
                      kw["hh_mask"], 0.7, 1e-7),
    }


@pytest.mark.parametrize("device", ["cpu", EMULATED])
@pytest.mark.parametrize("op", ["rtrl_step", "snap_step", "rflo_chunk", "uoro_step"])
def test_opcheck(device, op):
    torch.library.opcheck(getattr(kernels(), op), opcheck_args()[op])


def test_compile_smoke():
    args = opcheck_args()["rflo_chunk"]
    fn = torch.compile(lambda *a: ops.rflo_chunk(*a), fullgraph=True, backend="eager")
    got = fn(*args)
    exp = ref.rflo_chunk(*args)
    assert rel_err(got[1], exp[1]) <= 1e-12


def test_bad_inputs_name_the_argument():
    kw, r = inputs(3, 5, 4, torch.float64, "cpu", True)
    v = list(kw.values())
    with pytest.raises(ValueError, match="influence must have shape"):
        ops.rtrl_step(r(3, 5, 7), *v, 0.7)
    with pytest.raises(ValueError, match="hh_mask must have shape"):
        ops.rtrl_step(r(3, 5, 50), *v[:4], torch.ones(4, 4, dtype=torch.float64), 0.7)
    with pytest.raises(ValueError, match="x must have 3 rows"):
        ops.rtrl_step(r(3, 5, 50), v[0], v[1], r(2, 4), v[3], v[4], 0.7)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.rflo_chunk(*(a.half() if a is not None else None for a in opcheck_args()["rflo_chunk"][:6]), 0.7)
    with pytest.raises(TypeError, match="dtype of h_prev"):
        ops.rtrl_step(r(3, 5, 50).float(), *v, 0.7)
    lists = snap_lists(5, kw["hh_mask"], 1, "cpu")
    bad = list(lists)
    bad[3] = bad[3] + 1000
    if bad[3].numel():
        with pytest.raises(ValueError, match="nbr_entry must lie in"):
            ops.snap_step(r(3, lists[0].numel(), 10), *v, 0.7, *bad)
    with pytest.raises(ValueError, match="eps must be positive"):
        ops.uoro_step(r(3, 5), r(3, 5, 10), v[0], r(3, 5), v[1], v[2], v[3], None, 0.7, 0.0)


def test_non_contiguous_inputs_work():
    kw, r = inputs(3, 5, 4, torch.float64, "cpu", False)
    m = r(3, 50, 5).transpose(1, 2)
    x = r(4, 3).T
    got = ops.rtrl_step(m, kw["weight_hh"], kw["h_prev"], x, kw["dphi"], None, 0.7)
    exp = ref.rtrl_step(m, kw["weight_hh"], kw["h_prev"], x, kw["dphi"], None, 0.7)
    assert rel_err(got, exp) <= 1e-12


@pytest.mark.parametrize("device", [EMULATED])
@pytest.mark.parametrize("op", ["rtrl_step", "snap_step"])
def test_grid_stride_past_the_grid_cap(device, op):
    """More elements than the launcher's grid covers (cap lowered to 3 blocks
    of 256 threads): every element still written, as the CPU kernel does."""
    grid_cap(device)
    kw, r = inputs(4, 6, 5, torch.float64, "cpu", True, seed=3)
    hidden, cols = 6, 6 + 5 + 1
    if op == "rtrl_step":
        args = (r(4, hidden, hidden * cols), kw["weight_hh"], kw["h_prev"], kw["x"], kw["dphi"], kw["hh_mask"], 0.3)
    else:
        lists = snap_lists(hidden, kw["hh_mask"], 2, "cpu")
        args = (r(4, lists[0].numel(), cols), kw["weight_hh"], kw["h_prev"], kw["x"], kw["dphi"], kw["hh_mask"],
                0.3, *lists)
    with cpu_kernels():
        expected = getattr(ops, op)(*args)
    got = getattr(ops, op)(*args)
    assert got.numel() > 3 * 256
    assert rel_err(got, expected) <= 1e-12


# KF-RTRL (kfrtrl_step) ----------------------------------------------------------
# Rank 1 is the fused reduced step; rank r ≥ 2 is the fused r + 1 terms (raw
# op) followed by the ATen reduction (ops.kfrtrl_step).

KF_SHAPES = [(0, 3, 4), (1, 1, 1), (3, 5, 4), (5, 7, 2), (2, 16, 9), (3, 20, 50), (2, 40, 3)]


def kfrtrl_inputs(batch, hidden, inp, rank, dtype, device, seed=0):
    kw, r = inputs(batch, hidden, inp, dtype, device, mask=True, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    signs = (torch.randint(0, 2, (batch, rank + 1), generator=g) * 2 - 1).to(dtype=dtype, device=device)
    u, a = r(batch, rank, inp + hidden + 1), r(batch, rank, hidden, hidden) * 0.3
    return (u, a, kw["weight_hh"], signs, kw["h_prev"], kw["x"], kw["dphi"])


def kfrtrl_reference_terms(u, a, w, h, x, dphi, alpha):
    batch, hidden = h.shape
    ja = (1 - alpha) * a + alpha * dphi.view(batch, 1, hidden, 1) * torch.matmul(w, a)
    return ref.kfrtrl_terms(u, ja, ref.kfrtrl_inputs(x, h), torch.diag_embed(alpha * dphi))


def double(args):
    return [a.double() for a in args]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", KF_SHAPES)
def test_kfrtrl_step_rank1_matches_reference(device, dtype, shape):
    args = kfrtrl_inputs(*shape, 1, dtype, device, seed=sum(shape))
    exp_u, exp_a = ref.kfrtrl_step(*double(args), 0.7, 1e-7)
    poison_allocator(args[1].numel(), dtype, device)
    got_u, got_a = ops.kfrtrl_step(*args, 0.7, 1e-7)
    assert got_u.shape == args[0].shape and got_a.shape == args[1].shape and got_u.dtype == dtype
    assert rel_err(got_u, exp_u) <= tolerance(dtype)
    assert rel_err(got_a, exp_a) <= tolerance(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", KF_SHAPES)
@pytest.mark.parametrize("rank", [2, 3])
def test_kfrtrl_terms_match_reference(device, dtype, shape, rank):
    """The raw op at rank ≥ 2: the r + 1 unreduced terms, every element written."""
    args = kfrtrl_inputs(*shape, rank, dtype, device, seed=sum(shape) + rank)
    u, a, w, signs, h, x, dphi = args
    exp_u, exp_a = kfrtrl_reference_terms(*double((u, a, w, h, x, dphi)), 0.3)
    poison_allocator(a.numel() * 2, dtype, device)
    got_u, got_a = kernels().kfrtrl_step(*args, 0.3, 1e-7)
    assert got_u.shape == (shape[0], rank + 1, u.shape[2]) and got_a.shape == (shape[0], rank + 1, *a.shape[2:])
    assert rel_err(got_u, exp_u) <= tolerance(dtype)
    assert rel_err(got_a, exp_a) <= tolerance(dtype)
    assert not got_a.isnan().any() and not got_u.isnan().any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(0, 3, 4), (1, 1, 1), (3, 5, 4), (2, 16, 9)])
@pytest.mark.parametrize("rank", [2, 3])
def test_kfrtrl_step_rank2_matches_reference(device, shape, rank):
    """ops.kfrtrl_step at rank ≥ 2 (fused terms, then ok_reduce) is the
    reference step; float64 (the SVD's sign conventions may differ between
    float32 and float64, so float32 is judged on the terms above)."""
    args = kfrtrl_inputs(*shape, rank, torch.float64, device, seed=7 * rank + shape[1])
    exp_u, exp_a = ref.kfrtrl_step(*args, 0.6, 1e-7)
    got_u, got_a = ops.kfrtrl_step(*args, 0.6, 1e-7)
    assert got_u.shape == args[0].shape and got_a.shape == args[1].shape
    # The same product is what matters (factors are defined up to the SVD's choices).
    got = torch.einsum("brki,brc->bkic", got_a, got_u)
    exp = torch.einsum("brki,brc->bkic", exp_a, exp_u)
    assert rel_err(got, exp) <= 1e-10


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(1, 20, 50), (1, 3, 2), (2, 33, 7), (1, 64, 3), (40, 6, 5)])
def test_kfrtrl_step_tiles_match_the_cpu_kernel(device, dtype, shape):
    """The CUDA rank-1 step splits a sample's H² entries of A over blocks
    while the batch is small (at 8 emulated SMs: 16 tiles at (1, 64, 3), 5 at
    (2, 33, 7), 1 at batch 40); every tile count gives the CPU kernel's result."""
    args = kfrtrl_inputs(*shape, 1, dtype, device, seed=11)
    with cpu_kernels():
        exp_u, exp_a = ops.kfrtrl_step(*(a.cpu() for a in args), 0.7, 1e-7)
    poison_allocator(args[1].numel(), dtype, device)
    got_u, got_a = ops.kfrtrl_step(*args, 0.7, 1e-7)
    assert rel_err(got_u.cpu(), exp_u) <= tolerance(dtype)
    assert rel_err(got_a.cpu(), exp_a) <= tolerance(dtype)


@pytest.mark.parametrize("device", [EMULATED])
def test_kfrtrl_terms_grid_stride_past_the_grid_cap(device):
    """More elements than the capped grid (3 blocks of 256 threads): all written."""
    grid_cap(device)
    args = kfrtrl_inputs(3, 9, 4, 2, torch.float64, "cpu", seed=2)
    with cpu_kernels():
        expected = kernels().kfrtrl_step(*args, 0.4, 1e-7)
    got = kernels().kfrtrl_step(*args, 0.4, 1e-7)
    assert got[1].numel() + got[0].numel() > 3 * 256
    assert all(rel_err(g, e) <= 1e-12 for g, e in zip(got, expected))


@pytest.mark.parametrize("device", DEVICES)
def test_kfrtrl_first_step_from_zero(device):
    """ρ0 = 1 when u = A = 0 (both norms are ε): the first estimate is s1 (ρ1 v) ⊗ (α D / ρ1)."""
    _, _, w, signs, h, x, dphi = kfrtrl_inputs(2, 4, 3, 1, torch.float64, device)
    u, a = torch.zeros(2, 1, 8, dtype=torch.float64, device=device), torch.zeros(2, 1, 4, 4, dtype=torch.float64,
                                                                                 device=device)
    got = ops.kfrtrl_step(u, a, w, signs, h, x, dphi, 0.5)
    exp = ref.kfrtrl_step(u, a, w, signs, h, x, dphi, 0.5, 1e-7)
    assert all(rel_err(g, e) <= 1e-12 for g, e in zip(got, exp))
    product = torch.einsum("bki,bc->bkic", got[1][:, 0], got[0][:, 0])
    exact = torch.einsum("bki,bc->bkic", torch.diag_embed(0.5 * dphi), ref.kfrtrl_inputs(x, h))
    assert rel_err(product, exact) <= 1e-12  # s1² = 1: one step from zero is exact


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("rank", [1, 2])
def test_kfrtrl_cuda_matches_cpu(device, rank):
    args = kfrtrl_inputs(3, 5, 4, rank, torch.float64, "cpu", seed=rank)
    with cpu_kernels():
        cpu = kernels().kfrtrl_step(*args, 0.7, 1e-7)
    got = kernels().kfrtrl_step(*(a.to(device) for a in args), 0.7, 1e-7)
    for g, c in zip(got, cpu):
        assert g.device.type == torch.device(device).type and rel_err(g.cpu(), c) <= 1e-12


@pytest.mark.parametrize("device", ["cpu", EMULATED])
@pytest.mark.parametrize("rank", [1, 2])
def test_kfrtrl_opcheck(device, rank):
    torch.library.opcheck(kernels().kfrtrl_step, (*kfrtrl_inputs(3, 5, 4, rank, torch.float64, "cpu"), 0.7, 1e-7))


def test_kfrtrl_compile_smoke():
    args = kfrtrl_inputs(3, 5, 4, 1, torch.float64, "cpu")
    fn = torch.compile(lambda *a: ops.kfrtrl_step(*a, 0.7), fullgraph=True, backend="eager")
    got = fn(*args)
    exp = ref.kfrtrl_step(*args, 0.7, 1e-7)
    assert all(rel_err(g, e) <= 1e-12 for g, e in zip(got, exp))


def test_kfrtrl_non_contiguous_inputs_work():
    u, a, w, signs, h, x, dphi = kfrtrl_inputs(3, 5, 4, 1, torch.float64, "cpu", seed=4)
    a_t = a.transpose(2, 3).contiguous().transpose(2, 3)  # same values, column-major factors
    x_t = x.T.contiguous().T
    signs_s = torch.stack([signs, signs], 2)[..., 0]
    got = ops.kfrtrl_step(u, a_t, w.T.contiguous().T, signs_s, h, x_t, dphi, 0.7)
    exp = ref.kfrtrl_step(u, a, w, signs, h, x, dphi, 0.7, 1e-7)
    assert not a_t.is_contiguous() and not x_t.is_contiguous()
    assert all(rel_err(g, e) <= 1e-12 for g, e in zip(got, exp))


def kfrtrl_bad_calls():
    args = kfrtrl_inputs(3, 5, 4, 1, torch.float64, "cpu")
    u, a, w, signs, h, x, dphi = args

    def call(**kw):
        named = dict(zip(("u", "A", "weight_hh", "signs", "h_prev", "x", "dphi"), args))
        scalars = {"alpha": kw.pop("alpha", 0.7), "eps": kw.pop("eps", 1e-7)}
        named.update(kw)
        return lambda: ops.kfrtrl_step(*named.values(), **scalars)

    return [
        (call(u=u[:, :, :-1]), ValueError, "u must have shape"),
        (call(u=u[:, :0]), ValueError, "u must hold at least one factor"),
        (call(u=u[0]), ValueError, "u must be 3-D"),
        (call(A=a[:, :, :4]), ValueError, "A must have shape"),
        (call(A=torch.cat([a, a], 1)), ValueError, "A must have shape"),
        (call(signs=signs[:, :1]), ValueError, "signs must have shape"),
        (call(signs=signs * 0), ValueError, "signs must be \\+1 or -1"),
        (call(signs=signs * float("nan")), ValueError, "signs must be \\+1 or -1"),
        (call(signs=signs.float()), TypeError, "signs must have the dtype of h_prev"),
        (call(A=a.float()), TypeError, "A must have the dtype of h_prev"),
        (call(h_prev=h.half(), x=x.half(), dphi=dphi.half(), weight_hh=w.half(), u=u.half(), A=a.half(),
              signs=signs.half()), TypeError, "float32 or float64"),
        (call(weight_hh=w[:4, :4]), ValueError, "weight_hh must have shape"),
        (call(x=x[:2]), ValueError, "x must have 3 rows"),
        (call(dphi=dphi[:, :4]), ValueError, "dphi must have shape"),
        (call(alpha=float("nan")), ValueError, "alpha must not be NaN"),
        (call(alpha=float("inf")), ValueError, "alpha must be finite"),
        (call(eps=0.0), ValueError, "eps must be positive"),
        (call(eps=float("inf")), ValueError, "eps must be finite"),
        (call(A=a.to("meta")), RuntimeError, "meta"),
    ]


@pytest.mark.parametrize("case", range(19))
def test_kfrtrl_bad_inputs_name_the_argument(case):
    fn, error, match = kfrtrl_bad_calls()[case]
    with pytest.raises(error, match=match):
        fn()


def test_kfrtrl_fake_kernel_checks_what_the_glue_checks():
    """Meta tensors throughout: the fake kernel's shapes, and its refusals."""
    args = [t.to("meta") for t in kfrtrl_inputs(3, 5, 4, 2, torch.float64, "cpu")]
    u_out, a_out = torch.ops.localgrad.kfrtrl_step(*args, 0.7, 1e-7)
    assert u_out.shape == (3, 3, 10) and a_out.shape == (3, 3, 5, 5)
    with pytest.raises(ValueError, match="signs must have shape"):
        torch.ops.localgrad.kfrtrl_step(*args[:3], args[3][:, :2], *args[4:], 0.7, 1e-7)
    with pytest.raises(ValueError, match="eps must be positive"):
        torch.ops.localgrad.kfrtrl_step(*args, 0.7, 0.0)


def test_kfrtrl_unchecked_signs_skip_only_the_value_check():
    args = kfrtrl_inputs(3, 5, 4, 1, torch.float64, "cpu")
    assert all(torch.equal(g, e) for g, e in zip(ops.kfrtrl_step(*args, 0.7, check_signs=False),
                                                  ops.kfrtrl_step(*args, 0.7)))
    with pytest.raises(ValueError, match="signs must have shape"):
        ops.kfrtrl_step(*args[:3], args[3][:, :1], *args[4:], 0.7, check_signs=False)


@pytest.mark.parametrize("rank", [1, 2])
def test_kfrtrl_learner_runs_the_op(monkeypatch, rank):
    """KFRTRL calls ops.kfrtrl_step once per step, with the same sign draws
    as the reference path: its gradient and state equal the reference
    learner's (float64, within rounding)."""
    from localgrad.online import KFRTRL
    from localgrad.online import kfrtrl as kf_module

    def run(step):
        monkeypatch.setattr(kf_module.ops, "kfrtrl_step", step)
        torch.manual_seed(0)
        model = LeakyRNN(2, 5, 1).double()
        learner = KFRTRL(model, rank=rank, seed=3)
        learner.reset(3)
        g = torch.Generator().manual_seed(1)
        learner.run(torch.randn(4, 3, 2, generator=g, dtype=torch.float64),
                    torch.randn(4, 3, 1, generator=g, dtype=torch.float64))
        return [p.grad.clone() for p in model.parameters()], learner.u, learner.A, learner.generator.get_state()

    calls = []
    real = ops.kfrtrl_step

    def spy(*args, **kwargs):
        calls.append(kwargs.get("check_signs"))
        return real(*args, **kwargs)

    fused = run(spy)
    assert calls == [False] * 4
    reference = run(lambda *a, check_signs=True: ref.kfrtrl_step(*a))
    for f, r in zip(fused[0], reference[0]):
        assert rel_err(f, r) <= 1e-9
    if rank == 1:
        assert rel_err(fused[1], reference[1]) <= 1e-12 and rel_err(fused[2], reference[2]) <= 1e-12
    assert torch.equal(fused[3], reference[3])


@pytest.mark.parametrize("rank", [1, 2])
def test_kfrtrl_reference_fallback_without_the_extension(monkeypatch, rank):
    """Without the compiled extension the wrapper runs the reference step."""
    import localgrad.ops.kfrtrl as mod

    without_extension(monkeypatch)
    args = kfrtrl_inputs(3, 5, 4, rank, torch.float64, "cpu", seed=9)
    with pytest.warns(RuntimeWarning, match="reference"):  # the fallback ran
        got = mod.kfrtrl_step(*args, 0.7)
    exp = ref.kfrtrl_step(*args, 0.7, 1e-7)
    assert all(torch.equal(g, e) for g, e in zip(got, exp))
