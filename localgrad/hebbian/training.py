"""Unsupervised Hebbian training of a stack of layers (greedy, layer by layer,
or all at once) and the linear probe trained by SGD on the frozen features."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from localgrad import data
from localgrad.hebbian.layers import _HebbianBase
from localgrad._checks import as_bool, as_int


def hebbian_layers(model: nn.Module) -> list[_HebbianBase]:
    return [m for m in model.modules() if isinstance(m, _HebbianBase)]


def learn(model: nn.Sequential, x: torch.Tensor, epochs: int = 1, batch_size: int = 64, greedy: bool = True,
          optimizer_factory=None, seed: int = 0) -> float:
    """Trains every Hebbian layer of `model` on `x` without labels. Greedy:
    layer 1 for `epochs`, then layer 2 on layer 1's frozen output, ...; else
    all layers learn in every forward pass. Each step is forward (the layers
    write -rate dW into .grad) and optimizer.step(); the optimizer
    (`optimizer_factory(params)`, default SGD lr 1: W += rate dW) is free.
    Returns the seconds spent."""
    op = "hebbian.learn"
    epochs = as_int(epochs, op, "epochs", minimum=0)
    batch_size = as_int(batch_size, op, "batch_size", minimum=1)
    greedy = as_bool(greedy, op, "greedy")
    seed = as_int(seed, op, "seed")
    layers = hebbian_layers(model)
    if not layers:
        raise ValueError(f"{op}: the model has no Hebbian layer")
    factory = optimizer_factory or (lambda params: torch.optim.SGD(params, lr=1.0))
    order = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    stages = [[layer] for layer in layers] if greedy else [layers]
    for stage in stages:
        for layer in layers:
            layer.learning = layer in stage
        opt = factory([layer.weight for layer in stage])
        # Greedy: run the model only up to the layer that learns.
        last = max(_position(model, layer) for layer in stage)
        prefix = nn.Sequential(*list(model.children())[: last + 1]) if isinstance(model, nn.Sequential) else model
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=order).to(x.device).split(batch_size):
                opt.zero_grad(set_to_none=True)
                with torch.no_grad():
                    prefix(x[idx])
                opt.step()
    for layer in layers:
        layer.learning = False
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _position(model: nn.Module, layer: nn.Module) -> int:
    if not isinstance(model, nn.Sequential):
        return 0
    for i, child in enumerate(model.children()):
        if child is layer or any(m is layer for m in child.modules()):
            return i
    raise ValueError("hebbian.learn: layer not found in the model")


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The frozen model's output for `x`, flattened (eval mode: no learning)."""
    was = model.training
    model.eval()
    # An empty x still goes through the model, so that the result has the
    # model's feature width: (0, 0) would fail a probe built on the width.
    out = torch.cat([model(xb).flatten(1) for xb in x.split(batch_size)]) if len(x) else model(x).flatten(1)
    model.train(was)
    return out


class LinearProbe(nn.Module):
    """A linear classifier on standardised features (mean and std of the
    training features, fixed when fitted)."""

    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear((f - self.mean) / self.std)


def fit_probe(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor,
              n_classes: int, epochs: int = 30, batch_size: int = 64, lr: float = 0.01, momentum: float = 0.9,
              weight_decay: float = 1e-4, seed: int = 0) -> tuple[LinearProbe, list[float], float]:
    """Trains a LinearProbe by SGD (momentum) on cross-entropy. Returns
    (probe, test accuracy after each epoch, last epoch's mean loss)."""
    torch.manual_seed(seed)
    probe = LinearProbe(f_train.shape[1], n_classes).to(f_train.device)
    probe.mean.copy_(f_train.mean(0))
    probe.std.copy_(f_train.std(0).clamp_min(1e-6 * max(f_train.std(0).max().item(), 1e-30)) + 1e-8)
    opt = torch.optim.SGD(probe.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(seed)
    curve, loss_mean = [], 0.0
    for _ in range(epochs):
        total, n = 0.0, 0
        for fb, yb in data.batches(f_train, y_train, batch_size, generator=order):
            opt.zero_grad()
            loss = F.cross_entropy(probe(fb), yb)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        loss_mean = total / max(n, 1)
        with torch.no_grad():
            curve.append((probe(f_test).argmax(1) == y_test).float().mean().item())
    return probe, curve, loss_mean
