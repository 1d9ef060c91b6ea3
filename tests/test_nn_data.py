"""Datasets (bundled digits; MNIST and CIFAR-10 files written here) and data utilities."""
import gzip
import pickle

import numpy as np
import pytest

import funcgrad
from funcgrad import random
from funcgrad_nn import data, datasets
from funcgrad_nn.datasets import DatasetError


def test_bundled_digits():
    x, y = datasets.load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    counts = np.bincount(y)
    assert len(counts) == 10 and counts.min() >= 174 and counts.max() <= 183


def _write_idx(path, arr, gz=False):
    code = {np.uint8: 0x08}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    (gzip.open if gz else open)(path, "wb").write(header + arr.tobytes())


def test_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("t10k", 3)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8), gz=True)
    (xtr, ytr), (xte, yte) = datasets.load_mnist(str(tmp_path))
    assert xtr.shape == (5, 1, 28, 28) and xte.shape == (3, 1, 28, 28)
    assert xtr.max() <= 1 and ytr.dtype == np.int32


def test_mnist_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        datasets.load_mnist(str(tmp_path / "missing"))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    with pytest.raises(DatasetError):
        datasets.load_mnist(str(tmp_path))


def test_cifar10_binary_and_python_batches(tmp_path):
    rng = np.random.default_rng(1)
    binary, py = tmp_path / "bin", tmp_path / "py"
    binary.mkdir(), py.mkdir()
    for name in ["data_batch_1", "data_batch_2", "test_batch"]:
        labels = rng.integers(0, 10, 4, dtype=np.uint8)
        pixels = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        np.concatenate([labels[:, None], pixels], 1).tofile(binary / f"{name}.bin")
        with open(py / name, "wb") as f:
            pickle.dump({b"data": pixels, b"labels": labels.tolist()}, f)
    for d in (binary, py):
        (xtr, ytr), (xte, yte) = datasets.load_cifar10(str(d))
        assert xtr.shape == (8, 3, 32, 32) and xte.shape == (4, 3, 32, 32) and ytr.shape == (8,)


def test_cifar10_python_batch_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    for name in ["data_batch_1", "test_batch"]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(DatasetError, match="refusing"):
        datasets.load_cifar10(str(tmp_path))


def test_train_val_split_is_stratified_and_seeded():
    x = np.arange(100)[:, None]
    y = np.repeat(np.arange(4), 25)
    (xt, yt), (xv, yv) = data.train_val_split(x, y, 0.2, seed=3)
    assert len(xv) == 20 and np.bincount(yv).tolist() == [5, 5, 5, 5]
    assert sorted(np.concatenate([xt, xv])[:, 0].tolist()) == list(range(100))
    (xt2, _), _ = data.train_val_split(x, y, 0.2, seed=3)
    np.testing.assert_array_equal(xt, xt2)


def test_minibatches_cover_data_once_in_a_seeded_order():
    x, y = np.arange(10), np.arange(10) * 2
    batches = list(data.minibatches(x, y, 4, seed=1, epoch=0))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate([b[0] for b in batches]).tolist()) == list(range(10))
    assert all((b[1] == 2 * b[0]).all() for b in batches)
    again = list(data.minibatches(x, y, 4, seed=1, epoch=0))
    assert all((a[0] == b[0]).all() for a, b in zip(batches, again))
    other = list(data.minibatches(x, y, 4, seed=1, epoch=1))
    assert any((a[0] != b[0]).any() for a, b in zip(batches, other))
    assert [len(b) for b in data.minibatches(x, None, 4, drop_last=True)] == [4, 4]


def test_random_crop_shifts_each_image_within_the_padding():
    x = np.arange(6 * 2 * 5 * 5, dtype=np.float32).reshape(6, 2, 5, 5) + 1
    out = data.random_crop(random.key(0), x, 2)
    jitted = funcgrad.jit(lambda k, v: data.random_crop(k, v, 2))(random.key(0), x)
    np.testing.assert_array_equal(jitted, out)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for i in range(6):
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(padded[i, :, dy:dy + 5, dx:dx + 5], out[i])]
        assert windows, f"image {i} is not a crop of its padded self"
        offsets.add(windows[0])
    assert len(offsets) > 1                                            # per-image offsets
    other = data.random_crop(random.key(1), x, 2)
    assert np.any(other != out)


def test_random_flip():
    x = np.random.default_rng(0).normal(size=(40, 1, 2, 3)).astype(np.float32)
    out = funcgrad.jit(lambda k, v: data.random_flip_horizontal(k, v))(random.key(0), x)
    flipped = [bool(np.array_equal(o, v[..., ::-1])) for o, v in zip(out, x)]
    kept = [bool(np.array_equal(o, v)) for o, v in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 30


def test_digits_splits_are_fixed_for_the_test_set():
    (xt, yt), (xv, yv), (xs, ys) = datasets.digits_splits(seed=0)
    assert (len(xt), len(xv), len(xs)) == (1295, 143, 359)
    _, _, (xs2, _) = datasets.digits_splits(seed=5)
    np.testing.assert_array_equal(xs, xs2)
    assert np.bincount(ys).min() >= 34
