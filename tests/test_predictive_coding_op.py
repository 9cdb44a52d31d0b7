"""predictive_coding_infer and predictive_coding_update against their
reference (localgrad.reference.predictive_coding) and their contract."""

import pytest
import torch
from testing import DEVICES, KERNEL_DEVICES, LAYERED_SHAPES, cpu_kernels, grid_cap, kernels, poisoned, rel_err

import localgrad
from localgrad import ops
from localgrad.ops.predictive_coding import _compiled
from localgrad.reference import predictive_coding as ref

pytestmark = pytest.mark.skipif(not localgrad.has_extension() or not _compiled(),
                                reason="compiled extension with the predictive-coding ops not built")

# And wide hidden layers.
SHAPES = LAYERED_SHAPES + [(9, [30, 300, 200, 10])]
# identity, relu, leaky relu, tanh, sigmoid: cycled over a_0..a_{L-1}.
KIND_CYCLE = [1, 4, 2, 5, 3]
VARIANTS = list(ref.VARIANTS)


def err(got, want):
    """rel_err, with errors that are exactly zero in the reference (hidden
    errors at the feed-forward state) judged against a unit scale."""
    got, want = got.cpu().double(), want.cpu().double()
    if want.numel() == 0:
        return 0.0
    return ((got - want).abs().max() / max(want.abs().max().item(), 1.0)).item()


def make_net(batch, widths, dtype=torch.float64, device="cpu", seed=0, feed_forward=False):
    g = torch.Generator().manual_seed(seed)
    L = len(widths) - 1
    weights = [(torch.rand(b, a, generator=g, dtype=torch.float64) * 2 - 1) / a**0.5
               for a, b in zip(widths[:-1], widths[1:])]
    biases = [torch.rand(b, generator=g, dtype=torch.float64) - 0.5 for b in widths[1:]]
    x = torch.randn(batch, widths[0], generator=g, dtype=torch.float64)
    kinds = [KIND_CYCLE[(l + seed) % len(KIND_CYCLE)] for l in range(L)]
    kinds[0] = 1
    slopes = [0.1 if k == 3 else 0.0 for k in kinds]
    states = ref.forward(x, weights, biases, kinds, slopes)[:-1]
    if not feed_forward:
        states = [s + 0.3 * torch.randn(s.shape, generator=g, dtype=torch.float64) for s in states]
    labels = torch.randint(0, widths[-1], (batch,), generator=g)
    target = torch.nn.functional.one_hot(labels, widths[-1]).to(torch.float64)

    def cast(t):
        return t.to(dtype=dtype, device=device)

    return (cast(x), [cast(w) for w in weights], [cast(b) for b in biases], [cast(s) for s in states],
            cast(target), kinds, slopes)


def call(x, weights, biases, states, target, kinds, slopes, variant, loss, precision, steps, gamma, lr):
    errors = [poisoned((x.shape[0], w.shape[0]), x.dtype, x.device) for w in weights]
    kernels().predictive_coding_infer(x, weights, biases, states, errors, target, kinds, slopes,
                                                variant, loss, precision, steps, gamma, lr)
    return errors


def expected_of(x, weights, biases, states, target, kinds, slopes, variant, loss, precision, steps, gamma, lr):
    d = [t.cpu().double() for t in [x, target]]
    return ref.predictive_coding_infer(d[0], [w.cpu().double() for w in weights], [b.cpu().double() for b in biases],
                                       [s.cpu().double() for s in states], d[1], kinds, slopes, variant, loss,
                                       precision, steps, gamma, lr)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,widths", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("loss", [0, 1])
def test_infer_matches_reference_float64(device, batch, widths, variant, loss):
    code = ref.VARIANTS[variant]
    net = make_net(batch, widths, device=device, seed=len(widths) + loss, feed_forward=code in (ref.FPA, ref.ZIL))
    x, weights, biases, states, target, kinds, slopes = net
    steps = {ref.ZIL: len(widths) - 2}.get(code, 6)
    gamma = 1.0 if code in (ref.FPA, ref.ZIL) else 0.1
    args = (kinds, slopes, code, loss, 0.7, steps, gamma, 0.03)
    exp_states, exp_errors, exp_w, exp_b = expected_of(x, weights, biases, states, target, *args)
    errors = call(x, weights, biases, states, target, *args)
    # iPC moves the weights with the states at every step, and its errors are
    # differences of nearly equal terms that shrink as inference converges:
    # relative to their own size the rounding grows (4.7e-11 measured at
    # widths 30-300-200-10 on this Intel machine's BLAS; 1e-12 held on the
    # previous AMD one).
    tol = 1e-10 if code == ref.IPC else 1e-12
    for got, want in zip(states + errors, exp_states + exp_errors):
        assert got.shape == want.shape
        assert err(got, want) <= tol
    if code == ref.IPC:
        for got, want in zip(weights + biases, exp_w + exp_b):
            assert err(got, want) <= tol


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["zil", "il"])
def test_zil_stops_short_and_steps_zero(device, variant):
    x, weights, biases, states, target, kinds, slopes = make_net(4, [6, 5, 7, 4, 3], device=device, feed_forward=True)
    for steps in (0, 1, 2):
        s = [t.clone() for t in states]
        args = (kinds, slopes, ref.VARIANTS[variant], 0, 1.0, steps, 1.0 if variant == "zil" else 0.1, 0.0)
        exp_states, exp_errors, _, _ = expected_of(x, weights, biases, s, target, *args)
        errors = call(x, weights, biases, s, target, *args)
        for got, want in zip(s + errors, exp_states + exp_errors):
            assert err(got, want) <= 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_infer_float32_close_to_float64(device, variant):
    code = ref.VARIANTS[variant]
    x, weights, biases, states, target, kinds, slopes = make_net(33, [40, 70, 45, 10], torch.float32, device,
                                                                 feed_forward=code in (ref.FPA, ref.ZIL))
    args = (kinds, slopes, code, 1, 1.0, 5 if code != ref.ZIL else 2, 0.1 if code in (ref.IL, ref.IPC) else 1.0, 0.01)
    exp_states, exp_errors, _, _ = expected_of(x, weights, biases, states, target, *args)
    errors = call(x, weights, biases, states, target, *args)
    for got, want in zip(states + errors, exp_states + exp_errors):
        assert got.dtype == torch.float32
        assert err(got, want) <= 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_infer_strided_states_and_errors(device):
    """Rows of states and errors may be strided (slices of wider buffers)."""
    x, weights, biases, states, target, kinds, slopes = make_net(5, [9, 13, 6, 4], device=device)
    args = (kinds, slopes, ref.IL, 1, 1.0, 4, 0.1, 0.0)
    exp_states, exp_errors, _, _ = expected_of(x, weights, biases, states, target, *args)
    wide = [torch.zeros(s.shape[0], s.shape[1] + 3, dtype=s.dtype, device=device) for s in states]
    strided = [w[:, 1:1 + s.shape[1]] for w, s in zip(wide, states)]
    for dst, src in zip(strided, states):
        dst.copy_(src)
    err_wide = [poisoned((5, w.shape[0] + 2), x.dtype, device) for w in weights]
    errors = [e[:, :w.shape[0]] for e, w in zip(err_wide, weights)]
    kernels().predictive_coding_infer(x, weights, biases, strided, errors, target, kinds, slopes, *args[2:])
    for got, want in zip(strided + errors, exp_states + exp_errors):
        assert err(got, want) <= 1e-12
    assert all(bool(torch.isnan(e[:, -2:]).all()) for e in err_wide)  # the columns beyond are untouched
    assert all(bool((w[:, 0] == 0).all()) and bool((w[:, -2:] == 0).all()) for w in wide)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,widths", SHAPES)
def test_update_matches_reference(device, batch, widths):
    x, weights, biases, states, target, kinds, slopes = make_net(batch, widths, device=device)
    errors = [torch.randn(batch, w.shape[0], dtype=x.dtype, device=device) for w in weights]
    exp_w, exp_b = ref.predictive_coding_update(x.cpu(), [s.cpu() for s in states], [e.cpu() for e in errors],
                                                kinds, slopes, -0.3)
    gw = [poisoned(w.shape, x.dtype, device) for w in weights]
    gb = [poisoned(b.shape, x.dtype, device) for b in biases]
    kernels().predictive_coding_update(x, states, errors, kinds, slopes, -0.3, gw, gb)
    for got, want in zip(gw + gb, exp_w + exp_b):
        if batch == 0:
            assert bool((got == 0).all())
        else:
            assert err(got, want) <= 1e-12


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("loss", [0, 1])
def test_cuda_matches_cpu(device, variant, loss):
    """The CUDA kernels (on a GPU or emulated) against the CPU kernels, in
    float64 and float32, at a batch over one block and widths over a warp."""
    code = ref.VARIANTS[variant]
    args = (code, loss, 1.0, 5 if code != ref.ZIL else 2, 0.5 if code in (ref.IL, ref.IPC) else 1.0, 0.01)

    def run(dtype, where):
        x, weights, biases, states, target, kinds, slopes = make_net(65, [30, 300, 200, 10], dtype, where,
                                                                     feed_forward=code in (ref.FPA, ref.ZIL))
        errors = call(x, weights, biases, states, target, kinds, slopes, *args)
        return [t.cpu() for t in states + errors + weights + biases]

    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        with cpu_kernels():
            want = run(dtype, "cpu")
        got = run(dtype, device)
        for a, b in zip(got, want):
            assert rel_err(a, b) <= tol


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("loss", [0, 1])
def test_grid_stride_past_the_grid_cap(device, loss):
    """More batch rows than warps in the grid (8 per block): the kernels'
    row loops stride (on the emulation the grid is capped at 3 blocks)."""
    cap = grid_cap(device)
    batch = min(8 * cap * 3 + 5, 1000)
    x, weights, biases, states, target, kinds, slopes = make_net(batch, [7, 33, 12, 5], device=device)
    args = (kinds, slopes, ref.IPC, loss, 1.0, 3, 0.1, 0.01)
    exp_states, exp_errors, exp_w, exp_b = expected_of(x, weights, biases, states, target, *args)
    errors = call(x, weights, biases, states, target, *args)
    for got, want in zip(states + errors + weights + biases, exp_states + exp_errors + exp_w + exp_b):
        assert err(got, want) <= 1e-12


def test_opcheck():
    x, weights, biases, states, target, kinds, slopes = make_net(5, [9, 13, 6, 4])
    errors = [torch.empty(5, w.shape[0], dtype=x.dtype) for w in weights]
    for variant in ref.VARIANTS.values():
        torch.library.opcheck(
            torch.ops.localgrad.predictive_coding_infer,
            (x, [w.clone() for w in weights], [b.clone() for b in biases], [s.clone() for s in states], errors,
             target, kinds, slopes, variant, 1, 1.0, 3, 0.1, 0.01),
        )
    gw = [torch.empty_like(w) for w in weights]
    gb = [torch.empty_like(b) for b in biases]
    torch.library.opcheck(torch.ops.localgrad.predictive_coding_update,
                          (x, states, errors, kinds, slopes, -0.2, gw, gb))


def _bad(**changes):
    x, weights, biases, states, target, kinds, slopes = make_net(4, [6, 5, 3])
    args = dict(x=x, weights=weights, biases=biases, states=states,
                errors=[torch.empty(4, 5, dtype=x.dtype), torch.empty(4, 3, dtype=x.dtype)], target=target,
                kinds=kinds, slopes=slopes, variant=0, loss=0, precision=1.0, steps=3, gamma=0.1, lr=0.0)
    args.update(changes)
    return list(args.values())


@pytest.mark.parametrize("changes,match", [
    (dict(x=torch.zeros(4, 6, dtype=torch.int64)), "x must be float32 or float64"),
    (dict(x=torch.zeros(4, 7, dtype=torch.float64)), r"weights\[0\] must have 7 columns"),
    (dict(states=[torch.zeros(4, 6, dtype=torch.float64)]), r"states\[0\] must have shape \[4, 5\]"),
    (dict(states=[]), "states must have one tensor per hidden layer"),
    (dict(errors=[torch.zeros(4, 5, dtype=torch.float64)]), "errors must have one tensor per layer"),
    (dict(errors=[torch.zeros(4, 5, dtype=torch.float32), torch.zeros(4, 3, dtype=torch.float64)]),
     r"errors\[0\] must have the dtype of x"),
    (dict(errors=[torch.zeros(5, 4, dtype=torch.float64).t(), torch.zeros(4, 3, dtype=torch.float64)]),
     r"errors\[0\] must have unit stride"),
    (dict(target=torch.zeros(4, 2, dtype=torch.float64)), r"target must have shape \[4, 3\]"),
    (dict(kinds=[1]), "kinds and slopes must have one entry per layer"),
    (dict(kinds=[1, 0]), r"kinds\[1\] = 0 is not an activation of a value node"),
    (dict(slopes=[0.0, float("nan")]), r"slopes\[1\] must be finite"),
    (dict(variant=4), "variant = 4 is not a variant code"),
    (dict(loss=2), "loss = 2 is not a loss code"),
    (dict(steps=-1), "steps must be >= 0"),
    (dict(gamma=float("nan")), "gamma must be finite"),
    (dict(lr=float("inf")), "lr must be finite"),
    (dict(precision=float("nan")), "output_precision must be finite"),
])
def test_infer_refuses_bad_input(changes, match):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        torch.ops.localgrad.predictive_coding_infer(*_bad(**changes))


def test_infer_refuses_overlapping_outputs():
    x, weights, biases, states, target, kinds, slopes = make_net(4, [6, 5, 5])
    shared = torch.empty(4, 5, dtype=x.dtype)
    with pytest.raises(ValueError, match=r"errors\[0\] \(written\) shares memory with errors\[1\]"):
        torch.ops.localgrad.predictive_coding_infer(*_bad(x=x, weights=weights, biases=biases, states=states,
                                                          target=torch.zeros(4, 5, dtype=x.dtype),
                                                          kinds=kinds, slopes=slopes, errors=[shared, shared]))
    with pytest.raises(ValueError, match=r"errors\[0\] is written in place but some of its elements share memory"):
        torch.ops.localgrad.predictive_coding_infer(*_bad(errors=[torch.zeros(1, 5, dtype=x.dtype).expand(4, 5),
                                                                  torch.zeros(4, 3, dtype=x.dtype)]))
    x, weights, biases, states, target, kinds, slopes = make_net(4, [6, 5, 3])
    with pytest.raises(ValueError, match=r"states\[0\] \(written\) shares memory with x"):
        buf = torch.zeros(30, dtype=x.dtype)
        torch.ops.localgrad.predictive_coding_infer(*_bad(x=buf[:24].view(4, 6), states=[buf[4:24].view(4, 5)]))
    # iPC writes the weights: they may not alias the states either.
    with pytest.raises(ValueError, match=r"states\[0\] \(written\) shares memory with weights\[0\]"):
        w0 = torch.zeros(5, 6, dtype=x.dtype)
        torch.ops.localgrad.predictive_coding_infer(*_bad(weights=[w0, weights[1]], states=[w0.view(-1)[:20].view(4, 5)],
                                                          variant=3))


def test_update_refuses_bad_input():
    x, weights, biases, states, target, kinds, slopes = make_net(4, [6, 5, 3])
    errors = [torch.zeros(4, 5, dtype=x.dtype), torch.zeros(4, 3, dtype=x.dtype)]
    gw = [torch.empty_like(w) for w in weights]
    gb = [torch.empty_like(b) for b in biases]
    with pytest.raises(ValueError, match=r"weight_grads\[1\] must have shape \[3, 5\]"):
        torch.ops.localgrad.predictive_coding_update(x, states, errors, kinds, slopes, 1.0,
                                                     [gw[0], torch.empty(5, 3, dtype=x.dtype)], gb)
    with pytest.raises(ValueError, match="scale must be finite"):
        torch.ops.localgrad.predictive_coding_update(x, states, errors, kinds, slopes, float("nan"), gw, gb)
    with pytest.raises(ValueError, match=r"weight_grads\[0\] \(written\) shares memory with x"):
        buf = torch.zeros(64, dtype=x.dtype)
        torch.ops.localgrad.predictive_coding_update(buf[:24].view(4, 6), states, errors, kinds, slopes, 1.0,
                                                     [buf[:30].view(5, 6), gw[1]], gb)


def test_wrapper_allocates_and_matches_op():
    x, weights, biases, states, target, kinds, slopes = make_net(5, [9, 13, 6, 4], feed_forward=True)
    exp_states, exp_errors, _, _ = expected_of(x, weights, biases, states, target, kinds, slopes, ref.ZIL, 1, 1.0,
                                               2, 1.0, 0.0)
    errors = ops.predictive_coding_infer(x, weights, biases, states, target, kinds, slopes, variant="zil", loss="ce",
                                         steps=2, gamma=1.0)
    for got, want in zip(states + errors, exp_states + exp_errors):
        assert err(got, want) <= 1e-12
    gw, gb = ops.predictive_coding_update(x, states, errors, kinds, slopes, 0.5)
    exp_w, exp_b = ref.predictive_coding_update(x, states, errors, kinds, slopes, 0.5)
    for got, want in zip(gw + gb, exp_w + exp_b):
        assert err(got, want) <= 1e-12
    with pytest.raises(ValueError, match="variant must be one of"):
        ops.predictive_coding_infer(x, weights, biases, states, target, kinds, slopes, variant="bp")


def test_torch_compile_fullgraph():
    x, weights, biases, states, target, kinds, slopes = make_net(5, [9, 13, 6, 4], feed_forward=True)
    errors = [torch.empty(5, w.shape[0], dtype=x.dtype) for w in weights]

    def f(x, weights, biases, states, errors, target):
        torch.ops.localgrad.predictive_coding_infer(x, weights, biases, states, errors, target, kinds, slopes,
                                                    ref.ZIL, 1, 1.0, 2, 1.0, 0.0)
        return errors[0].sum()

    eager_states, eager_errors = [s.clone() for s in states], [e.clone() for e in errors]
    f(x, weights, biases, eager_states, eager_errors, target)
    torch.compile(f, fullgraph=True)(x, weights, biases, states, errors, target)
    for a, b in zip(states + errors, eager_states + eager_errors):
        assert torch.equal(a, b)
