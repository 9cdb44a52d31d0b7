"""eqprop_relax and eqprop_update against their reference and their contract."""

import pytest
import torch
from testing import (cpu_kernels, DEVICES, EMULATED, grid_cap, KERNEL_DEVICES, kernels, LAYERED_SHAPES, poisoned,
                     rel_err, TOLERANCE)

import localgrad
from localgrad import ops, reference
from localgrad.reference.eqprop import CLAMP, FREE, NUDGE_CE, NUDGE_MSE

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")

NUDGES = [FREE, NUDGE_MSE, NUDGE_CE, CLAMP]
ACTIVATIONS = [0, 1, 2]  # hardsigmoid, sigmoid, tanh

# And inner weights too big for the CPU's row tiles and the CUDA persistent kernel.
SHAPES = LAYERED_SHAPES + [(5, [8, 600, 500, 4])]


def make_net(batch, sizes, dtype, device, seed=0, gain=1.0):
    """Weights of nn.Linear's scale times `gain`, biases in (-0.5, 1.5) so some
    units saturate, states warm-started in [0, 1], a one-hot target."""
    g = torch.Generator().manual_seed(seed)
    weights = [gain * (torch.rand(b, a, generator=g, dtype=torch.float64) * 2 - 1) / a**0.5
               for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [torch.rand(b, generator=g, dtype=torch.float64) * 2 - 0.5 for b in sizes[1:]]
    x = torch.rand(batch, sizes[0], generator=g, dtype=torch.float64)
    states = [torch.rand(batch, n, generator=g, dtype=torch.float64) for n in sizes[1:]]
    labels = torch.randint(0, sizes[-1], (batch,), generator=g)
    target = torch.nn.functional.one_hot(labels, sizes[-1]).to(torch.float64)

    def cast(t):
        return t.to(dtype=dtype, device=device)

    return cast(x), [cast(w) for w in weights], [cast(b) for b in biases], [cast(s) for s in states], cast(target)


def run_both(x, weights, biases, states, target, beta, nudge, act, steps, async_update, tol):
    expected, expected_ran = reference.eqprop_relax(
        x.cpu().double(), [w.cpu().double() for w in weights], [b.cpu().double() for b in biases],
        [s.cpu().double() for s in states], target.cpu().double(), beta, nudge, act, steps, async_update, tol,
    )
    ran = kernels().eqprop_relax(x, weights, biases, states, target, beta, nudge, act, steps,
                                           async_update, tol)
    return ran, expected, expected_ran


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,sizes", SHAPES)
@pytest.mark.parametrize("nudge", NUDGES)
@pytest.mark.parametrize("async_update", [False, True])
def test_relax_matches_reference_float64(device, batch, sizes, nudge, async_update):
    for act in ACTIVATIONS:
        x, weights, biases, states, target = make_net(batch, sizes, torch.float64, device, seed=act)
        beta = -0.7 if act == 1 else 0.9  # negative nudging too
        tol = 1e-3 if act == 0 else 0.0  # rows freeze at different steps under hardsigmoid
        ran, expected, expected_ran = run_both(x, weights, biases, states, target, beta, nudge, act, 17,
                                               async_update, tol)
        assert ran.dtype == torch.int64 and ran.shape == (batch,)
        assert torch.equal(ran.cpu(), expected_ran)
        for s, e in zip(states, expected):
            assert not s.isnan().any()
            assert rel_err(s.cpu(), e) <= TOLERANCE[torch.float64]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("nudge", NUDGES)
def test_relax_float32(device, nudge):
    x, weights, biases, states, target = make_net(40, [30, 50, 20, 10], torch.float32, device, seed=4)
    ran, expected, _ = run_both(x, weights, biases, states, target, 0.5, nudge, 0, 30, False, 0.0)
    assert torch.equal(ran.cpu(), torch.full((40,), 30))
    for s, e in zip(states, expected):
        assert rel_err(s.cpu(), e) <= 1e-5


def test_early_exit_reports_steps_per_row():
    """A contractive network converges: rows stop well before the budget, each
    at its own step, and what they stop at is the fixed point."""
    x, weights, biases, states, target = make_net(9, [8, 12, 5], torch.float64, "cpu", seed=5, gain=0.5)
    ran = ops.eqprop_relax(x, weights, biases, states, steps=500, tol=1e-10)
    assert 0 < int(ran.max()) < 500
    again = [s.clone() for s in states]
    ops.eqprop_relax(x, weights, biases, again, steps=5)
    for s, a in zip(states, again):
        assert rel_err(a, s) <= 1e-9


def test_sync_and_async_share_the_fixed_point():
    x, weights, biases, _, target = make_net(6, [7, 9, 8, 4], torch.float64, "cpu", seed=6, gain=0.5)
    fixed = {}
    for async_update in (False, True):
        states = [torch.zeros(6, n, dtype=torch.float64) for n in (9, 8, 4)]
        ops.eqprop_relax(x, weights, biases, states, target, beta=0.3, nudge="mse", steps=400,
                         async_update=async_update)
        fixed[async_update] = states
    for a, b in zip(fixed[False], fixed[True]):
        assert rel_err(a, b) <= 1e-12


def test_warm_start_continues_exactly():
    """Relaxing 10 + 10 steps through the states equals 20 steps in one call."""
    x, weights, biases, states, target = make_net(5, [6, 11, 3], torch.float64, "cpu", seed=7, gain=2.0)
    once = [s.clone() for s in states]
    ops.eqprop_relax(x, weights, biases, once, target, beta=0.4, nudge="ce", steps=20, async_update=True)
    ops.eqprop_relax(x, weights, biases, states, target, beta=0.4, nudge="ce", steps=10, async_update=True)
    ops.eqprop_relax(x, weights, biases, states, target, beta=0.4, nudge="ce", steps=10, async_update=True)
    for a, b in zip(once, states):
        assert torch.equal(a, b)


def test_clamped_phase_holds_the_target():
    x, weights, biases, states, target = make_net(4, [5, 6, 3], torch.float64, "cpu")
    ops.eqprop_relax(x, weights, biases, states, target, nudge="clamp", steps=7)
    assert torch.equal(states[-1], target)


def test_zero_steps_change_nothing():
    x, weights, biases, states, target = make_net(4, [5, 6, 3], torch.float64, "cpu")
    before = [s.clone() for s in states]
    ran = ops.eqprop_relax(x, weights, biases, states, target, beta=1.0, nudge="mse", steps=0)
    assert torch.equal(ran, torch.zeros(4, dtype=torch.int64))
    for a, b in zip(before, states):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_relax_non_contiguous_inputs(device):
    x, weights, biases, states, target = make_net(6, [5, 8, 4], torch.float64, device, seed=8)
    expected, _ = reference.eqprop_relax(x, weights, biases, states, target, 0.5, NUDGE_MSE, 0, 9)
    x_t = x.t().contiguous().t()
    weights_t = [w.t().contiguous().t() for w in weights]
    biases_s = [torch.stack([b, b], 1)[:, 0] for b in biases]
    target_t = target.t().contiguous().t()
    # States are outputs: rows must be dense, but may be column blocks of a buffer.
    buffer = torch.cat(states, 1)
    views = list(buffer.split([8, 4], 1))
    assert not x_t.is_contiguous() and not biases_s[0].is_contiguous() and not views[0].is_contiguous()
    ops.eqprop_relax(x_t, weights_t, biases_s, views, target_t, beta=0.5, nudge="mse", steps=9)
    for s, e in zip(views, expected):
        assert rel_err(s, e) <= 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,sizes", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_update_matches_reference(device, batch, sizes, dtype):
    x, _, _, a, _ = make_net(batch, sizes, torch.float64, "cpu", seed=1)
    _, _, _, b, _ = make_net(batch, sizes, torch.float64, "cpu", seed=2)
    exp_w, exp_b = reference.eqprop_update(x, a, b, 0.37)

    def cast(t):
        return t.to(dtype=dtype, device=device)

    gw = [poisoned((n1, n0), dtype, device) for n0, n1 in zip(sizes[:-1], sizes[1:])]
    gb = [poisoned((n1,), dtype, device) for n1 in sizes[1:]]
    kernels().eqprop_update(cast(x), [cast(s) for s in a], [cast(s) for s in b], 0.37, gw, gb)
    tol = TOLERANCE[dtype]
    for out, exp in zip(gw + gb, exp_w + exp_b):
        assert not out.isnan().any()
        assert rel_err(out.cpu(), exp) <= tol


def test_update_of_equal_phases_is_zero():
    x, _, _, a, _ = make_net(5, [4, 6, 3], torch.float64, "cpu")
    gw, gb = ops.eqprop_update(x, a, [s.clone() for s in a], 2.0)
    assert all(bool((g == 0).all()) for g in gw + gb)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x, weights, biases, states, target = make_net(4, [5, 6, 3], torch.float32, device)
    for nudge, tgt in ((FREE, None), (NUDGE_CE, target), (CLAMP, target)):
        torch.library.opcheck(
            kernels().eqprop_relax.default,
            (x, weights, biases, [s.clone() for s in states], tgt, 0.5, nudge, 0, 4, False, 0.0),
        )
    gw = [torch.empty(6, 5, device=device), torch.empty(3, 6, device=device)]
    gb = [torch.empty(6, device=device), torch.empty(3, device=device)]
    torch.library.opcheck(kernels().eqprop_update.default, (x, states, [s * 0.5 for s in states], 0.3, gw, gb))


def test_torch_compile_fullgraph():
    lib = kernels()  # resolved outside the compiled function
    x, weights, biases, states, target = make_net(4, [5, 6, 3], torch.float32, "cpu")
    expected, _ = reference.eqprop_relax(x, weights, biases, states, target, 0.5, NUDGE_MSE, 0, 6)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def relax_and_update(x, w0, w1, b0, b1, s0, s1, target):
        free0, free1 = s0.clone(), s1.clone()
        lib.eqprop_relax(x, [w0, w1], [b0, b1], [s0, s1], target, 0.5, 1, 0, 6, False, 0.0)
        gw0, gw1 = torch.empty_like(w0), torch.empty_like(w1)
        gb0, gb1 = torch.empty_like(b0), torch.empty_like(b1)
        lib.eqprop_update(x, [free0, free1], [s0, s1], 2.0, [gw0, gw1], [gb0, gb1])
        return gw0.sum() + gw1.sum() + gb0.sum() + gb1.sum()

    total = relax_and_update(x, *weights, *biases, *states, target)
    exp_w, exp_b = reference.eqprop_update(x, make_net(4, [5, 6, 3], torch.float32, "cpu")[3], expected, 2.0)
    assert abs(total.item() - sum(g.sum().item() for g in exp_w + exp_b)) <= 1e-4 * (1 + abs(total.item()))


def test_bad_input_errors_name_the_argument():
    x, weights, biases, states, target = make_net(4, [5, 6, 3], torch.float64, "cpu")
    relax = kernels().eqprop_relax

    def call(**change):
        args = dict(x=x, weights=weights, biases=biases, states=states, target=target, beta=0.5, nudge=1,
                    activation=0, steps=3, async_update=False, tol=0.0)
        args.update(change)
        return relax(*args.values())

    with pytest.raises(ValueError, match=r"weights\[1\] must have 6 columns"):
        call(weights=[weights[0], torch.zeros(3, 7, dtype=torch.float64)])
    with pytest.raises(ValueError, match=r"biases\[0\] must have 6 entries"):
        call(biases=[torch.zeros(5, dtype=torch.float64), biases[1]])
    with pytest.raises(ValueError, match=r"states\[1\] must have shape \(4, 3\)"):
        call(states=[states[0], torch.zeros(4, 2, dtype=torch.float64)])
    with pytest.raises(ValueError, match="states must have one tensor per layer"):
        call(states=states[:1])
    with pytest.raises(ValueError, match="needs a target"):
        call(target=None)
    with pytest.raises(ValueError, match="target must have shape"):
        call(target=target[:, :2])
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        call(x=x.half())
    with pytest.raises(TypeError, match=r"weights\[0\] must have the dtype of x"):
        call(weights=[weights[0].float(), weights[1]])
    with pytest.raises(ValueError, match="nudge = 7"):
        call(nudge=7)
    with pytest.raises(ValueError, match="activation = 3"):
        call(activation=3)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        call(steps=-1)
    with pytest.raises(ValueError, match="beta must be finite"):
        call(beta=float("nan"))
    with pytest.raises(ValueError, match=r"states\[0\] must have unit stride"):
        call(states=[states[0].t().contiguous().t(), states[1]])
    with pytest.raises(ValueError, match="at least one layer"):
        call(weights=[], biases=[], states=[])
    update = kernels().eqprop_update
    gw = [torch.empty(6, 5, dtype=torch.float64), torch.empty(3, 6, dtype=torch.float64)]
    gb = [torch.empty(6, dtype=torch.float64), torch.empty(3, dtype=torch.float64)]
    with pytest.raises(ValueError, match=r"states_b\[1\] must have shape \(4, 3\)"):
        update(x, states, [states[0], states[1][:, :2]], 1.0, gw, gb)
    with pytest.raises(ValueError, match=r"weight_grads\[0\] must have shape \(6, 5\)"):
        update(x, states, states, 1.0, [gw[0].t(), gw[1]], gb)
    with pytest.raises(ValueError, match="scale must be finite"):
        update(x, states, states, float("inf"), gw, gb)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("path", ["persistent", "step"])
@pytest.mark.parametrize("nudge", NUDGES)
@pytest.mark.parametrize("async_update", [False, True])
def test_cuda_paths_match_cpu(monkeypatch, device, path, nudge, async_update):
    """Both CUDA paths (forced) against the CPU kernel and the reference."""
    monkeypatch.setenv("LOCALGRAD_EQPROP_PATH", path)
    for batch, sizes in [(1, [3, 2]), (37, [20, 31, 17, 10]), (300, [64, 100, 10])]:
        for act, dtype in ((0, torch.float64), (1, torch.float32), (2, torch.float64)):
            x, weights, biases, states, target = make_net(batch, sizes, dtype, device, seed=act)
            cpu_states = [s.cpu().clone() for s in states]
            tol = 1e-3 if act == 0 else 0.0
            ran, expected, expected_ran = run_both(x, weights, biases, states, target, 0.6, nudge, act, 23,
                                                   async_update, tol)
            with cpu_kernels():
                cpu_ran = kernels().eqprop_relax(x.cpu(), [w.cpu() for w in weights], [b.cpu() for b in biases],
                                                 cpu_states, target.cpu(), 0.6, nudge, act, 23, async_update, tol)
            if dtype == torch.float64:
                assert torch.equal(ran.cpu(), expected_ran) and torch.equal(cpu_ran, expected_ran)
            for s, c, e in zip(states, cpu_states, expected):
                assert rel_err(s.cpu(), e) <= TOLERANCE[dtype]
                assert rel_err(s.cpu(), c) <= TOLERANCE[dtype]


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_cuda_large_network_takes_the_step_path(device):
    """Weights too big for shared memory: the default path still matches."""
    x, weights, biases, states, target = make_net(64, [784, 1024, 1024, 10], torch.float32, device, seed=9)
    ran, expected, _ = run_both(x, weights, biases, states, target, 0.5, NUDGE_MSE, 0, 12, True, 0.0)
    for s, e in zip(states, expected):
        assert rel_err(s.cpu(), e) <= 1e-5


def persistent_dynamic_bytes(sizes, rows, elem):
    """The persistent kernel's dynamic shared memory (eqprop_kernel.cu,
    fill_layout and smem_bytes): W_k and W_k^T and b_k of every layer above
    the first, each state and pre-activation row, the rows' log-sum-exps,
    padded to 16 bytes, then 20 bytes of flags per row."""
    n = len(sizes) - 1
    elements = sum(2 * sizes[k + 1] * sizes[k] + sizes[k + 1] for k in range(1, n))
    elements += sum(2 * rows * sizes[j + 1] for j in range(n)) + rows
    return (elements * elem + 15) // 16 * 16 + rows * 20


@pytest.mark.parametrize("device", [EMULATED])
@pytest.mark.parametrize("headroom", [0, 1, 335, 336])
def test_persistent_path_counts_its_static_shared_memory(monkeypatch, device, headroom):
    """Issue 22 P5 moved the persistent kernel's layout table to static shared
    memory (336 bytes): with the opt-in limit `headroom` bytes above the
    dynamic memory, the persistent path fits exactly when headroom >= 336;
    below, forcing it is the glue's clear error (not a failed launch) and the
    default takes the per-step path, with the same result."""
    from localgrad._extension import load_emulation

    sizes = [20, 31, 17, 10]
    load_emulation().set_device_model({"shared_per_block_optin": persistent_dynamic_bytes(sizes, 1, 8) + headroom})
    x, weights, biases, states, target = make_net(1, sizes, torch.float64, device, seed=2)
    fits = headroom >= 336
    if not fits:
        monkeypatch.setenv("LOCALGRAD_EQPROP_PATH", "persistent")
        with pytest.raises(RuntimeError, match="do not fit in shared memory"):
            run_both(x, weights, biases, [s.clone() for s in states], target, 0.6, NUDGE_MSE, 2, 15, False, 0.0)
        monkeypatch.delenv("LOCALGRAD_EQPROP_PATH")
    else:
        monkeypatch.setenv("LOCALGRAD_EQPROP_PATH", "persistent")
    ran, expected, expected_ran = run_both(x, weights, biases, states, target, 0.6, NUDGE_MSE, 2, 15, False, 0.0)
    assert torch.equal(ran, expected_ran)
    for s, e in zip(states, expected):
        assert rel_err(s, e) <= 1e-12


@pytest.mark.parametrize("device", [EMULATED])
@pytest.mark.parametrize("tol", [0.0, 1e-3])
def test_step_path_grid_stride_past_the_grid_cap(monkeypatch, device, tol):
    """The per-step path's kernels with more rows than their grids cover
    (launchers' cap lowered to 3 blocks: 24 rows per relax step, 768 per
    finish step)."""
    monkeypatch.setenv("LOCALGRAD_EQPROP_PATH", "step")
    grid_cap(device)
    x, weights, biases, states, target = make_net(800, [3, 5, 2], torch.float64, device, seed=4)
    ran, expected, expected_ran = run_both(x, weights, biases, states, target, 0.4, NUDGE_CE, 0, 9, False, tol)
    assert torch.equal(ran, expected_ran)
    for s, e in zip(states, expected):
        assert rel_err(s, e) <= 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["persistent", "step"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_mode(monkeypatch, device, path, dtype):
    """Every activation x nudge x update order: on CUDA each is its own kernel
    instantiation (the path is forced; CPU ignores it)."""
    monkeypatch.setenv("LOCALGRAD_EQPROP_PATH", path)
    for act in ACTIVATIONS:
        for nudge in NUDGES:
            for async_update in (False, True):
                x, weights, biases, states, target = make_net(3, [4, 5, 2], dtype, device, seed=act)
                _, expected, _ = run_both(x, weights, biases, states, target, 0.5, nudge, act, 4, async_update, 0.0)
                for s, e in zip(states, expected):
                    assert rel_err(s.cpu(), e) <= TOLERANCE[dtype]
