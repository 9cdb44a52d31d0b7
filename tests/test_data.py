"""The offline datasets: shapes, ranges, splits, determinism."""

import os

import numpy as np
import pytest
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


# --- Fashion-MNIST ------------------------------------------------------------

def write_idx(path, array, type_code=0x08, compress=True):
    """An IDX file as LeCun's format defines it, written independently of
    data.read_idx: magic (0, 0, type, ndim), big-endian uint32 dims, values."""
    import gzip
    import struct

    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


def fashion_files_present():
    try:
        data.fashion_mnist_dir()
        return True
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not fashion_files_present() and not os.environ.get("CI"),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); CI installs it")
def test_fashion_mnist_is_the_published_split():
    ds = data.fashion_mnist()
    check_split(ds, 60000, 10000, 784)
    # The published split is balanced: 6,000 and 1,000 images per class.
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    # The first images of each file, as Zalando's README and every loader show them: an ankle boot both times.
    assert ds.y_train[0] == 9 and ds.y_test[0] == 9
    assert ds.name == "fashion-mnist" and len(data.FASHION_MNIST_CLASSES) == 10
    small = data.fashion_mnist(n_train=100, n_test=10)
    assert torch.equal(small.x_train, ds.x_train[:100]) and torch.equal(small.y_test, ds.y_test[:10])


def fake_fashion_folder(folder, n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for key, name in data.FASHION_MNIST_FILES.items():
        write_idx(folder / name, arrays[key])
    return arrays


def test_fashion_mnist_reads_the_folder_localgrad_data_names(tmp_path, monkeypatch):
    arrays = fake_fashion_folder(tmp_path)
    monkeypatch.setenv("LOCALGRAD_DATA", str(tmp_path))
    ds = data.fashion_mnist()
    assert data.fashion_mnist_dir() == str(tmp_path)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)
    assert torch.equal(ds.x_train, torch.from_numpy(arrays["x_train"].reshape(12, 784).astype(np.float32)) / 255)
    assert ds.y_test.tolist() == arrays["y_test"].tolist() and ds.y_train.dtype == torch.int64
    with pytest.raises(ValueError, match="n_train must lie in"):
        data.fashion_mnist(n_train=13)
    with pytest.raises(TypeError, match="n_test must be an int"):
        data.fashion_mnist(n_test=2.0)


def test_fashion_mnist_without_the_files_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALGRAD_DATA", str(tmp_path))
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")  # one file of four is not enough
    with pytest.raises(FileNotFoundError) as info:
        data.fashion_mnist()
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "LOCALGRAD_DATA" in message
    for name in data.FASHION_MNIST_FILES.values():
        assert name in message


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D),
                                        (np.float64, 0x0E)])
def test_read_idx_round_trips_every_type(tmp_path, dtype, code, compress):
    array = (np.random.default_rng(1).standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, array, code, compress)
    back = data.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)


def test_read_idx_refuses_a_truncated_or_foreign_file(tmp_path):
    path = tmp_path / "cut.idx"
    write_idx(path, np.zeros((4, 3), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="holds 11 bytes of data, its header \\(4, 3\\) needs 12"):
        data.read_idx(path)
    (tmp_path / "png.idx").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "png.idx")
