"""target_prop_feedback_grads (the fused feedback training of DTP and L-DRL)
against its reference (localgrad.reference.target_prop.map_feedback_gradients,
itself checked against autograd of the feedback losses here) and its contract."""

import pytest
import torch
from testing import DEVICES, KERNEL_DEVICES, TOLERANCE, cpu_kernels, grid_cap, kernels, poisoned, rel_err

import localgrad
from localgrad.ops.target_prop import _compiled
from localgrad.reference import target_prop as ref

pytestmark = pytest.mark.skipif(not localgrad.has_extension() or not _compiled(),
                                reason="compiled extension with the target-propagation op not built")

# (batch, samples, widths h_1..h_L of the maps' sides): one tiny map, an
# empty batch, odd widths, a width-1 side, three maps, more rows than one
# reduction chunk (64) and one CUDA block, and wide layers.
SHAPES = [
    (1, 1, [1, 1]),
    (3, 2, [4, 2]),
    (0, 3, [5, 3, 2]),
    (5, 1, [9, 13, 6]),
    (7, 3, [6, 1, 5, 3]),
    (33, 4, [40, 70, 45, 10]),
    (9, 10, [300, 200, 10]),
]
KIND_CYCLE = [2, 4, 1, 5, 3]  # relu, tanh, identity, sigmoid, leaky relu
VARIANTS = {"dtp": 0, "ldrl": 1}


def make_maps(batch, samples, widths, variant, gated, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    K = len(widths) - 1

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype=dtype, device=device)

    kinds = [KIND_CYCLE[(k + seed) % len(KIND_CYCLE)] for k in range(K)]
    args = dict(
        inputs=[rnd(batch, widths[k]) for k in range(K)],
        outputs=[rnd(batch, widths[k + 1]) for k in range(K)],
        gates=[rnd(batch, widths[k + 1]).abs() for k in range(K)] if gated else [],
        weights=[rnd(widths[k + 1], widths[k], scale=widths[k] ** -0.5) for k in range(K)],
        biases=[rnd(widths[k + 1], scale=0.1) for k in range(K)],
        fb_weights=[rnd(widths[k], widths[k + 1], scale=widths[k + 1] ** -0.5) for k in range(K)],
        fb_biases=[rnd(widths[k], scale=0.1) for k in range(K)],
        noise_in=[rnd(samples * batch, widths[k], scale=0.1) for k in range(K)],
        noise_out=[rnd(samples * batch, widths[k + 1], scale=0.1) for k in range(K)] if variant == "ldrl" else [],
        kinds=kinds,
        slopes=[0.1 if k == 3 else 0.0 for k in kinds],
    )
    return args


def call(args, variant):
    dtype, device = args["inputs"][0].dtype, args["inputs"][0].device
    gw = [poisoned(tuple(v.shape), dtype, device) for v in args["fb_weights"]]
    gb = [poisoned(tuple(c.shape), dtype, device) for c in args["fb_biases"]]
    loss = poisoned((), dtype, device)
    kernels().target_prop_feedback_grads(
        args["inputs"], args["outputs"], args["gates"], args["weights"], args["biases"], args["fb_weights"],
        args["fb_biases"], args["noise_in"], args["noise_out"], args["kinds"], args["slopes"], VARIANTS[variant],
        gw, gb, loss)
    return gw, gb, loss


def expected(args, variant):
    d = {k: ([t.cpu().double() for t in v] if k not in ("kinds", "slopes") else v) for k, v in args.items()}
    return ref.map_feedback_gradients(variant, d["inputs"], d["outputs"], d["gates"] or None, d["weights"],
                                      d["biases"], d["kinds"], d["slopes"], d["fb_weights"], d["fb_biases"],
                                      d["noise_in"], d["noise_out"])


def err(got, want):
    """rel_err against a unit floor (dc of L-DRL is exactly zero)."""
    got, want = got.cpu().double(), want.cpu().double()
    if want.numel() == 0:
        return 0.0
    return ((got - want).abs().max() / max(want.abs().max().item(), 1.0)).item()


def check(args, variant, tol):
    gw, gb, loss = call(args, variant)
    grads, total = expected(args, variant)
    for k, (ev, ec) in enumerate(grads):
        assert rel_err(gw[k].cpu(), ev) < tol, (k, rel_err(gw[k].cpu(), ev))
        assert err(gb[k], ec) < tol, (k, err(gb[k], ec))
    assert err(loss.reshape(1), total.reshape(1)) < tol, (loss, total)


@pytest.mark.parametrize("device", DEVICES + [d for d in KERNEL_DEVICES if d not in DEVICES])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-{'-'.join(map(str, s[2]))}")
def test_matches_reference_float64(device, variant, gated, shape):
    batch, samples, widths = shape
    args = make_maps(batch, samples, widths, variant, gated, device=device, seed=len(widths) + batch)
    check(args, variant, 1e-11)


@pytest.mark.parametrize("device", DEVICES + [d for d in KERNEL_DEVICES if d not in DEVICES])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_float32_within_tolerance(device, variant):
    args = make_maps(17, 3, [50, 40, 12], variant, True, dtype=torch.float32, device=device, seed=3)
    check(args, variant, 5e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_leaves_the_op_in_its_inputs_dtype(device):
    """Under torch.autocast the glue's own products once came back in bf16
    into float32 buffers (heap corruption); every op now runs with autocast
    off: the same bits as outside it."""
    args = make_maps(9, 2, [20, 16, 6], "dtp", True, dtype=torch.float32, device=device, seed=5)
    plain = call(args, "dtp")
    with torch.autocast("cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16):
        under = call(args, "dtp")
    for a, b in zip([*plain[0], *plain[1], plain[2]], [*under[0], *under[1], under[2]]):
        assert a.dtype == torch.float32 and torch.equal(a, b)


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_grid_stride_loops_reach_every_element(device):
    cap = grid_cap(device)
    # More elements than cap * 256 threads and more row chunks than cap blocks.
    rows = 64 * (cap + 2)
    args = make_maps(rows // 4, 4, [300, 270], "ldrl", True, device=device, seed=5)
    check(args, "ldrl", 1e-11)
    args = make_maps(rows // 4, 4, [300, 270], "dtp", True, device=device, seed=6)
    check(args, "dtp", 1e-11)


def test_reference_is_autograd_of_the_feedback_losses():
    """The closed form equals autograd through reference.feedback_losses (the
    maps' own definitions), both forms, both variants, several samples."""
    from localgrad.activations import Activation

    g = torch.Generator().manual_seed(0)
    sizes, B, S = [7, 6, 5, 4], 3, 2
    for gated in (True, False):
        kinds = [int(Activation.TANH), int(Activation.RELU), int(Activation.SIGMOID)] if gated else [1, 1, 1]
        slopes = [0.0] * 3
        W = [torch.randn(sizes[i + 1], sizes[i], generator=g, dtype=torch.float64) for i in range(3)]
        b = [torch.randn(sizes[i + 1], generator=g, dtype=torch.float64) for i in range(3)]
        hs, pre = ref.forward(torch.randn(B, 7, generator=g, dtype=torch.float64), W, b, kinds, slopes)
        for variant in ("dtp", "ldrl"):
            fb = [(torch.randn(sizes[l - 1], sizes[l], generator=g, dtype=torch.float64).requires_grad_(),
                   torch.randn(sizes[l - 1], generator=g, dtype=torch.float64).requires_grad_()) for l in (2, 3)]
            ni = [torch.randn(S * B, sizes[l - 1], generator=g, dtype=torch.float64) for l in (2, 3)]
            no = [torch.randn(S * B, sizes[l], generator=g, dtype=torch.float64) for l in (2, 3)]
            gates = [ref.derivative(pre[l - 1].repeat(S, 1), kinds[l - 1], 0.0) for l in (2, 3)] if gated else None
            losses = ref.feedback_losses(variant, [h.repeat(S, 1) for h in hs], W, b, kinds, slopes, fb, ni, no,
                                         0.0, gates)
            total = sum(losses) / (S * B)
            auto = torch.autograd.grad(total, [p for pair in fb for p in pair], allow_unused=True)
            closed, loss = ref.linear_feedback_gradients(variant, hs, pre, W, b, kinds, slopes,
                                                         [(v.detach(), c.detach()) for v, c in fb], ni, no, gated)
            for a, c in zip(auto, [p for pair in closed for p in pair]):
                a = torch.zeros_like(c) if a is None else a
                assert err(c, a) < 1e-12
            assert abs(loss.item() - total.item()) < 1e-12 * max(1.0, abs(total.item()))


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_kernels_match_cpu_kernels(device):
    args = make_maps(20, 3, [33, 29, 7], "ldrl", True, dtype=torch.float32, device=device, seed=8)
    gw, gb, loss = call(args, "ldrl")
    cpu_args = {k: ([t.cpu() for t in v] if k not in ("kinds", "slopes") else v) for k, v in args.items()}
    with cpu_kernels():
        cw, cb, closs = call(cpu_args, "ldrl")
    for a, b in zip(gw + gb, cw + cb):
        assert err(a, b) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_strided_and_transposed_inputs(device):
    args = make_maps(6, 2, [10, 8, 5], "dtp", True, device=device, seed=9)
    args["inputs"] = [t.t().contiguous().t() for t in args["inputs"]]  # column-major
    args["fb_weights"] = [t.t().contiguous().t() for t in args["fb_weights"]]
    args["noise_in"] = [torch.cat([t, t], 1)[:, ::2] for t in args["noise_in"]]  # strided columns
    check(args, "dtp", 1e-11)


BAD = [
    ("variant", lambda a: a.update(), 5, "variant"),
    ("kinds", lambda a: a.update(kinds=[0] * len(a["kinds"])), 0, "kinds[0]"),
    ("slopes", lambda a: a.update(slopes=[float("nan")] * len(a["slopes"])), 0, "slopes[0]"),
    ("weights shape", lambda a: a["weights"].__setitem__(0, a["weights"][0].t()), 0, "weights[0]"),
    ("fb_weights shape", lambda a: a["fb_weights"].__setitem__(0, a["fb_weights"][0][:-1]), 0, "fb_weights[0]"),
    ("noise rows", lambda a: a["noise_in"].__setitem__(0, a["noise_in"][0][:-1]), 0, "noise_in[0]"),
    ("gates count", lambda a: a.update(gates=a["gates"][:1]), 0, "gates"),
    ("dtype", lambda a: a["biases"].__setitem__(1, a["biases"][1].float()), 0, "biases[1]"),
    ("meta", lambda a: a["fb_biases"].__setitem__(0, a["fb_biases"][0].to("meta")), 0, "fb_biases[0]"),
    ("dtp noise_out", lambda a: a.update(noise_out=[t[:, :2] for t in a["inputs"]]), 0, "noise_out"),
]


@pytest.mark.parametrize("name,edit,variant,word", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_argument(name, edit, variant, word):
    args = make_maps(4, 2, [6, 5, 3], "dtp", True)
    edit(args)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=word.replace("[", r"\[").replace("]", r"\]")):
        call(args, "dtp" if variant == 0 else "ldrl") if variant in (0, 1) else kernels().target_prop_feedback_grads(
            args["inputs"], args["outputs"], args["gates"], args["weights"], args["biases"], args["fb_weights"],
            args["fb_biases"], args["noise_in"], args["noise_out"], args["kinds"], args["slopes"], variant,
            [torch.empty_like(v) for v in args["fb_weights"]], [torch.empty_like(c) for c in args["fb_biases"]],
            torch.empty(()))


def test_aliased_outputs_are_refused():
    args = make_maps(4, 2, [6, 5, 3], "dtp", True)
    gw = [torch.empty_like(v) for v in args["fb_weights"]]
    gb = [torch.empty_like(c) for c in args["fb_biases"]]
    with pytest.raises(ValueError, match="grad_weights"):
        kernels().target_prop_feedback_grads(
            args["inputs"], args["outputs"], args["gates"], args["weights"], args["biases"], args["fb_weights"],
            args["fb_biases"], args["noise_in"], [], args["kinds"], args["slopes"], 0, [args["fb_weights"][0], gw[1]],
            gb, torch.empty((), dtype=torch.float64))


def test_learner_fused_equals_reference_path():
    """TargetProp's closed-form path (this op) and its autograd path write the
    same feedback and forward .grad (gated DTP and L-DRL, 3 samples)."""
    from localgrad.experiments.demo import mlp
    from localgrad.target_prop import TargetProp

    for variant in ("dtp", "ldrl"):
        grads = []
        for closed in (True, False):
            torch.manual_seed(0)
            model = mlp([12, 9, 7, 4]).double()
            learner = TargetProp(model, variant=variant, feedback="gated", samples=3, seed=1)
            learner.closed_form = closed
            x = torch.randn(5, 12, dtype=torch.float64)
            y = torch.tensor([0, 1, 2, 3, 1])
            learner.step(x, y)
            grads.append([p.grad.clone() for p in [*model.parameters(), *learner.feedback_parameters()]])
        for a, b in zip(*grads):
            assert err(a, b) < 1e-12


def test_compiled_fullgraph_matches_eager():
    """The fake kernel lets torch.compile trace the op in one graph (its
    in-place outputs functionalised) with the eager op's results."""
    args = make_maps(5, 2, [8, 6, 3], "ldrl", True, seed=12)
    lists = [args[k] for k in ("inputs", "outputs", "gates", "weights", "biases", "fb_weights", "fb_biases",
                               "noise_in", "noise_out")]

    def fn(*tensors):
        *flat, gw0, gw1, gb0, gb1, loss = tensors
        it = iter(flat)
        parts = [[next(it) for _ in lst] for lst in lists]
        torch.ops.localgrad.target_prop_feedback_grads(*parts, args["kinds"], args["slopes"], 1, [gw0, gw1],
                                                       [gb0, gb1], loss)
        return gw0 * 2, gb1 + 1, loss * 3

    def outs():
        return [torch.zeros_like(v) for v in args["fb_weights"]] + [torch.zeros_like(c) for c in args["fb_biases"]] + [
            torch.zeros((), dtype=torch.float64)]

    flat = [t for lst in lists for t in lst]
    expected = fn(*flat, *outs())
    torch._dynamo.reset()
    got = torch.compile(fn, backend="aot_eager", fullgraph=True)(*flat, *outs())
    for g, e in zip(got, expected):
        assert g.shape == e.shape and rel_err(g, e) <= 1e-12
