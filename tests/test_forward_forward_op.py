"""forward_forward_step (every Forward-Forward layer's update, goodness and
loss in one call) against its reference (localgrad.reference.forward_forward.step,
itself checked against autograd of each layer's loss in test_forward_forward.py),
on the CPU kernels, a GPU and the emulated CUDA kernels; and its contract."""

import pytest
import torch
from testing import DEVICES, KERNEL_DEVICES, cpu_kernels, grid_cap, kernels, poisoned, rel_err

import localgrad
from localgrad.ops.forward_forward import GOODNESS, LOSSES, NORMALIZE, _compiled
from localgrad.reference import forward_forward as ref

pytestmark = pytest.mark.skipif(not localgrad.has_extension() or not _compiled(),
                                reason="compiled extension with the Forward-Forward op not built")

# (batch, widths): one unit, an empty batch, odd widths, a width above one
# warp's 32 lanes, more pairs than one CUDA block's 8 warps, wide layers.
SHAPES = [(1, [2, 1]), (0, [5, 3, 2]), (3, [7, 5, 3]), (5, [12, 33, 9, 4]), (19, [40, 70, 45]), (6, [300, 200, 10])]
KIND_CYCLE = [2, 4, 1, 5, 3]  # relu, tanh, identity, sigmoid, leaky relu


def make(batch, widths, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype=dtype, device=device)

    L = len(widths) - 1
    kinds = [KIND_CYCLE[(l + seed) % len(KIND_CYCLE)] for l in range(L)]
    return dict(
        x_pos=rnd(batch, widths[0]), x_neg=rnd(batch, widths[0]),
        weights=[rnd(widths[l + 1], widths[l], scale=2.0) for l in range(L)],
        biases=[rnd(widths[l + 1], scale=0.3) for l in range(L)],
        kinds=kinds, slopes=[0.1 if k == 3 else 0.0 for k in kinds],
        # Near the layers' mean squares: both sides of the logistic matter.
        thresholds=[0.5 + 0.4 * l for l in range(L)],
    )


def call(args, goodness="sumsq", loss="threshold", normalize="rms", alpha=1.3, eps=1e-3):
    dtype, device = args["x_pos"].dtype, args["x_pos"].device
    B, L = args["x_pos"].shape[0], len(args["weights"])
    gw = [poisoned(tuple(w.shape), dtype, device) for w in args["weights"]]
    gb = [poisoned(tuple(b.shape), dtype, device) for b in args["biases"]]
    good, losses = poisoned((L, 2, B), dtype, device), poisoned((L,), dtype, device)
    kernels().forward_forward_step(args["x_pos"], args["x_neg"], args["weights"], args["biases"], args["kinds"],
                                   args["slopes"], args["thresholds"], GOODNESS[goodness], LOSSES[loss],
                                   NORMALIZE[normalize], alpha, eps, gw, gb, good, losses)
    return gw, gb, good, losses


def expected(args, goodness="sumsq", loss="threshold", normalize="rms", alpha=1.3, eps=1e-3):
    d = {k: (v.cpu().double() if isinstance(v, torch.Tensor) else
             [t.cpu().double() for t in v] if k in ("weights", "biases") else v) for k, v in args.items()}
    return ref.step(d["x_pos"], d["x_neg"], d["weights"], d["biases"], d["kinds"], d["slopes"], goodness, loss,
                    d["thresholds"], alpha, normalize, eps)


def check(args, tol, **options):
    got = call(args, **options)
    want = expected(args, **options)
    for a, b in zip([*got[0], *got[1]], [*want[0], *want[1]]):
        assert rel_err(a.cpu(), b) < tol, rel_err(a.cpu(), b)
    assert rel_err(got[2].cpu(), want[2]) < tol
    assert rel_err(got[3].cpu(), want[3]) < tol


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{'-'.join(map(str, s[1]))}")
def test_matches_reference_float64(device, shape):
    batch, widths = shape
    check(make(batch, widths, device=device, seed=len(widths) + batch), 1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("goodness", list(GOODNESS))
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("normalize", list(NORMALIZE))
def test_every_option_matches_reference_float64(device, goodness, loss, normalize):
    args = make(7, [20, 37, 9], device=device, seed=len(goodness) + 3 * len(loss) + len(normalize))
    if goodness == "sumsq":  # the sum over 37 units: thresholds near it
        args["thresholds"] = [t * 20 for t in args["thresholds"]]
    check(args, 1e-12, goodness=goodness, loss=loss, normalize=normalize)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_within_tolerance(device):
    check(make(17, [50, 40, 12], dtype=torch.float32, device=device, seed=3), 5e-5)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_grid_stride_loops_reach_every_row(device):
    cap = grid_cap(device)
    # More pairs (and rows) than cap blocks of 8 warps.
    check(make(8 * cap + 5, [45, 38], device=device, seed=5), 1e-12, loss="symmetric")


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_kernels_match_cpu_kernels(device):
    args = make(20, [33, 29, 7], dtype=torch.float32, device=device, seed=8)
    got = call(args)
    cpu_args = {k: (v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v]
                    if k in ("weights", "biases") else v) for k, v in args.items()}
    with cpu_kernels():
        want = call(cpu_args)
    for a, b in zip([*got[0], *got[1], got[2], got[3]], [*want[0], *want[1], want[2], want[3]]):
        assert rel_err(a.cpu(), b) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_strided_and_transposed_inputs(device):
    args = make(6, [10, 8, 5], device=device, seed=9)
    want = expected(args)
    args["x_pos"] = torch.stack([args["x_pos"], args["x_pos"]], 2).flatten(1)[:, ::2]  # strided columns
    assert args["x_pos"].stride(1) == 2
    args["x_neg"] = args["x_neg"].t().contiguous().t()  # column-major
    args["weights"] = [w.t().contiguous().t() for w in args["weights"]]
    got = call(args)
    for a, b in zip([*got[0], *got[1]], [*want[0], *want[1]]):
        assert rel_err(a.cpu(), b) < 1e-12


def test_nan_input_reaches_the_update():
    args = make(3, [6, 4])
    args["x_pos"][1, 2] = float("nan")
    gw, gb, good, _ = call(args)
    assert torch.isnan(good[0, 0, 1]) and torch.isnan(gw[0]).any()


def test_wrapper_allocates_and_matches_reference():
    args = make(5, [9, 7, 3], seed=11)
    gw, gb, good, losses = localgrad.ops.forward_forward_step(
        args["x_pos"], args["x_neg"], args["weights"], args["biases"], args["kinds"], args["slopes"],
        args["thresholds"], "meansq", "symmetric", "l2", 0.7, 1e-4)
    want = ref.step(args["x_pos"], args["x_neg"], args["weights"], args["biases"], args["kinds"], args["slopes"],
                    "meansq", "symmetric", args["thresholds"], 0.7, "l2", 1e-4)
    for a, b in zip([*gw, *gb, good, losses], [*want[0], *want[1], want[2], want[3]]):
        assert rel_err(a, b) < 1e-12


BAD = [
    ("goodness code", {"goodness": 7}, "goodness"),
    ("loss code", {"loss": -1}, "loss"),
    ("normalize code", {"normalize": 3}, "normalize"),
    ("kinds", {"kinds": [0, 2]}, r"kinds\[0\]"),
    ("slopes", {"slopes": [float("nan"), 0.0]}, r"slopes\[0\]"),
    ("thresholds", {"thresholds": [0.0, float("inf")]}, r"thresholds\[1\]"),
    ("eps", {"eps": -1.0}, "eps"),
    ("chain", {"weights": "transposed"}, r"weights\[1\]"),
    ("bias shape", {"biases": "short"}, r"biases\[0\]"),
    ("x_neg shape", {"x_neg": "short"}, "x_neg"),
    ("dtype", {"x_neg": "float"}, "x_neg"),
    ("meta", {"x_neg": "meta"}, "x_neg"),
    ("counts", {"thresholds": [1.0]}, "thresholds"),
]


@pytest.mark.parametrize("name,edit,word", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_argument(name, edit, word):
    args = make(4, [6, 5, 3])
    codes = {"goodness": 0, "loss": 0, "normalize": 0, "alpha": 1.0, "eps": 1e-8}
    for key, value in edit.items():
        if key in codes:
            codes[key] = value
        elif value == "transposed":
            args["weights"][1] = args["weights"][1].t().contiguous()
        elif value == "short":
            args[key] = [t[:-1] for t in args[key]] if key == "biases" else args[key][:, :-1]
        elif value == "float":
            args[key] = args[key].float()
        elif value == "meta":
            args[key] = args[key].to("meta")
        else:
            args[key] = value
    B, L = 4, 2
    gw = [torch.empty(5, 6, dtype=torch.float64), torch.empty(3, 5, dtype=torch.float64)]
    gb = [torch.empty(5, dtype=torch.float64), torch.empty(3, dtype=torch.float64)]
    with pytest.raises((ValueError, TypeError, RuntimeError), match=word):
        kernels().forward_forward_step(args["x_pos"], args["x_neg"], args["weights"], args["biases"], args["kinds"],
                                       args["slopes"], args["thresholds"], codes["goodness"], codes["loss"],
                                       codes["normalize"], codes["alpha"], codes["eps"], gw, gb,
                                       torch.empty(L, 2, B, dtype=torch.float64), torch.empty(L, dtype=torch.float64))


def test_aliased_outputs_are_refused():
    args = make(4, [6, 5, 3])
    gw = [torch.empty(5, 6, dtype=torch.float64), torch.empty(3, 5, dtype=torch.float64)]
    gb = [gw[0][:, 0], torch.empty(3, dtype=torch.float64)]  # a bias gradient inside a weight gradient
    with pytest.raises(ValueError, match=r"grad_weights\[0\] \(written\) shares memory with grad_biases\[0\]"):
        kernels().forward_forward_step(args["x_pos"], args["x_neg"], args["weights"], args["biases"], args["kinds"],
                                       args["slopes"], args["thresholds"], 0, 0, 0, 1.0, 1e-8, gw, gb,
                                       torch.empty(2, 2, 4, dtype=torch.float64), torch.empty(2, dtype=torch.float64))


def test_opcheck_and_compile():
    args = make(3, [6, 5, 3])
    gw = [torch.empty_like(w) for w in args["weights"]]
    gb = [torch.empty_like(b) for b in args["biases"]]
    good, losses = torch.empty(2, 2, 3, dtype=torch.float64), torch.empty(2, dtype=torch.float64)
    torch.library.opcheck(torch.ops.localgrad.forward_forward_step.default,
                          (args["x_pos"], args["x_neg"], args["weights"], args["biases"], args["kinds"],
                           args["slopes"], args["thresholds"], 0, 1, 0, 1.0, 1e-8, gw, gb, good, losses))

    def f(x_pos, x_neg, weights, biases):
        return localgrad.ops.forward_forward_step(x_pos, x_neg, weights, biases, args["kinds"], args["slopes"],
                                                  args["thresholds"])

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = compiled(args["x_pos"], args["x_neg"], args["weights"], args["biases"])
    want = f(args["x_pos"], args["x_neg"], args["weights"], args["biases"])
    for a, b in zip([*got[0], *got[1], got[2], got[3]], [*want[0], *want[1], want[2], want[3]]):
        assert torch.equal(a, b)
