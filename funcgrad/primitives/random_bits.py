"""Counter-based random bits: the Threefry-2x32 hash (20 rounds) of Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3" (SC'11), built only from uint32 elementwise primitives
(add, xor, shifts, or). It is a composite function, not a primitive: jit fuses it, vmap
batches it, and grad sees integer operations with no tangents, with no special cases.
"""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from . import elementwise as ew, structural as st

ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
"""Rotation distances of Threefry-2x32: the first four rounds of every eight use row 0."""
KEY_PARITY = 0x1BD11BDA
"""The constant the third key word is derived with (Skein's key-schedule parity)."""


def _rotate_left(x, r: int):
    return ew.bitwise_or(ew.shift_left(x, r), ew.shift_right(x, 32 - r))


def threefry2x32(key: tuple, count: tuple) -> tuple:
    """Hash the counter words ``count = (x0, x1)`` under ``key = (k0, k1)`` (uint32 arrays
    that broadcast together); returns the two uint32 output words."""
    k0, k1 = key
    ks = (k0, k1, ew.bitwise_xor(ew.bitwise_xor(k0, k1), KEY_PARITY))
    x0, x1 = ew.add(count[0], ks[0]), ew.add(count[1], ks[1])
    for group in range(5):                  # 5 x 4 rounds, a key injection after each four
        for r in ROTATIONS[group % 2]:
            x0 = ew.add(x0, x1)
            x1 = ew.bitwise_xor(_rotate_left(x1, r), x0)
        x0 = ew.add(x0, ks[(group + 1) % 3])
        x1 = ew.add(ew.add(x1, ks[(group + 2) % 3]), group + 1)
    return x0, x1


def threefry_bits(k0, k1, num: int):
    """``num`` uint32 words: the hash of counters ``0 .. num-1`` (the first half of the
    counters in one word of each pair, the second half in the other)."""
    if num == 0:
        return st.full((0,), 0, dtypes.uint32)
    half = (num + 1) // 2
    counters = st.iota(dtypes.uint32, 2 * half)
    y0, y1 = threefry2x32((k0, k1), (st.slice(counters, (0,), (half,)),
                                     st.slice(counters, (half,), (2 * half,))))
    words = st.concatenate([y0, y1], 0)
    return st.slice(words, (0,), (num,)) if num != 2 * half else words


def key_words(key) -> tuple:
    """The two uint32 scalars of a raw key (a uint32 array of shape (2,))."""
    return tuple(st.reshape(st.slice(key, (i,), (i + 1,)), ()) for i in range(2))


def is_key_aval(aval: core.ShapedArray) -> bool:
    return aval.shape == (2,) and aval.dtype == np.dtype(np.uint32)
