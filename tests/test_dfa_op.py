"""dfa_project, the fused DFA projection, against its reference and its contract."""

import pytest
import torch
import torch.nn.functional as F
from testing import cpu_kernels, DEVICES, FLOAT_DTYPES, grid_cap, KERNEL_DEVICES, kernels, low_precision_bound, poisoned, rel_err, TOLERANCE

import localgrad
from localgrad import Activation, ops, reference

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")

A = Activation
ALL_KINDS = [A.DERIVATIVE, A.IDENTITY, A.RELU, A.LEAKY_RELU, A.TANH, A.SIGMOID]


def make_activation(kind, shape, slope, generator, dtype, device):
    """What a layer would hand the op: its output h = f(a) (or f'(a))."""
    a = torch.randn(shape, generator=generator, dtype=torch.float64)
    h = {
        A.DERIVATIVE: torch.rand(shape, generator=generator, dtype=torch.float64),
        A.IDENTITY: a,
        A.RELU: F.relu(a),  # exact zeros: the kink is exercised
        A.LEAKY_RELU: F.leaky_relu(a, slope),
        A.TANH: torch.tanh(a),
        A.SIGMOID: torch.sigmoid(a),
    }[kind]
    return h.to(dtype=dtype, device=device)


def make_case(batch, n_out, widths, kinds, dtype, device, seed=0, identity_without_tensor=True):
    g = torch.Generator().manual_seed(seed)
    error = torch.randn(batch, n_out, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    feedback = torch.randn(n_out, sum(widths), generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    slopes = [0.1 * (i + 1) if k == A.LEAKY_RELU else 0.0 for i, k in enumerate(kinds)]
    acts = [
        None
        if (k == A.IDENTITY and identity_without_tensor)
        else make_activation(k, (batch, w), s, g, dtype, device)
        for w, k, s in zip(widths, kinds, slopes)
    ]
    return error, feedback, acts, [int(k) for k in kinds], slopes


def cycle_kinds(n):
    return [ALL_KINDS[i % len(ALL_KINDS)] for i in range(n)]


# (batch, n_out, widths): tiny, odd, empty, one layer, five layers, n_out over
# one 16-wide slab of the CUDA kernel, more layers than one launch holds (32).
SHAPES = [
    (1, 1, [1]),
    (3, 10, [17]),
    (0, 10, [5, 7]),
    (7, 10, [0, 9]),
    (33, 7, [129, 1, 64, 300, 5]),
    (129, 37, [200, 33]),
    (5, 3, [2] * 40),
    (70, 10, [1000, 1000, 1000]),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch,n_out,widths", SHAPES)
def test_matches_reference_float64(device, batch, n_out, widths):
    kinds = cycle_kinds(len(widths))
    error, feedback, acts, kinds, slopes = make_case(batch, n_out, widths, kinds, torch.float64, device)
    out = [poisoned((batch, w), torch.float64, device) for w in widths]
    kernels().dfa_project(error, feedback, acts, kinds, slopes, out)
    expected = reference.dfa_project(error, feedback, acts, kinds, slopes, widths)
    for o, e in zip(out, expected):
        assert not o.isnan().any()
        assert rel_err(o, e) <= TOLERANCE[torch.float64]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_activation_against_autograd(device, kind):
    """The reference's derivative-from-output agrees with autograd's f'(a)."""
    g = torch.Generator().manual_seed(int(kind))
    a = torch.randn(9, 13, generator=g, dtype=torch.float64)
    a[0, :3] = 0.0  # the kink
    fn = {
        A.IDENTITY: lambda t: t,
        A.RELU: F.relu,
        A.LEAKY_RELU: lambda t: F.leaky_relu(t, 0.2),
        A.TANH: torch.tanh,
        A.SIGMOID: torch.sigmoid,
        A.DERIVATIVE: None,
    }[kind]
    if fn is None:
        pytest.skip("DERIVATIVE takes f'(a) as given")
    a.requires_grad_(True)
    h = fn(a)
    (deriv,) = torch.autograd.grad(h.sum(), a)
    error = torch.randn(9, 4, generator=g, dtype=torch.float64)
    feedback = torch.randn(4, 13, generator=g, dtype=torch.float64)
    (out,) = ops.dfa_project(error.to(device), feedback.to(device), [h.detach().to(device)], [kind], [0.2])
    assert rel_err(out.cpu(), (error @ feedback) * deriv) <= TOLERANCE[torch.float64]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_dtypes(device, dtype):
    widths = [31, 64, 5]
    kinds = [A.RELU, A.TANH, A.SIGMOID]
    error, feedback, acts, kinds, slopes = make_case(45, 10, widths, kinds, torch.float64, "cpu", seed=3)
    expected = reference.dfa_project(error, feedback, acts, kinds, slopes)  # float64 oracle

    def cast(t):
        return t.to(dtype=dtype, device=device)

    out = [poisoned((45, w), dtype, device) for w in widths]
    kernels().dfa_project(cast(error), cast(feedback), [cast(a) for a in acts], kinds, slopes, out)
    for o, e, fb, h, k in zip(out, expected, feedback.split(widths, 1), acts, kinds):
        assert o.dtype == dtype and not o.isnan().any()
        if dtype in TOLERANCE:
            assert rel_err(o.cpu(), e) <= TOLERANCE[dtype]
        else:
            # PyTorch's own version of the same computation in that dtype.
            plain = (cast(error) @ cast(fb)) * localgrad.activations.derivative_from_output(cast(h), k)
            assert rel_err(o.cpu(), e) <= low_precision_bound(plain.cpu(), e)


@pytest.mark.parametrize("device", DEVICES)
def test_writes_only_its_block_of_a_shared_buffer(device):
    """Outputs as column blocks of one wider buffer (the layout DFALinear uses)
    and as views with spare columns: nothing outside them is touched."""
    widths = [6, 11, 4]
    error, feedback, acts, kinds, slopes = make_case(9, 5, widths, [A.RELU, A.TANH, A.IDENTITY], torch.float64, device)
    expected = reference.dfa_project(error, feedback, acts, kinds, slopes, widths)

    shared = poisoned((9, sum(widths)), torch.float64, device)
    out = list(shared.split(widths, dim=1))
    kernels().dfa_project(error, feedback, acts, kinds, slopes, out)
    assert rel_err(shared, torch.cat(expected, 1)) <= 1e-12

    padded = poisoned((9, sum(widths) + 3), torch.float64, device)
    out = [padded[:, 0:6], padded[:, 7:18], padded[:, 19:23]]
    kernels().dfa_project(error, feedback, acts, kinds, slopes, out)
    for o, e in zip(out, expected):
        assert rel_err(o, e) <= 1e-12
    assert padded[:, [6, 18, 23]].isnan().all()


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    widths = [8, 3]
    error, feedback, acts, kinds, slopes = make_case(6, 4, widths, [A.TANH, A.RELU], torch.float64, device)
    expected = reference.dfa_project(error, feedback, acts, kinds, slopes, widths)
    error_t = error.t().contiguous().t()  # column-major
    feedback_t = feedback.t().contiguous().t()
    acts_strided = [torch.stack([a, a], dim=2)[..., 0] for a in acts]  # column stride 2
    assert not error_t.is_contiguous() and not acts_strided[0].is_contiguous()
    out = [poisoned((6, w), torch.float64, device) for w in widths]
    kernels().dfa_project(error_t, feedback_t, acts_strided, kinds, slopes, out)
    for o, e in zip(out, expected):
        assert rel_err(o, e) <= 1e-12


def test_identity_layer_may_pass_a_tensor():
    widths = [4]
    error, feedback, _, _, _ = make_case(3, 2, widths, [A.IDENTITY], torch.float64, "cpu")
    anything = torch.randn(3, 4, dtype=torch.float64)
    (out,) = ops.dfa_project(error, feedback, [anything], [A.IDENTITY])
    assert rel_err(out, error @ feedback) <= 1e-12


def test_functional_wrapper_allocates_one_buffer():
    error, feedback, acts, kinds, slopes = make_case(5, 3, [4, 6], [A.RELU, A.IDENTITY], torch.float64, "cpu")
    out = ops.dfa_project(error, feedback, acts, kinds, slopes, widths=[4, 6])
    assert out[1].data_ptr() == out[0].data_ptr() + 4 * out[0].element_size()
    for o, e in zip(out, reference.dfa_project(error, feedback, acts, kinds, slopes, [4, 6])):
        assert rel_err(o, e) <= 1e-12
    with pytest.raises(ValueError, match="widths"):
        ops.dfa_project(error, feedback, acts, kinds, slopes)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    widths = [5, 3, 2]
    error, feedback, acts, kinds, slopes = make_case(
        4, 3, widths, [A.RELU, A.IDENTITY, A.SIGMOID], torch.float32, device
    )
    out = [torch.empty(4, w, device=device) for w in widths]
    torch.library.opcheck(kernels().dfa_project.default, (error, feedback, acts, kinds, slopes, out))


def test_torch_compile_fullgraph():
    lib = kernels()  # resolved outside the compiled function
    widths = [5, 3]
    error, feedback, acts, kinds, slopes = make_case(4, 3, widths, [A.RELU, A.TANH], torch.float32, "cpu")

    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(error, feedback, h0, h1, out0, out1):
        lib.dfa_project(error, feedback, [h0, h1], kinds, slopes, [out0, out1])
        return out0.sum() + out1.sum()

    out = [torch.empty(4, w) for w in widths]
    total = step(error, feedback, *acts, *out)
    expected = reference.dfa_project(error, feedback, acts, kinds, slopes)
    assert torch.allclose(total, sum(e.sum() for e in expected), rtol=1e-5)
    for o, e in zip(out, expected):
        assert rel_err(o, e) <= 1e-5


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_cpu(device, dtype):
    widths = [300, 7, 1025]
    error, feedback, acts, kinds, slopes = make_case(257, 10, widths, [A.RELU, A.LEAKY_RELU, A.TANH], dtype, "cpu")
    with cpu_kernels():
        cpu = ops.dfa_project(error, feedback, acts, kinds, slopes)
    gpu = ops.dfa_project(error.to(device), feedback.to(device), [a.to(device) for a in acts], kinds, slopes)
    for c, g in zip(cpu, gpu):
        assert rel_err(g.cpu(), c) <= TOLERANCE[dtype]


@pytest.mark.parametrize("device", KERNEL_DEVICES)
def test_cuda_large_batch_uses_grid_stride(device):
    """More row tiles than a grid's y dimension holds (65,535 on a GPU; a
    lowered cap on the emulation)."""
    batch = grid_cap(device) * 32 * 2 + 77
    widths = [3, 130]
    error, feedback, acts, kinds, slopes = make_case(batch, 2, widths, [A.RELU, A.TANH], torch.float32, device)
    out = [poisoned((batch, w), torch.float32, device) for w in widths]
    kernels().dfa_project(error, feedback, acts, kinds, slopes, out)
    expected = reference.dfa_project(error, feedback, acts, kinds, slopes)
    for o, e in zip(out, expected):
        assert rel_err(o, e) <= 1e-5


# Bad input: a clear error that names the argument, never a crash.


def bad_call(**overrides):
    error, feedback, acts, kinds, slopes = make_case(4, 3, [5, 2], [A.RELU, A.TANH], torch.float64, "cpu")
    args = dict(
        error=error,
        feedback=feedback,
        activations=acts,
        kinds=kinds,
        slopes=slopes,
        out=[torch.empty(4, 5, dtype=torch.float64), torch.empty(4, 2, dtype=torch.float64)],
    )
    args.update(overrides)
    kernels().dfa_project(
        args["error"], args["feedback"], args["activations"], args["kinds"], args["slopes"], args["out"]
    )


F64 = dict(dtype=torch.float64)


@pytest.mark.parametrize(
    "overrides,exc,match",
    [
        (dict(error=torch.randn(4, 3, 1, **F64)), ValueError, "error must be 2-D"),
        (dict(error=torch.ones(4, 3, dtype=torch.int64)), TypeError, "error must be float32"),
        (dict(feedback=torch.randn(3, 7)), TypeError, "feedback must have the dtype of error"),
        (dict(feedback=torch.randn(4, 7, **F64)), ValueError, "feedback must have 3 rows"),
        (dict(feedback=torch.randn(3, 8, **F64)), ValueError, "feedback has 8 columns"),
        (dict(kinds=[2]), ValueError, "one entry per layer"),
        (dict(slopes=[0.0, 0.0, 0.0]), ValueError, "one entry per layer"),
        (dict(kinds=[2, 9]), ValueError, r"kinds\[1\] = 9"),
        (dict(activations=[None, torch.rand(4, 2, **F64)]), ValueError, r"activations\[0\] is None"),
        (dict(activations=[torch.rand(4, 6, **F64), torch.rand(4, 2, **F64)]), ValueError, r"activations\[0\] must have the shape"),
        (dict(activations=[torch.rand(4, 5), torch.rand(4, 2, **F64)]), TypeError, r"activations\[0\] must have the dtype"),
        (dict(out=[torch.empty(4, 5, **F64), torch.empty(3, 2, **F64)]), ValueError, r"out\[1\] must have 4 rows"),
        (dict(out=[torch.empty(4, 5, **F64), torch.empty(4, 2)]), TypeError, r"out\[1\] must have the dtype"),
        (dict(out=[torch.empty(5, 4, **F64).t(), torch.empty(4, 2, **F64)]), ValueError, r"out\[0\] must have unit stride"),
        (dict(out=[torch.empty(4, 5, 1, **F64), torch.empty(4, 2, **F64)]), ValueError, r"out\[0\] must be 2-D"),
    ],
)
def test_bad_input_names_the_argument(overrides, exc, match):
    with pytest.raises(exc, match=match):
        bad_call(**overrides)


@pytest.mark.cuda
def test_device_mismatch_names_the_argument():
    error, feedback, acts, kinds, slopes = make_case(4, 3, [5], [A.RELU], torch.float32, "cuda")
    with pytest.raises(RuntimeError, match="feedback must be on the device of error"):
        kernels().dfa_project(error, feedback.cpu(), acts, kinds, slopes, [torch.empty(4, 5, device="cuda")])
