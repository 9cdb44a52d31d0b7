"""What the tests share: devices, dtypes with their tolerances, error measures."""

import pytest
import torch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

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
