"""NumPy indexing on traced arrays (x[idx]) -- basic indexing for now.

Basic indices (ints, slices, None, Ellipsis) become static slice/rev/reshape primitives.
"""
from __future__ import annotations

import numpy as np

from .. import core
from ..core import Tracer
from ..primitives import structural as st
from ._array import operand


def _expand_ellipsis(idx: tuple, ndim: int) -> tuple:
    n_ell = sum(1 for i in idx if i is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if used > ndim:
        raise IndexError(f"too many indices for array: array is {ndim}-dimensional, but {used} were indexed")
    if n_ell:
        k = idx.index(Ellipsis)
        return idx[:k] + (slice(None),) * (ndim - used) + idx[k + 1:]
    return idx + (slice(None),) * (ndim - used)


def getitem(x, idx):
    x = operand(x)
    if not isinstance(idx, tuple):
        idx = (idx,)
    shape = core.get_aval(x).shape
    idx = _expand_ellipsis(idx, len(shape))
    starts, limits, strides, flips, out_shape = [], [], [], [], []
    axis = 0
    for item in idx:
        if item is None:
            out_shape.append(1)
            continue
        n = shape[axis]
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            i = int(item)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            i %= n
            starts.append(i), limits.append(i + 1), strides.append(1)
        elif isinstance(item, slice):
            start, stop, step = item.indices(n)
            if step < 0:
                flips.append(axis)
                # x[start:stop:step] == rev(x)[n-1-start : n-1-stop : -step]
                start, stop, step = n - 1 - start, n - 1 - stop, -step
            size = max(0, (stop - start + step - 1) // step)
            starts.append(start), limits.append(start + (size - 1) * step + 1 if size else start)
            strides.append(step)
            out_shape.append(size)
        else:
            raise NotImplementedError(f"advanced indexing with {type(item).__name__} is not supported yet")
        axis += 1
    if flips:
        x = st.rev(x, tuple(flips))
    x = st.slice(x, starts, limits, strides)
    return st.reshape(x, tuple(out_shape))
