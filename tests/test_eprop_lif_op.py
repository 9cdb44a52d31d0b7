"""eprop_lif_chunk (fused LIF/ALIF e-prop over a chunk) against its reference."""

import pytest
import torch
from testing import cpu_kernels, DEVICES, grid_cap, is_emulated, KERNEL_DEVICES, kernels, rel_err, TOLERANCE

import localgrad
from localgrad.reference.eprop_lif import eprop_lif_chunk as reference_chunk

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="the compiled extension is not built")

NEURON = (0.9, 0.95, 0.7, 1.0, 0.3, 0.8)  # alpha, rho, beta, v_th, gamma, kappa
STATE = ["v", "a", "z", "psi", "y", "pre_trace", "adapt_trace", "filt_trace", "out_trace"]


def make_case(T, B, I, H, K, adaptive, mode, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype=dtype, device=device)

    P = I + H
    w_rec = rand(H, H, scale=2 / H**0.5)
    w_rec.diagonal().zero_()
    inputs = {
        "x": rand(T, B, I),
        "weight_in": rand(H, I, scale=2 / I**0.5),
        "weight_rec": w_rec,
        "weight_out": rand(K, H, scale=1 / H**0.5),
        "bias_out": rand(K, scale=0.1),
        "feedback": rand(K, H),
        "target": None,
        "signal": None,
    }
    if mode == "mse":
        inputs["target"] = rand(T, B, K)
    elif mode == "ce":
        labels = torch.randint(-1, K, (T, B), generator=g)  # -1: no loss for that sample and step
        inputs["target"] = labels.to(device)
    else:
        inputs["signal"] = rand(T, B, H)
    # A state carried from an earlier chunk: nothing is zero.
    state = {
        "v": rand(B, H, scale=0.5),
        "a": rand(B, H if adaptive else 0).abs(),
        "z": (rand(B, H) > 0.5).to(dtype),
        "psi": rand(B, H if adaptive else 0).abs() * 0.3,
        "y": rand(B, K),
        "pre_trace": rand(B, P).abs(),
        "adapt_trace": rand(B, H, P) if adaptive else torch.zeros(0, dtype=dtype, device=device),
        "filt_trace": rand(B, H, P),
        "out_trace": rand(B, H + 1).abs(),
    }
    grads = {"grad_w": rand(H, P), "grad_out": rand(K, H + 1)}
    return inputs, state, grads


def scaled_err(actual, expected):
    """Relative error, with quantities below 1 judged on the scale of 1: psi,
    for one, can be tiny (1 - |u|/v_th near 0), where float32 leaves only
    absolute accuracy."""
    if expected.numel() == 0:
        return 0.0
    a, e = actual.double().cpu(), expected.double().cpu()
    return ((a - e).abs().max() / e.abs().max().clamp_min(1.0)).item()


def run_both(T, B, I, H, K, adaptive, mode, dtype, device):
    inputs, state, grads = make_case(T, B, I, H, K, adaptive, mode, dtype, device)
    loss_scale = 2.0 / max(B * K, 1) if mode == "mse" else 1.0 / max(B, 1)
    ref_in = {k: (None if v is None else v.double().cpu() if v.is_floating_point() else v.cpu()) for k, v in inputs.items()}
    ref_state = {k: v.double().cpu().clone() for k, v in state.items()}
    ref_grads = {k: v.double().cpu().clone() for k, v in grads.items()}
    ref_out = torch.zeros(T, B, K, dtype=torch.float64)
    reference_chunk(*ref_in.values(), NEURON, adaptive, mode, loss_scale, *ref_state.values(), *ref_grads.values(), ref_out)
    outputs = torch.full((T, B, K), float("nan"), dtype=dtype, device=device)
    localgrad.ops.eprop_lif_chunk(*inputs.values(), NEURON, adaptive, mode, loss_scale, state, *grads.values(), outputs)
    return (state, grads, outputs), (ref_state, ref_grads, ref_out)


SHAPES = [(1, 0, 3, 4, 2), (1, 1, 1, 1, 1), (5, 3, 4, 6, 3), (7, 5, 3, 9, 2), (3, 2, 2, 33, 4)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["mse", "ce", "signal"])
@pytest.mark.parametrize("adaptive", [False, True], ids=["LIF", "ALIF"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_chunk_matches_reference(shape, adaptive, mode, dtype, device):
    (state, grads, outputs), (ref_state, ref_grads, ref_out) = run_both(*shape, adaptive, mode, dtype, device)
    # float64: relative error; float32: through T steps of recurrence, with
    # the scale of 1 for quantities that can be tiny.
    err = rel_err if dtype == torch.float64 else scaled_err
    tol = TOLERANCE[dtype] * (1 if dtype == torch.float64 else 10)
    assert not torch.isnan(outputs).any()
    assert err(outputs, ref_out) <= tol
    # Spikes must agree exactly (in float32 a spike can flip only when a
    # membrane sits within rounding of its threshold: these seeds do not).
    assert torch.equal(state["z"].cpu().double(), ref_state["z"])
    for key in STATE:
        if key == "filt_trace" and mode == "signal":
            continue  # not used (and not written) with a given signal
        assert err(state[key], ref_state[key]) <= tol, key
    assert err(grads["grad_w"], ref_grads["grad_w"]) <= tol
    assert err(grads["grad_out"], ref_grads["grad_out"]) <= tol


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("adaptive", [False, True], ids=["LIF", "ALIF"])
def test_cuda_matches_cpu(device, adaptive):
    # Large enough for several synapse tiles and samples per block column (on
    # the emulation, 7 samples over a grid lowered to 3 rows of blocks).
    shape = (6, 70, 40, 100, 5)
    if grid_cap(device) < 70:
        shape = (6, 7, 40, 100, 5)
    with cpu_kernels():
        cpu = run_both(*shape, adaptive, "ce", torch.float64, "cpu")[0]
    cuda = run_both(*shape, adaptive, "ce", torch.float64, device)[0]
    for a, b in zip(cuda, cpu):
        items = a.items() if isinstance(a, dict) else [("outputs", a)]
        for key, value in items:
            ref = b[key] if isinstance(b, dict) else b
            assert rel_err(value.cpu(), ref) <= 1e-12, key


def test_sliced_inputs_work():
    inputs, state, grads = make_case(4, 3, 3, 5, 2, True, "mse", torch.float64, "cpu")
    wide = torch.randn(4, 3, 6, dtype=torch.float64)
    wide[..., ::2] = inputs["x"]
    sliced = dict(inputs, x=wide[..., ::2])
    assert not sliced["x"].is_contiguous()
    out1, out2 = torch.empty(4, 3, 2, dtype=torch.float64), torch.empty(4, 3, 2, dtype=torch.float64)
    s1 = {k: v.clone() for k, v in state.items()}
    g1 = {k: v.clone() for k, v in grads.items()}
    localgrad.ops.eprop_lif_chunk(*inputs.values(), NEURON, True, "mse", 0.1, state, *grads.values(), out1)
    localgrad.ops.eprop_lif_chunk(*sliced.values(), NEURON, True, "mse", 0.1, s1, *g1.values(), out2)
    assert torch.equal(out1, out2) and torch.equal(grads["grad_w"], g1["grad_w"])


def call(inputs, state, grads, outputs, adaptive=True, mode="mse", neuron=NEURON):
    localgrad.ops.eprop_lif_chunk(*inputs.values(), neuron, adaptive, mode, 0.1, state, *grads.values(), outputs)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda i, s, g: i.update(weight_in=i["weight_in"][:, :2]), "weight_in must have shape"),
        (lambda i, s, g: i.update(feedback=i["feedback"].float()), "feedback must have the dtype of x"),
        (lambda i, s, g: i.update(target=i["target"][:, :, :1]), "target must have shape"),
        (lambda i, s, g: s.update(v=s["v"].t().contiguous().t()), "v must be contiguous"),
        (lambda i, s, g: s.update(adapt_trace=s["adapt_trace"][:, :, :2]), "adapt_trace must have shape"),
        (lambda i, s, g: g.update(grad_w=g["grad_w"][:2]), "grad_w must have shape"),
        (lambda i, s, g: i.update(x=i["x"].half()), "x must be float32 or float64"),
    ],
)
def test_bad_arguments_are_named(change, message):
    inputs, state, grads = make_case(3, 2, 3, 4, 2, True, "mse", torch.float64, "cpu")
    change(inputs, state, grads)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        call(inputs, state, grads, torch.empty(3, 2, 2, dtype=inputs["x"].dtype))


def test_mode_and_target_errors():
    inputs, state, grads = make_case(3, 2, 3, 4, 2, False, "mse", torch.float64, "cpu")
    out = torch.empty(3, 2, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="int64 class indices"):
        call(inputs, state, grads, out, adaptive=False, mode="ce")
    with pytest.raises(ValueError, match="needs signal"):
        call(inputs, state, grads, out, adaptive=False, mode="signal")
    with pytest.raises(ValueError, match="v_th"):
        call(inputs, state, grads, out, adaptive=False, neuron=(0.9, 0.9, 0.1, 0.0, 0.3, 0.8))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("adaptive", [False, True], ids=["LIF", "ALIF"])
def test_opcheck(device, adaptive):
    inputs, state, grads = make_case(3, 2, 3, 4, 2, adaptive, "ce", torch.float64, device)
    outputs = torch.empty(3, 2, 2, dtype=torch.float64, device=device)
    args = (*inputs.values(), list(NEURON), adaptive, 1, 0.5, *state.values(), *grads.values(), outputs)
    torch.library.opcheck(kernels().eprop_lif_chunk.default, args)


def test_torch_compile_smoke():
    lib = kernels()  # resolved outside the compiled function
    inputs, state, grads = make_case(3, 2, 3, 4, 2, True, "mse", torch.float64, "cpu")
    expected = ({k: v.clone() for k, v in state.items()}, {k: v.clone() for k, v in grads.items()})
    out_eager = torch.empty(3, 2, 2, dtype=torch.float64)
    call(inputs, expected[0], expected[1], out_eager)

    @torch.compile(fullgraph=True)
    def compiled(x, target, v, a, z, psi, y, pre, adapt, filt, out_trace, grad_w, grad_out, outputs):
        lib.eprop_lif_chunk(
            x, inputs["weight_in"], inputs["weight_rec"], inputs["weight_out"], inputs["bias_out"],
            inputs["feedback"], target, None, list(NEURON), True, 0, 0.1,
            v, a, z, psi, y, pre, adapt, filt, out_trace, grad_w, grad_out, outputs,
        )  # fmt: skip

    out = torch.empty(3, 2, 2, dtype=torch.float64)
    compiled(inputs["x"], inputs["target"], *state.values(), *grads.values(), out)
    assert torch.equal(out, out_eager)
    assert torch.equal(grads["grad_w"], expected[1]["grad_w"])


# Issue 22 W1: cross-entropy mode's static flag (16 bytes of shared memory)
# on top of dynamic memory just under the 48 KiB default: 5H+I+K = 6142 or
# 6143 in float32, 3071 in float64. The launch must opt in, not fail.
@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize(
    "dtype, H, I, K",
    [(torch.float32, 1000, 1000, 142), (torch.float32, 999, 1005, 143), (torch.float64, 500, 429, 142)],
)
def test_static_shared_memory_is_counted(device, dtype, H, I, K):
    (state, grads, outputs), (ref_state, ref_grads, ref_out) = run_both(1, 1, I, H, K, False, "ce", dtype, device)
    err = rel_err if dtype == torch.float64 else scaled_err
    tol = TOLERANCE[dtype] * (1 if dtype == torch.float64 else 10)
    assert err(outputs, ref_out) <= tol
    assert err(grads["grad_w"], ref_grads["grad_w"]) <= tol
    assert err(grads["grad_out"], ref_grads["grad_out"]) <= tol


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_shared_memory_limit_is_a_clear_error(device):
    """Dynamic memory 4 bytes under the 227 KiB opt-in limit, the static flag
    over it: the glue's message, not a failed launch, and no CUDA error left
    for the next call."""
    inputs, state, grads = make_case(1, 1, 29000, 10, 5, False, "ce", torch.float32, device)
    out = torch.empty(1, 1, 5, dtype=torch.float32, device=device)
    with pytest.raises(ValueError, match="bytes of shared memory per block"):
        localgrad.ops.eprop_lif_chunk(*inputs.values(), NEURON, False, "ce", 1.0, state, *grads.values(), out)
    if is_emulated(device):
        assert localgrad._extension.load_emulation().peek_last_error() == 0
