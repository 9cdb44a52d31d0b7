"""The offline datasets: shapes, ranges, splits, determinism."""

import torch

from localgrad import data


def check_split(ds, n_train, n_test, n_features):
    assert ds.x_train.shape == (n_train, n_features) and ds.x_test.shape == (n_test, n_features)
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.n_classes == 10 and ds.n_features == n_features
    assert set(ds.y_train.tolist()) == set(range(10)) == set(ds.y_test.tolist())


def test_mnist_subset():
    ds = data.mnist_subset()
    check_split(ds, 4000, 1000, 784)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert torch.bincount(ds.y_test).tolist() == [100] * 10  # stratified
    again = data.mnist_subset()
    assert torch.equal(ds.x_train, again.x_train)  # deterministic
    other = data.mnist_subset(seed=1)
    assert not torch.equal(ds.y_train, other.y_train)
    # No digit is in both splits.
    train_rows = {tuple(r) for r in ds.x_train[:, ::7].tolist()}
    assert sum(tuple(r) in train_rows for r in ds.x_test[:, ::7].tolist()) < 5


def test_digits():
    ds = data.digits()
    check_split(ds, 1797 - 360, 360, 64)
    assert ds.x_train.max() <= 1.0


def test_mnist1d():
    ds = data.mnist1d()
    check_split(ds, 4000, 1000, 40)


def test_batches_cover_every_sample_once():
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    seen = torch.cat([yb for _, yb in data.batches(x, y, 3, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    ordered = torch.cat([yb for _, yb in data.batches(x, y, 4, shuffle=False)])
    assert ordered.tolist() == list(range(10))
