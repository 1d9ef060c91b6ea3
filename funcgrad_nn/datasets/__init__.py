"""Datasets: the bundled handwritten digits, and loaders for MNIST and CIFAR-10 files in a
local directory (nothing is downloaded).

Images are returned as float32 NCHW arrays scaled to [0, 1] and integer labels (int32).
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
from importlib import resources

import numpy as np

from ..data import train_val_split


class DatasetError(ValueError):
    """A dataset directory or file is missing or malformed."""


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 8x8 digits (1797 images, UCI, CC BY 4.0): ``(x (N,1,8,8), y (N,))``,
    pixel counts 0..16 scaled to [0, 1]."""
    with resources.files(__package__).joinpath("digits.csv.gz").open("rb") as f:
        data = np.loadtxt(gzip.open(f), delimiter=",", dtype=np.int64)
    x = (data[:, :64] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, data[:, 64].astype(np.int32)


def digits_splits(seed: int = 0):
    """The bundled digits as ``(train, val, test)`` pairs: a fixed, stratified 20% test split
    (the same for every seed), then 10% of the rest for validation, drawn with ``seed``."""
    x, y = load_digits()
    rest, test = train_val_split(x, y, 0.2, seed=0)
    train, val = train_val_split(*rest, 0.1, seed=seed)
    return train, val, test


# ---------------------------------------------------------------------------------------------
# MNIST: the four idx files (optionally gzipped)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an idx file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated idx header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise DatasetError(f"{path}: expected {count} values of {dtype} for shape {shape}, "
                           f"found {len(raw) - header} bytes")
    return np.frombuffer(raw, dtype, count, header).reshape(shape)


def _find(directory: str, names: list[str]) -> str:
    for name in names:
        for candidate in (name, name + ".gz"):
            p = os.path.join(directory, candidate)
            if os.path.exists(p):
                return p
    raise DatasetError(f"none of {names} (or .gz) found in {directory}")


def load_mnist(directory: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))`` from the MNIST idx files in ``directory``."""
    if not os.path.isdir(directory):
        raise DatasetError(f"MNIST directory not found: {directory}")
    parts = []
    for split in ("train", "t10k"):
        images = read_idx(_find(directory, [f"{split}-images-idx3-ubyte", f"{split}-images.idx3-ubyte"]))
        labels = read_idx(_find(directory, [f"{split}-labels-idx1-ubyte", f"{split}-labels.idx1-ubyte"]))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"MNIST {split}: images {images.shape} and labels {labels.shape} do not match")
        parts.append(((images[:, None] / 255.0).astype(np.float32), labels.astype(np.int32)))
    return parts[0], parts[1]


# ---------------------------------------------------------------------------------------------
# CIFAR-10: the binary version (data_batch_*.bin) or the python version (data_batch_*)


def _read_cifar_bin(path: str) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, np.uint8)
    if raw.size % 3073:
        raise DatasetError(f"{path}: size {raw.size} is not a multiple of 3073 (label + 3x32x32)")
    rows = raw.reshape(-1, 3073)
    return rows[:, 1:].reshape(-1, 3, 32, 32), rows[:, 0].astype(np.int32)


class _SafeUnpickler(pickle.Unpickler):
    """Only what CIFAR-10's python batches contain: builtins and numpy array reconstruction.
    Anything else (which could execute code) is refused."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DatasetError(f"refusing to load {module}.{name} from a CIFAR-10 batch file")


def _read_cifar_py(path: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        try:
            d = _SafeUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"{path} is not a CIFAR-10 python batch: {e}") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DatasetError(f"{path} has no data/labels entries")
    data = np.asarray(d[b"data"], np.uint8)
    labels = np.asarray(d[b"labels"], np.int32)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DatasetError(f"{path}: unexpected data shape {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(directory: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))`` from a CIFAR-10 directory (binary or python
    version; ``cifar-10-batches-bin``/``-py`` subdirectories are found too)."""
    if not os.path.isdir(directory):
        raise DatasetError(f"CIFAR-10 directory not found: {directory}")
    for sub in ("", "cifar-10-batches-bin", "cifar-10-batches-py"):
        d = os.path.join(directory, sub)
        if os.path.exists(os.path.join(d, "data_batch_1.bin")):
            reader, suffix = _read_cifar_bin, ".bin"
            break
        if os.path.exists(os.path.join(d, "data_batch_1")):
            reader, suffix = _read_cifar_py, ""
            break
    else:
        raise DatasetError(f"no CIFAR-10 batches (data_batch_1[.bin]) in {directory}")
    train = [reader(os.path.join(d, f"data_batch_{i}{suffix}")) for i in range(1, 6)
             if os.path.exists(os.path.join(d, f"data_batch_{i}{suffix}"))]
    test = reader(os.path.join(d, f"test_batch{suffix}")) if os.path.exists(os.path.join(d, f"test_batch{suffix}")) \
        else None
    if test is None:
        raise DatasetError(f"test_batch{suffix} not found in {d}")
    x_train = np.concatenate([t[0] for t in train]).astype(np.float32) / 255.0
    y_train = np.concatenate([t[1] for t in train])
    return (x_train, y_train), (test[0].astype(np.float32) / 255.0, test[1])


DATASETS = ("digits", "mnist", "cifar10")
