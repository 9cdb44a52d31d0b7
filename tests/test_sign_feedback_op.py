"""sign_feedback, the fused sign-concordant feedback op, against its reference."""

import numpy as np
import pytest
import torch
from testing import DEVICES, FLOAT_DTYPES, grid_cap, KERNEL_DEVICES, kernels, poisoned

import localgrad
from localgrad import ops, reference
from localgrad.reference import counter_rng

pytestmark = pytest.mark.skipif(not localgrad.has_extension(), reason="compiled extension not built")

SHAPES = [(1,), (0, 5), (7, 13), (64, 3, 5, 5), (1000, 784)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("random_magnitude", [False, True])
def test_matches_reference_bit_for_bit(device, dtype, shape, random_magnitude):
    g = torch.Generator().manual_seed(len(shape))
    weight = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    if weight.numel():
        weight.view(-1)[0] = 0  # sign(0) = 0
    out = poisoned(shape, dtype, device)
    kernels().sign_feedback(weight, 11, 3, 0.25, random_magnitude, out)
    expected = reference.sign_feedback(weight.cpu(), 11, 3, 0.25, random_magnitude)
    # Computed in float64 and rounded once on every backend: equal, not close.
    assert torch.equal(out.cpu(), expected)


def test_usf_is_scaled_sign():
    w = torch.tensor([[-2.0, 0.0, 3.0], [1e-30, -1e-30, 5.0]], dtype=torch.float64)
    out = ops.sign_feedback(w, scale=0.5)
    assert torch.equal(out, 0.5 * torch.sign(w))


def test_random_magnitude_is_uniform_and_sign_concordant():
    w = torch.randn(200, 500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = ops.sign_feedback(w, seed=1, counter=0, scale=2.0, random_magnitude=True)
    assert torch.equal(torch.sign(out), torch.sign(w))
    magnitude = out.abs()
    assert magnitude.max() < 2.0
    # |R| ~ U(0, 2): mean 1, variance 1/3; 1e5 draws, margins of > 10 standard errors.
    assert abs(magnitude.mean().item() - 1.0) < 0.02
    assert abs(magnitude.var().item() - 1 / 3) < 0.01
    # Deciles of u = |R| / 2 within 1 % of uniform.
    hist = torch.histc(magnitude / 2, bins=10, min=0, max=1) / magnitude.numel()
    assert (hist - 0.1).abs().max() < 0.01


def test_counter_and_seed_change_the_draw():
    w = torch.randn(50, 60, dtype=torch.float64)
    draw = lambda seed, counter: ops.sign_feedback(w, seed=seed, counter=counter, random_magnitude=True)  # noqa: E731
    a = draw(1, 0)
    assert torch.equal(a, draw(1, 0))
    b, c = draw(1, 1), draw(2, 0)
    assert not torch.equal(a, b) and not torch.equal(a, c)
    # Independent draws: correlation of magnitudes near 0.
    corr = torch.corrcoef(torch.stack([a.abs().flatten(), b.abs().flatten()]))[0, 1]
    assert abs(corr.item()) < 0.05


def test_rng_known_values():
    """SplitMix64's published first output for state 0, then the generator's
    own bits pinned, so a change to either implementation shows."""
    assert int(counter_rng._splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF
    assert [int(b) for b in counter_rng.bits(0, 0, np.arange(2, dtype=np.uint64))] == [
        0x238275BC38FCBE91,
        0x2F32A78496C67C60,
    ]
    out = ops.sign_feedback(torch.ones(4, dtype=torch.float64), seed=0, counter=0, random_magnitude=True)
    assert torch.equal(out, counter_rng.uniform(0, 0, 4))
    assert out[0].item() == (0x238275BC38FCBE91 >> 11) * 2.0**-53


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_weight(device):
    w = torch.randn(6, 9, dtype=torch.float64, device=device).t()
    out = torch.empty(9, 6, dtype=torch.float64, device=device)
    kernels().sign_feedback(w, 5, 7, 1.0, True, out)
    assert torch.equal(out.cpu(), reference.sign_feedback(w.cpu().contiguous(), 5, 7, 1.0, True))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    w = torch.randn(5, 4, device=device)
    out = torch.empty(5, 4, device=device)
    torch.library.opcheck(kernels().sign_feedback.default, (w, 1, 2, 0.5, True, out))


def test_torch_compile_fullgraph():
    @torch.compile(fullgraph=True, backend="aot_eager")
    def f(w, out):
        kernels().sign_feedback(w, 3, 4, 0.5, True, out)
        return out * 2

    w = torch.randn(7, 3)
    assert torch.equal(f(w, torch.empty(7, 3)), 2 * reference.sign_feedback(w, 3, 4, 0.5, True))


@pytest.mark.parametrize(
    "weight,out,scale,exc,match",
    [
        (torch.ones(3, dtype=torch.int64), torch.ones(3, dtype=torch.int64), 1.0, TypeError, "weight must be float32"),
        (torch.ones(3), torch.ones(3, dtype=torch.float64), 1.0, TypeError, "out must have the dtype of weight"),
        (torch.ones(3, 2), torch.ones(2, 3), 1.0, ValueError, "out must have the shape of weight"),
        (torch.ones(3, 2), torch.ones(2, 3).t(), 1.0, ValueError, "out must be contiguous"),
        (torch.ones(3), torch.ones(3), float("inf"), ValueError, "scale must be finite"),
    ],
)
def test_bad_input_names_the_argument(weight, out, scale, exc, match):
    with pytest.raises(exc, match=match):
        kernels().sign_feedback(weight, 0, 0, scale, True, out)


@pytest.mark.cuda
def test_device_mismatch():
    with pytest.raises(RuntimeError, match="out must be on the device of weight"):
        kernels().sign_feedback(torch.ones(3, device="cuda"), 0, 0, 1.0, True, torch.ones(3))


@pytest.mark.parametrize("device", KERNEL_DEVICES)
@pytest.mark.parametrize("random_magnitude", [False, True])
def test_grid_stride_past_the_grid_cap(device, random_magnitude):
    """More elements than the grid's blocks of 256 threads cover (65,535
    blocks on a GPU; 3 on the emulation, its cap lowered)."""
    n = grid_cap(device) * 256 * 2 + 17
    weight = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float32).to(device)
    out = poisoned((n,), torch.float32, device)
    kernels().sign_feedback(weight, 2, 9, 0.5, random_magnitude, out)
    assert torch.equal(out.cpu(), reference.sign_feedback(weight.cpu(), 2, 9, 0.5, random_magnitude))
