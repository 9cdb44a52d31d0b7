"""The demo's Hebbian rows: unsupervised features + a linear probe trained by
SGD, and the honest baselines a reader needs to judge them (the same probe
on the raw pixels, and on random features of the same width and activation).

    softhebb      SoftHebb layer (Journe et al. 2023), unit-norm inputs,
                  temperature 1, triangle activation, one unsupervised epoch
    krotov        Krotov-Hopfield layer (2019), unit-norm inputs, ReLU^n
    oja           Sanger's GHA (the multi-unit Oja rule): the top principal
                  components, no non-linearity
    probe-raw     the probe on the pixels
    probe-random  the probe on the softhebb row's layer before it learns
"""

from __future__ import annotations

import time

import torch
from torch import nn

from localgrad import data
from localgrad.hebbian.layers import HebbianLinear
from localgrad.hebbian.training import features, fit_probe, learn

ROWS = ("softhebb", "krotov", "oja", "probe-raw", "probe-random")

# Unsupervised epochs, and the layer of each row (n_in, width given).
HEBBIAN_EPOCHS = {"softhebb": 1, "krotov": 5, "oja": 20}


def make_layer(row: str, n_in: int, width: int) -> HebbianLinear:
    if row in ("softhebb", "probe-random"):
        return HebbianLinear(n_in, width, "softhebb", temperature=1.0, activation="triangle", power=1.0,
                             normalize_input=True)
    if row == "krotov":
        return HebbianLinear(n_in, width, "krotov", normalize_input=True, activation="repu", power=3.0)
    if row == "oja":
        return HebbianLinear(n_in, min(width, 64, n_in), "sanger", lr=0.02)
    raise ValueError(f"hebbian rows: unknown row {row!r}; rows are {', '.join(ROWS)}")


def train_row(row: str, dataset: data.Dataset, width: int = 2000, probe_epochs: int = 30,
              batch_size: int = 64, seed: int = 0, probe_lr: float = 0.01, bar=None):
    """Returns (test accuracy, probe's last mean loss, seconds per probe
    epoch (the unsupervised learning included), curve per probe epoch)."""
    torch.manual_seed(seed)
    x_train, x_test = dataset.x_train.flatten(1), dataset.x_test.flatten(1)
    start = time.perf_counter()
    if row == "probe-raw":
        f_train, f_test = x_train, x_test
    else:
        net = nn.Sequential(make_layer(row, x_train.shape[1], width)).to(x_train.device)
        if row in HEBBIAN_EPOCHS:
            learn(net, x_train, epochs=HEBBIAN_EPOCHS[row], batch_size=batch_size, seed=seed)
        f_train, f_test = features(net, x_train), features(net, x_test)
    _, curve, loss = fit_probe(f_train, dataset.y_train, f_test, dataset.y_test, dataset.n_classes,
                               epochs=probe_epochs, batch_size=batch_size, lr=probe_lr, seed=seed)
    seconds = (time.perf_counter() - start) / max(probe_epochs, 1)
    if bar is not None:
        for _ in bar:
            pass
    return curve[-1], loss, seconds, curve
