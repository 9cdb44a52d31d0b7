"""The demo: one MLP, trained on real MNIST digits with several rules, same
initial weights, data order and budget for each; prints a comparison table."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

import localgrad
from localgrad import data


@dataclass
class RuleResult:
    rule: str
    test_accuracy: float
    train_loss: float
    seconds_per_epoch: float
    curve: list[float]  # test accuracy after each epoch


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = sum(
        (model(xb).argmax(1) == yb).sum().item() for xb, yb in data.batches(x, y, batch_size, shuffle=False)
    )
    model.train()
    return correct / max(len(y), 1)


def train(
    rule: str,
    dataset: data.Dataset,
    hidden: list[int],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool = True,
) -> RuleResult:
    torch.manual_seed(seed)
    model = mlp([dataset.n_features, *hidden, dataset.n_classes]).to(dataset.x_train.device)
    localgrad.convert(model, rule=rule, seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(seed)
    curve, seconds, loss_sum, n_batches = [], 0.0, 0.0, 0
    bar = tqdm(range(epochs), desc=f"{rule:>9}", disable=not progress, leave=True, dynamic_ncols=True)
    for _ in bar:
        start = time.perf_counter()
        loss_sum, n_batches = 0.0, 0
        for xb, yb in data.batches(dataset.x_train, dataset.y_train, batch_size, generator=order):
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            n_batches += 1
        if dataset.x_train.is_cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        curve.append(accuracy(model, dataset.x_test, dataset.y_test))
        bar.set_postfix(loss=f"{loss_sum / max(n_batches, 1):.3f}", test_acc=f"{curve[-1]:.3f}")
    return RuleResult(rule, curve[-1], loss_sum / max(n_batches, 1), seconds / max(epochs, 1), curve)


def format_table(results: list[RuleResult], dataset: data.Dataset) -> str:
    baseline = next((r for r in results if r.rule == "backprop"), None)
    lines = [
        f"{dataset.name}: {len(dataset.y_train)} train / {len(dataset.y_test)} test",
        f"{'rule':<10} {'test acc':>9} {'vs backprop':>12} {'train loss':>11} {'s / epoch':>10}",
    ]
    for r in results:
        delta = "" if baseline is None else f"{100 * (r.test_accuracy - baseline.test_accuracy):+.1f} pt"
        lines.append(
            f"{r.rule:<10} {100 * r.test_accuracy:>8.1f}% {delta:>12} {r.train_loss:>11.4f} {r.seconds_per_epoch:>10.3f}"
        )
    return "\n".join(lines)


def run(
    rules=("backprop", "dfa"),
    dataset_name: str = "mnist",
    hidden=(256, 256),
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> list[RuleResult]:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and localgrad.has_cuda_kernels() else "cpu"
    loaders = {"mnist": data.mnist_subset, "digits": data.digits}
    if dataset_name not in loaders:
        raise ValueError(f"demo: dataset must be one of {', '.join(loaders)}, got {dataset_name!r}")
    dataset = loaders[dataset_name](seed=seed).to(device)
    results = [train(rule, dataset, list(hidden), epochs, batch_size, lr, seed, progress) for rule in rules]
    print(format_table(results, dataset))
    return results
