"""Data handling: seeded minibatch iteration, train/validation splits, and augmentation
functions that are pure (a PRNG key in, arrays out) so they can run under ``jit``/``vmap``."""
from __future__ import annotations

from typing import Iterator

import numpy as np

import funcgrad.numpy as fnp
from funcgrad import random


def check_lengths(x, y, where: str) -> None:
    """``x`` and ``y`` must hold the same number of examples."""
    if len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x)} examples but y has {len(y)}")


def train_val_split(x: np.ndarray, y: np.ndarray, val_fraction: float = 0.2, seed: int = 0,
                    stratify: bool = True):
    """Shuffle and split ``(x, y)`` into ``(x_train, y_train), (x_val, y_val)``.

    With ``stratify`` (integer labels), each class is split in the same proportion."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    check_lengths(x, y, "train_val_split")
    rng = np.random.default_rng(seed)
    if stratify and np.asarray(y).ndim == 1 and np.issubdtype(np.asarray(y).dtype, np.integer):
        val_idx = []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            val_idx.append(idx[:int(round(len(idx) * val_fraction))])
        val = np.sort(np.concatenate(val_idx))
        mask = np.ones(len(x), bool)
        mask[val] = False
        train = rng.permutation(np.flatnonzero(mask))
        val = rng.permutation(val)
    else:
        perm = rng.permutation(len(x))
        n_val = int(round(len(x) * val_fraction))
        val, train = perm[:n_val], perm[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def minibatches(x: np.ndarray, y: np.ndarray | None = None, batch_size: int = 64, *, shuffle: bool = True,
                seed: int = 0, epoch: int = 0, drop_last: bool = False) -> Iterator:
    """Yield ``(x_batch, y_batch)`` (or ``x_batch``) covering the data once.

    The order depends only on ``(seed, epoch)``, so resumed runs see the same batches."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if y is not None:
        check_lengths(x, y, "minibatches")
    n = len(x)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield (x[idx], y[idx]) if y is not None else x[idx]


def random_crop(key, images, padding: int):
    """Zero-pad NCHW ``images`` by ``padding`` and crop back at a random offset per image."""
    n, c, h, w = fnp.shape(images)
    padded = fnp.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ky, kx = random.split(key)
    oy = random.randint(ky, (n,), 0, 2 * padding + 1)
    ox = random.randint(kx, (n,), 0, 2 * padding + 1)
    rows = oy[:, None] + fnp.arange(h)[None, :]          # (n, h)
    cols = ox[:, None] + fnp.arange(w)[None, :]          # (n, w)
    batch = fnp.arange(n)[:, None, None, None]
    chan = fnp.arange(c)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip_horizontal(key, images, prob: float = 0.5):
    """Mirror each NCHW image left-right with probability ``prob``."""
    flip = random.bernoulli(key, prob, (fnp.shape(images)[0],))
    return fnp.where(flip[:, None, None, None], images[..., ::-1], images)
