"""Training helpers shared by the demo and every family's training code: one
minibatch loop (`fit`), test accuracy (`accuracy`) and the device choice
(`resolve_device`). Nothing here imports a family, so any family may import it."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from localgrad import data
from localgrad._extension import has_cuda_kernels


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of `x` whose arg-max output is `y`, in eval mode, no graph.
    model: an nn.Module, or a localgrad.Learner (its predict: the rule's own
    inference, e.g. EqProp's free phase)."""
    predict = getattr(model, "predict", model)
    model.eval()
    correct = sum(
        (predict(xb).argmax(1) == yb).sum().item() for xb, yb in data.batches(x, y, batch_size, shuffle=False)
    )
    model.train()
    return correct / max(len(y), 1)


def resolve_device(device: str) -> str:
    """"auto": the GPU when torch sees one and localgrad has its CUDA kernels."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() and has_cuda_kernels() else "cpu"
    return device


def fit(step, dataset: data.Dataset, batch_size: int, seed: int, epochs, evaluate) -> tuple[list[float], float, float]:
    """One training loop for every kind of row: `step(x, y)` trains on one
    minibatch and returns its loss; minibatches in the order `seed` draws
    (the same for every rule); `evaluate()` after each of the `epochs` (an
    iterable: a range, or a progress bar that shows loss and accuracy).
    Returns (test accuracy after each epoch, last epoch's mean loss, training
    seconds per epoch). Seconds per epoch leave out the first epoch when there
    are more: it pays one-time costs (allocator, thread pool, kernel caches)
    that would otherwise land on whichever rule runs first."""
    order = torch.Generator().manual_seed(seed)
    curve, epoch_seconds, mean_loss = [], [], 0.0
    for _ in epochs:
        start = time.perf_counter()
        loss_sum, n_batches = 0.0, 0
        for xb, yb in data.batches(dataset.x_train, dataset.y_train, batch_size, generator=order):
            loss_sum += step(xb, yb)
            n_batches += 1
        if dataset.x_train.is_cuda:
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - start)
        mean_loss = loss_sum / max(n_batches, 1)
        curve.append(evaluate())
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(loss=f"{mean_loss:.3f}", test_acc=f"{curve[-1]:.3f}")
    timed = epoch_seconds[1:] or epoch_seconds
    return curve, mean_loss, sum(timed) / max(len(timed), 1)


def one_hot_targets(y, batch: int, like: torch.Tensor, owner: str) -> torch.Tensor:
    """A learner's targets as (batch, n_out) rows of `like`'s dtype and
    device: integer class indices in [0, n_out) become one-hot rows, float
    targets must already be (batch, n_out). n_out is like.shape[0] (the
    output layer's weight). Errors start with `owner` and name y."""
    n_out = like.shape[0]
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{owner}: y must be a tensor, got {type(y).__name__}")
    if not torch.is_floating_point(y):
        check_labels(y, batch, n_out, owner)
        return F.one_hot(y.long(), n_out).to(like)
    if y.shape != (batch, n_out):
        raise ValueError(f"{owner}: float targets y must have shape ({batch}, {n_out}), got {tuple(y.shape)}")
    # A NaN target would spread through inference into every layer's .grad.
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{owner}: float targets y contain NaN or inf")
    return y.to(like).contiguous()


def check_labels(y: torch.Tensor, batch: int, n_out: int, owner: str) -> None:
    """Integer class indices y: shape (batch,), values in [0, n_out); the
    error starts with `owner` and names y."""
    if y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{owner}: class indices y must be an integer tensor, got {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"{owner}: class indices y must have shape ({batch},), got {tuple(y.shape)}")
    if batch and (int(y.min()) < 0 or int(y.max()) >= n_out):
        raise ValueError(f"{owner}: class indices y must lie in [0, {n_out}), got {int(y.min())}..{int(y.max())}")


def output_loss(out: torch.Tensor, y: torch.Tensor, loss: str, owner: str) -> torch.Tensor:
    """The batch-mean loss of a static rule's output: "ce" (class indices,
    or float class probabilities of out's shape) or "mse", 1/2 ||out - y||^2
    summed over outputs (class indices become one-hot rows)."""
    if out.dim() != 2:
        raise ValueError(f"{owner}: the model's output must be (batch, n_out), got shape {tuple(out.shape)}")
    if not y.is_floating_point():
        check_labels(y, out.shape[0], out.shape[1], owner)
        if loss == "ce":
            return F.cross_entropy(out, y.long())
        y = F.one_hot(y.long(), out.shape[1]).to(out)
    elif y.shape != out.shape:
        raise ValueError(f"{owner}: float targets y must have the output's shape {tuple(out.shape)}, got "
                         f"{tuple(y.shape)}")
    elif not bool(torch.isfinite(y).all()):
        raise ValueError(f"{owner}: targets y contain NaN or inf")
    if loss == "ce":
        return F.cross_entropy(out, y)
    return 0.5 * (out - y).pow(2).sum(1).mean()
