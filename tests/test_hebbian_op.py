"""hebbian_update, the fused Hebbian step, against its reference and its contract."""

import math

import pytest
import torch
from testing import (DEVICES, FLOAT_DTYPES, TOLERANCE, grid_cap, low_precision_bound, poisoned, rel_err,
                     without_extension)

import localgrad
from localgrad import ops
from localgrad.reference import hebbian as ref

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")

# (batch, n_in, n_out): tiny, odd, empty batch, one unit, one input, wide
# enough for several CUDA blocks and CPU tasks.
SHAPES = [
    (1, 1, 1),
    (3, 5, 7),
    (0, 6, 4),
    (17, 33, 1),
    (9, 1, 5),
    (65, 129, 300),
    (300, 784, 64),
]

# Every rule with its knobs (SoftHebb and Krotov also with the published
# normalisation and adaptive rate; Krotov with p = 2 (no power kernel) and a
# rank past n_out (no anti-Hebbian unit)).
CASES = [
    ("oja", {}),
    ("sanger", {}),
    ("bcm", {}),
    ("softhebb", {"temperature": 0.7}),
    ("softhebb", {"temperature": 0.05, "normalize": True, "lr": 0.3, "lr_power": 0.5}),
    ("krotov", {"p": 3.0, "rank": 2, "anti": 0.4}),
    ("krotov", {"p": 2.0, "rank": 3, "anti": 0.2, "normalize": True}),
    ("krotov", {"p": 4.5, "rank": 1000, "lr_power": 0.5}),
    ("oja", {"normalize": True, "lr": 0.1, "lr_power": 1.0}),
]


def make_case(batch, n_in, n_out, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_in, generator=g, dtype=torch.float64)
    w = torch.randn(n_out, n_in, generator=g, dtype=torch.float64) / math.sqrt(max(n_in, 1))
    theta = torch.rand(n_out, generator=g, dtype=torch.float64)
    return x.to(dtype=dtype, device=device), w.to(dtype=dtype, device=device), theta.to(dtype=dtype, device=device)


def call(x, w, theta, rule, kw):
    u = poisoned((x.shape[0], w.shape[0]), x.dtype, x.device)
    grad = poisoned(tuple(w.shape), x.dtype, x.device)
    ops.hebbian_update(x, w, rule, theta=theta, u=u, grad=grad, **kw)
    return u, grad


def expected(x, w, theta, rule, kw):
    return ref.hebbian_update(x.cpu(), w.cpu(), rule, theta.cpu(), **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,n_in,n_out", SHAPES)
@pytest.mark.parametrize("rule,kw", CASES)
def test_matches_reference_float64(device, batch, n_in, n_out, rule, kw):
    x, w, theta = make_case(batch, n_in, n_out, torch.float64, device)
    u, grad = call(x, w, theta, rule, kw)
    eu, eg = expected(x, w, theta, rule, kw)
    assert not u.isnan().any() and not grad.isnan().any()
    assert rel_err(u.cpu(), eu) <= TOLERANCE[torch.float64]
    assert rel_err(grad.cpu(), eg) <= TOLERANCE[torch.float64]


@pytest.mark.parametrize("device", DEVICES)
def test_ties_go_to_the_lower_index(device):
    """Equal pre-activations: the winner (SoftHebb, Krotov) and Krotov's
    ranked unit are the lower indices, as in the reference's stable sort.
    Four units, and 300 with ties spread over every warp of a block."""
    x = torch.ones(2, 3, dtype=torch.float64)
    w = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.2, 0.2, 0.2], [0.0, 0.1, 0.5]], dtype=torch.float64)
    wide = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).repeat(300, 1)
    wide[::7] = torch.tensor([0.3, 0.2, 0.1], dtype=torch.float64)  # also u = 0.6, other rows of w
    wide[::11] = 0.0
    for weights in (w, wide):
        for rule, kw in CASES[3:]:
            _, grad = call(x.to(device), weights.to(device), None, rule, kw)
            want = expected(x, weights, torch.zeros(weights.shape[0], dtype=torch.float64), rule, kw)[1]
            assert rel_err(grad.cpu(), want) <= 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES[1:])
@pytest.mark.parametrize("rule,kw", CASES)
def test_low_precision(device, dtype, rule, kw):
    x, w, theta = make_case(65, 129, 40, torch.float64, device)
    eu, eg = expected(x, w, theta, rule, kw)
    xl, wl, tl = x.to(dtype), w.to(dtype), theta.to(dtype)
    u, grad = call(xl, wl, tl, rule, kw)
    if dtype == torch.float32:
        # The soft WTA and ranks see u rounded to float32: compare against
        # the reference fed the same rounded inputs, in float64.
        ru, rg = expected(xl.double(), wl.double(), tl.double(), rule, kw)
        assert rel_err(u.cpu(), ru) <= 1e-5
        assert rel_err(grad.cpu(), rg) <= 1e-4
        return
    # Half types: no worse than PyTorch's own step in that dtype (the
    # reference's maths run in float32 on the rounded inputs, then stored).
    tu, tg = ref.hebbian_update(xl.float().cpu(), wl.float().cpu(), rule, tl.float().cpu(), **kw)
    ru, rg = expected(xl.double(), wl.double(), tl.double(), rule, kw)
    assert rel_err(u.cpu(), ru) <= low_precision_bound(tu.to(dtype), ru)
    assert rel_err(grad.cpu(), rg) <= low_precision_bound(tg.to(dtype), rg) + 2e-3


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs_and_strided_outputs(device):
    x, w, theta = make_case(20, 30, 12, torch.float64, "cpu")
    xs = torch.randn(30, 40, dtype=torch.float64).T[:20]  # column-major, sliced
    ws = w.T.contiguous().T
    ts = torch.rand(24, dtype=torch.float64)[::2]
    ubuf = poisoned((20, 24), torch.float64, device)
    gbuf = poisoned((12, 50), torch.float64, device)
    u, grad = ubuf[:, 5:17], gbuf[:, 10:40]
    for rule, kw in CASES:
        ops.hebbian_update(xs.to(device), ws.to(device), rule, theta=ts.to(device), u=u, grad=grad, **kw)
        eu, eg = ref.hebbian_update(xs, ws, rule, ts, **kw)
        assert rel_err(u.cpu(), eu) <= 1e-12 and rel_err(grad.cpu(), eg) <= 1e-12
    assert ubuf[:, :5].isnan().all() and gbuf[:, 40:].isnan().all()


@pytest.mark.parametrize("device", DEVICES)
def test_grid_stride_past_the_grid_cap(device):
    """More samples, units and weights than blocks in the grid: every kernel's
    grid-stride loop runs (on the emulation the cap is lowered to 3 blocks;
    the power kernel's elements need more than 3 x 256)."""
    cap = grid_cap(device)
    batch, n_out = min(4 * cap, 301), min(4 * cap, 300)
    x, w, theta = make_case(batch, 250, n_out, torch.float64, device)
    for rule, kw in CASES:
        u, grad = call(x, w, theta, rule, kw)
        eu, eg = expected(x, w, theta, rule, kw)
        assert rel_err(u.cpu(), eu) <= 1e-12 and rel_err(grad.cpu(), eg) <= 1e-12


@pytest.mark.parametrize("device", DEVICES)
def test_cuda_matches_cpu(device):
    """The CUDA kernels (emulated or on a GPU) against the CPU kernels."""
    if device == "cpu":
        pytest.skip("CPU against itself")
    for rule, kw in CASES:
        x, w, theta = make_case(130, 257, 300, torch.float64, "cpu")
        cu, cg = call(x, w, theta, rule, kw)
        du, dg = call(x.to(device), w.to(device), theta.to(device), rule, kw)
        assert rel_err(du.cpu(), cu) <= 1e-12 and rel_err(dg.cpu(), cg) <= 1e-12


def test_opcheck():
    x, w, theta = make_case(7, 9, 5, torch.float32, "cpu")
    for rule, kw in CASES:
        code = ref.rule_code(rule)
        full = {"temperature": 1.0, "p": 3.0, "rank": 2, "anti": 0.4, "lr": 1.0, "lr_power": 0.0, "normalize": False}
        full.update(kw)
        args = (x, w, theta, code, full["temperature"], full["p"], full["rank"], full["anti"], full["lr"],
                full["lr_power"], full["normalize"], torch.empty(7, 5), torch.empty(5, 9))
        torch.library.opcheck(torch.ops.localgrad.hebbian_update.default, args)


def test_compiles_fullgraph():
    x, w, theta = make_case(7, 9, 5, torch.float32, "cpu")

    @torch.compile(fullgraph=True, backend="eager")
    def step(x, w):
        u, grad = torch.empty(7, 5), torch.empty(5, 9)
        torch.ops.localgrad.hebbian_update(x, w, None, 3, 1.0, 3.0, 2, 0.4, 1.0, 0.0, True, u, grad)
        return u, grad

    u, grad = step(x, w)
    eu, eg = ref.hebbian_update(x, w, "softhebb", normalize=True)
    assert rel_err(u, eu) <= 1e-5 and rel_err(grad, eg) <= 1e-5


def bad(**change):
    x, w, theta = make_case(4, 6, 3, torch.float32, "cpu")
    args = {"x": x, "weight": w, "theta": theta, "rule": 2, "temperature": 1.0, "p": 3.0, "rank": 2,
            "anti": 0.4, "lr": 1.0, "lr_power": 0.0, "normalize": False,
            "u": torch.empty(4, 3), "grad": torch.empty(3, 6)}
    args.update(change)
    return args


BAD = [
    ({"x": torch.randn(4, 6, 1)}, ValueError, "x must be 2-D"),
    ({"x": torch.ones(4, 6, dtype=torch.int64)}, TypeError, "x must be float"),
    ({"weight": torch.randn(6)}, ValueError, "weight must be 2-D"),
    ({"weight": torch.randn(3, 5)}, ValueError, "weight must have 6 columns"),
    ({"weight": torch.randn(3, 6, dtype=torch.float64)}, TypeError, "weight must have the dtype of x"),
    ({"rule": 7}, ValueError, "rule = 7"),
    ({"theta": None}, ValueError, "bcm needs theta"),
    ({"theta": torch.rand(4)}, ValueError, "theta must have 3 entries"),
    ({"theta": torch.rand(3, dtype=torch.float64)}, TypeError, "theta must have the dtype"),
    ({"temperature": 0.0}, ValueError, "temperature must be > 0"),
    ({"temperature": float("nan")}, ValueError, "temperature must be finite"),
    ({"lr": float("inf")}, ValueError, "lr must be finite"),
    ({"anti": float("nan")}, ValueError, "anti must be finite"),
    ({"p": 0.5}, ValueError, "p must be >= 1"),
    ({"p": float("inf")}, ValueError, "p must be finite"),
    ({"rank": 0}, ValueError, "rank must be >= 1"),
    ({"lr_power": -1.0}, ValueError, "lr_power must be >= 0"),
    ({"lr_power": float("nan")}, ValueError, "lr_power must be finite"),
    ({"u": torch.empty(4, 4)}, ValueError, "u must have shape"),
    ({"u": torch.empty(4, 3, dtype=torch.float64)}, TypeError, "u must have the dtype"),
    ({"grad": torch.empty(3, 5)}, ValueError, "grad must have the shape of weight"),
    ({"grad": torch.empty(6, 3).T}, ValueError, "grad must have unit stride"),
    ({"u": torch.empty(3, 4).T}, ValueError, "u must have unit stride"),
    ({"grad": torch.empty(1, 6).expand(3, 6)}, ValueError, "grad is written in place but some of its elements share memory"),
]


@pytest.mark.parametrize("change,error,message", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_is_refused_by_name(change, error, message):
    args = bad(**change)
    with pytest.raises(error, match=message):
        torch.ops.localgrad.hebbian_update(*args.values())
    if "unit stride" in message or "share memory" in message:
        return  # about memory layout: nothing a fake tensor can get wrong
    del args["normalize"]
    with pytest.raises(error, match=message):  # the fake kernel refuses the same
        ops.hebbian._check(*args.values())


def test_outputs_aliasing_inputs_are_refused():
    x, w, theta = make_case(4, 4, 4, torch.float32, "cpu")
    with pytest.raises(ValueError, match=r"grad \(written\) shares memory with weight"):
        ops.hebbian_update(x, w, "oja", grad=w)
    with pytest.raises(ValueError, match=r"u \(written\) shares memory with x"):
        ops.hebbian_update(x, w, "oja", u=x)
    buf = torch.empty(8, 4)
    with pytest.raises(ValueError, match=r"u \(written\) shares memory with grad"):
        ops.hebbian_update(x, w, "oja", u=buf[:4], grad=buf[2:6])


def test_empty_everything():
    for batch, n_in, n_out in [(0, 0, 0), (0, 5, 3), (4, 0, 3), (4, 5, 0)]:
        x, w, theta = make_case(batch, n_in, n_out, torch.float64, "cpu")
        for rule, kw in CASES:
            u, grad = call(x, w, theta, rule, kw)
            eu, eg = expected(x, w, theta, rule, kw)
            assert torch.equal(u, eu) and torch.equal(grad, eg), (batch, n_in, n_out, rule)


def test_reference_fallback_matches(monkeypatch):
    """Without the extension the wrapper runs the reference and checks the same."""
    import localgrad.ops.hebbian as mod

    without_extension(monkeypatch)
    x, w, theta = make_case(5, 6, 4, torch.float64, "cpu")
    with pytest.warns(RuntimeWarning, match="reference"):
        u, grad = mod.hebbian_update(x, w, "bcm", theta=theta)
    eu, eg = ref.hebbian_update(x, w, "bcm", theta)
    assert torch.equal(u, eu) and torch.equal(grad, eg)
    with pytest.raises(ValueError, match="bcm needs theta"):
        mod.hebbian_update(x, w, "bcm")
