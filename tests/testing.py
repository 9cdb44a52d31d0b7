"""What the tests share: devices, dtypes with their tolerances, error measures."""

import pytest
import torch

# Where a test runs an op: "cpu" (the CPU kernels), "cuda" (a GPU), and the
# CUDA kernels on the host emulation of CUDA: CPU tensors (so the value seen
# by the test is "cpu") with the marker `emulated`, under which conftest.py
# routes every localgrad.ops call to torch.ops.localgrad_emulated.
CUDA = pytest.param("cuda", marks=pytest.mark.cuda, id="cuda")
EMULATED = pytest.param("cpu", marks=pytest.mark.emulated, id="emulated")
DEVICES = ["cpu", CUDA, EMULATED]
# Where the CUDA kernels run: a GPU, or the emulation.
KERNEL_DEVICES = [CUDA, EMULATED]

# Layered nets (batch, widths n_0..n_L) for the ops that run a whole stack of
# layers: tiny, one layer, an empty batch, odd widths, a width-1 layer, four
# layers, wider than a warp with a batch over one CUDA tile.
LAYERED_SHAPES = [
    (1, [1, 1]),
    (3, [4, 2]),
    (0, [5, 3, 2]),
    (5, [9, 13, 6]),
    (7, [6, 1, 5, 3]),
    (6, [20, 31, 17, 5, 10]),
    (33, [40, 70, 45, 10]),
]


def cpu_kernels():
    """The CPU kernels, also inside an emulated test: for the side of a
    CUDA-vs-CPU comparison that must not be emulated."""
    from localgrad import ops

    return ops.emulated(False)


def is_emulated(device) -> bool:
    """True inside an emulated test (its device is "cpu", its ops emulated)."""
    from localgrad.ops._common import _emulating

    return device == "cpu" and _emulating[0]


def grid_cap(device, cap: int = 3) -> int:
    """What a grid-stride test must exceed: on the emulation, lowers the device
    model's grid limits (y and z, and the launchers' own caps) to `cap`, so a
    few blocks reach the loop; on a GPU, the real 65,535."""
    if not is_emulated(device):
        return 65_535
    from localgrad._extension import load_emulation

    load_emulation().set_device_model({"max_grid_dim": (2**31 - 1, cap, cap), "launcher_grid_cap": cap})
    return cap


def kernels():
    """torch.ops.localgrad_emulated inside an emulated test, else
    torch.ops.localgrad: for tests that call the raw ops."""
    from localgrad.ops._common import compiled_ops

    return compiled_ops()

# Max relative error (max |a - b| / max |b|) allowed against a float64 oracle.
# Half types are judged by `low_precision_bound`, not a fixed number.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}
FLOAT_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|, in float64; 0 for empty tensors."""
    if expected.numel() == 0:
        return 0.0
    a, e = actual.double(), expected.double()
    return ((a - e).abs().max() / e.abs().max().clamp_min(1e-300)).item()


def low_precision_bound(torch_result: torch.Tensor, oracle: torch.Tensor) -> float:
    """The error PyTorch itself makes computing the same thing in a half type,
    doubled, plus one unit of rounding: what a fused kernel may not exceed."""
    eps = torch.finfo(torch_result.dtype).eps
    return 2 * rel_err(torch_result, oracle) + eps


def poisoned(shape, dtype, device) -> torch.Tensor:
    """An output buffer full of NaN, so that any element left unwritten fails."""
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def assert_resume_is_exact(model, make_other, batches, split, lr=0.05):
    """Trains `model` (SGD with momentum, cross-entropy) on all `batches`,
    saving model and optimizer state after `split` of them; then loads that
    state into `make_other()` (a model converted with other random feedback)
    and trains it on the rest. Both must end bit-for-bit equal."""
    import io

    import torch.nn.functional as F

    def train(m, opt, part):
        for x, y in part:
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    train(model, opt, batches[:split])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    train(model, opt, batches[split:])

    resumed = make_other()
    resumed_opt = torch.optim.SGD(resumed.parameters(), lr=lr, momentum=0.9)
    buffer.seek(0)
    state = torch.load(buffer)
    resumed.load_state_dict(state["model"])
    resumed_opt.load_state_dict(state["opt"])
    train(resumed, resumed_opt, batches[split:])
    for (key, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


def linear_classes(n_in: int, n_classes: int = 3, n: int = 512, seed: int = 0):
    """A task a small MLP learns in a few hundred steps: float64 x (n, n_in),
    y the argmax of a fixed random linear map of x."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_in, n_classes, generator=g, dtype=torch.float64)
    x = torch.randn(n, n_in, generator=g, dtype=torch.float64)
    return x, (x @ w).argmax(1)


def without_extension(monkeypatch) -> None:
    """The op wrappers as on a machine without localgrad._C: their one
    compiled-or-reference dispatch (localgrad.ops._common) sees no extension,
    and the fallback's once-per-process warning is due again."""
    import localgrad.ops._common as common

    monkeypatch.setattr(common, "has_extension", lambda: False)
    monkeypatch.setattr(common, "_warned_fallback", False)
