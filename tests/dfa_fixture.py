"""The DFA/BA computation pinned by tests/data/dfa_before_autograd.pt: small
models whose inputs, parameters and feedback are multiples of 1/8, so every
product and sum is exact in float32 and float64 and the gradients' bits do not
depend on the BLAS or the CPU. The file holds what localgrad computed before
the hidden gradients were delivered through autograd (commit fdf0e49)."""

import torch
from torch import nn

import localgrad


def _dyadic(shape, generator, dtype):
    return (torch.randint(-4, 5, shape, generator=generator).to(torch.float64) / 8).to(dtype)


def _mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.Identity(), nn.Linear(5, 3))


def _cnn():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


CASES = {
    "mlp-dfa": (_mlp, dict(rule="dfa"), (4, 6)),
    "mlp-dfa-output": (_mlp, dict(rule="dfa", inject="output"), (4, 6)),
    "mlp-ba-noderiv": (_mlp, dict(rule="ba", derivative=False), (4, 6)),
    "cnn-dfa": (_cnn, dict(rule="dfa"), (4, 1, 4, 4)),
}


def compute(name: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Gradients after two backward passes into the same .grad (a second
    batch accumulated onto the first)."""
    make, options, shape = CASES[name]
    g = torch.Generator().manual_seed(7)
    model = make().to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(_dyadic(p.shape, g, dtype))
    example = _dyadic(shape, g, dtype)
    model = localgrad.convert(model, seed=0, example_input=example, **options)
    with torch.no_grad():
        for _, buf in model.named_buffers():
            buf.copy_(_dyadic(buf.shape, g, dtype))
    for _ in range(2):
        x = _dyadic(shape, g, dtype)
        target = _dyadic((shape[0], 3), g, dtype)
        (0.5 * (model(x) - target).pow(2).sum()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def compute_all() -> dict[str, dict[str, torch.Tensor]]:
    return {f"{name}/{str(dtype)[6:]}": compute(name, dtype) for name in CASES for dtype in (torch.float64, torch.float32)}


if __name__ == "__main__":
    import sys
    import warnings

    warnings.simplefilter("ignore")
    torch.save(compute_all(), sys.argv[1])
