"""Training loop of EqPropMLP for the demo's rule rows (`localgrad demo
--rules backprop,eqprop,eqprop-positive,eqprop-negative,chl --hidden 500`).

Same data, order, batch size and epochs as the other rows; the optimizer
differs because EqProp's estimates are not backprop's gradients: SGD with
momentum and per-layer learning rates halving towards the output, as in
Laborieux et al. 2021; centered nudging with beta 0.5, 30 free and 10 nudged
steps per phase, hard sigmoid, squared error on the output layer.
"""

from __future__ import annotations

import torch

from localgrad import data
from localgrad.training import accuracy, fit
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


def train(rule: str, dataset: data.Dataset, hidden: list[int], epochs: int, batch_size: int, seed: int,
          progress_bar=None, beta: float = BETA) -> tuple[float, float, float, list[float]]:
    """Returns (test accuracy, last epoch's mean loss, seconds per epoch, test
    accuracy after each epoch)."""
    torch.manual_seed(seed)
    sizes = [dataset.n_features, *hidden, dataset.n_classes]
    model = make_model(rule, sizes, beta).to(dataset.x_train.device)
    groups = [{"params": layer.parameters(), "lr": BASE_LR / 2**i} for i, layer in enumerate(model.layers)]
    optimizer = torch.optim.SGD(groups, momentum=MOMENTUM)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss, _ = model.eqprop_step(xb.flatten(1), yb)
        optimizer.step()
        return loss.item()

    curve, mean_loss, seconds = fit(step, dataset, batch_size, seed,
                                    progress_bar if progress_bar is not None else range(epochs),
                                    lambda: accuracy(model, dataset.x_test.flatten(1), dataset.y_test))
    return curve[-1], mean_loss, seconds, curve
