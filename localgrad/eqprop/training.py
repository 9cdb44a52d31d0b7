"""Training loop of EqPropMLP for the demo's rule rows (`localgrad demo
--rules backprop,eqprop,eqprop-positive,eqprop-negative,chl --hidden 500`).

Same data, order, batch size and epochs as the other rows; the optimizer
differs because EqProp's estimates are not backprop's gradients: SGD with
momentum and per-layer learning rates halving towards the output, as in
Laborieux et al. 2021; centered nudging with beta 0.5, 30 free and 10 nudged
steps per phase, hard sigmoid, squared error on the output layer.
"""

from __future__ import annotations

import time

import torch

from localgrad import data
from localgrad.eqprop.mlp import EqPropMLP

# demo rule -> EqPropMLP options
RULES = {
    "eqprop": dict(nudging="centered"),
    "eqprop-positive": dict(nudging="positive"),
    "eqprop-negative": dict(nudging="negative"),
    "chl": dict(mode="chl"),
}
BASE_LR = 0.1
MOMENTUM = 0.9
BETA = 0.5
T_FREE, T_NUDGE = 30, 10


def make_model(rule: str, sizes: list[int], beta: float = BETA) -> EqPropMLP:
    # Deeper nets need longer relaxations: a signal crosses one layer per step.
    extra = 10 * (len(sizes) - 3)
    return EqPropMLP(sizes, beta=beta, t_free=T_FREE + extra, t_nudge=T_NUDGE + extra, **RULES[rule])


@torch.no_grad()
def accuracy(model: EqPropMLP, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    correct = sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in data.batches(x, y, batch_size, shuffle=False))
    return correct / max(len(y), 1)


def train(rule: str, dataset: data.Dataset, hidden: list[int], epochs: int, batch_size: int, seed: int,
          progress_bar=None, beta: float = BETA) -> tuple[float, float, float, list[float]]:
    """Returns (test accuracy, last epoch's mean loss, seconds per epoch, test
    accuracy after each epoch)."""
    torch.manual_seed(seed)
    sizes = [dataset.n_features, *hidden, dataset.n_classes]
    model = make_model(rule, sizes, beta).to(dataset.x_train.device)
    groups = [{"params": layer.parameters(), "lr": BASE_LR / 2**i} for i, layer in enumerate(model.layers)]
    optimizer = torch.optim.SGD(groups, momentum=MOMENTUM)
    order = torch.Generator().manual_seed(seed)
    curve, seconds, mean_loss = [], 0.0, 0.0
    for _ in progress_bar if progress_bar is not None else range(epochs):
        start = time.perf_counter()
        loss_sum, n_batches = 0.0, 0
        for xb, yb in data.batches(dataset.x_train, dataset.y_train, batch_size, generator=order):
            optimizer.zero_grad()
            loss, _ = model.eqprop_step(xb.flatten(1), yb)
            optimizer.step()
            loss_sum += loss.item()
            n_batches += 1
        if dataset.x_train.is_cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        mean_loss = loss_sum / max(n_batches, 1)
        curve.append(accuracy(model, dataset.x_test.flatten(1), dataset.y_test))
        if progress_bar is not None:
            progress_bar.set_postfix(loss=f"{mean_loss:.3f}", test_acc=f"{curve[-1]:.3f}")
    return curve[-1], mean_loss, seconds / max(epochs, 1), curve
