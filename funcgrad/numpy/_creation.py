"""Array creation. Constant arrays are plain NumPy arrays (under a trace they become
constants of the jaxpr); functions of traced values (``zeros_like(x)``, ``tril(x)``,
``linspace`` with traced endpoints) are traced."""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..core import Tracer
from ..primitives import elementwise as ew, structural as st
from . import _ufuncs as uf
from ._array import astype, normalize_axis, operand, promote_inexact, tracing, value


def zeros(shape, dtype=float):
    return np.zeros(shape, dtype)


def ones(shape, dtype=float):
    return np.ones(shape, dtype)


def empty(shape, dtype=float):
    return np.zeros(shape, dtype)  # never uninitialized: results must not depend on garbage


def full(shape, fill_value, dtype=None):
    if type(fill_value) is Tracer:
        dtype = dtypes.canonicalize_dtype(dtype) if dtype is not None else fill_value.dtype
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return st.broadcast_to(ew.convert_element_type(fill_value, dtype), shape)
    return np.full(shape, fill_value, dtype)


def _like(a, fill, dtype, shape):
    if type(a) is not Tracer:
        return np.full(np.shape(a) if shape is None else shape, fill,
                       dtype=dtype if dtype is not None else np.result_type(a))
    dt = dtypes.canonicalize_dtype(dtype) if dtype is not None else a.dtype
    return st.full(a.shape if shape is None else shape, fill, dt) if type(fill) is not Tracer else \
        full(a.shape if shape is None else shape, fill, dt)


def zeros_like(a, dtype=None, shape=None):
    return _like(a, 0, dtype, shape)


def ones_like(a, dtype=None, shape=None):
    return _like(a, 1, dtype, shape)


def empty_like(a, dtype=None, shape=None):
    return _like(a, 0, dtype, shape)


def full_like(a, fill_value, dtype=None, shape=None):
    return _like(a, fill_value, dtype, shape)


def arange(start, stop=None, step=None, dtype=None):
    start, stop, step = (value(v) for v in (start, stop, step))
    return np.arange(start, stop, step, dtype=dtype) if stop is not None or step is not None else \
        np.arange(start, dtype=dtype)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    if type(start) is not Tracer and type(stop) is not Tracer:
        return np.linspace(start, stop, num, endpoint, retstep, dtype, axis)
    start, stop = promote_inexact(start, stop)
    div = (num - 1) if endpoint else num
    step = uf.true_divide(uf.subtract(stop, start), div) if div > 0 else uf.subtract(stop, start)
    shape = core.get_aval(start).shape
    steps = st.broadcasted_iota(core.get_aval(start).dtype, (num,) + shape, 0)
    out = uf.add(st.broadcast_to(start, (num,) + shape), uf.multiply(steps, step))
    if endpoint and num > 1:
        from ._indexing import index_update_last
        out = index_update_last(out, stop)
    if axis != 0:
        from ._shape import moveaxis
        out = moveaxis(out, 0, axis)
    if dtype is not None:
        out = astype(out, dtype)
    return (out, step) if retstep else out


def logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    if type(start) is not Tracer and type(stop) is not Tracer:
        return np.logspace(start, stop, num, endpoint, base, dtype, axis)
    y = linspace(start, stop, num, endpoint, axis=axis)
    out = uf.power(base, y)
    return astype(out, dtype) if dtype is not None else out


def eye(N, M=None, k=0, dtype=float):
    return np.eye(N, M, k, dtype=dtype)


def identity(n, dtype=float):
    return np.identity(n, dtype)


def tri(N, M=None, k=0, dtype=float):
    return np.tri(N, M, k, dtype)


def _tri_mask(a, k, lower):
    s = core.get_aval(a).shape
    if len(s) < 2:
        raise ValueError("tril/triu need an array of rank >= 2")
    mask = np.tri(s[-2], s[-1], k if lower else k - 1, dtype=bool)
    return mask if lower else ~mask


def tril(m, k=0):
    if not tracing():
        return np.tril(m, k)
    m = operand(m)
    return ew.select(st.broadcast_to(_tri_mask(m, k, True), core.get_aval(m).shape), m, ew.zeros_like(m))


def triu(m, k=0):
    if not tracing():
        return np.triu(m, k)
    m = operand(m)
    return ew.select(st.broadcast_to(_tri_mask(m, k, False), core.get_aval(m).shape), m, ew.zeros_like(m))


def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    if not tracing():
        return np.meshgrid(*xi, copy=copy, sparse=sparse, indexing=indexing)
    xi = [operand(x) for x in xi]
    n = len(xi)
    sizes = [core.get_aval(x).size for x in xi]
    if indexing == "xy" and n >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for i, x in enumerate(xi):
        pos = i
        if indexing == "xy" and n >= 2 and i < 2:
            pos = 1 - i
        shape = [1] * n
        shape[pos] = core.get_aval(x).size
        x = st.reshape(x, tuple(shape))
        out.append(x if sparse else st.broadcast_to(x, tuple(sizes)))
    return out


def indices(dimensions, dtype=int, sparse=False):
    return np.indices(dimensions, dtype, sparse)


def diagonal(a, offset=0, axis1=0, axis2=1):
    if not tracing():
        return np.diagonal(a, offset, axis1, axis2)
    a = operand(a)
    s = core.get_aval(a).shape
    ax1, ax2 = normalize_axis(axis1, len(s)), normalize_axis(axis2, len(s))
    from ._shape import moveaxis
    a = moveaxis(a, (ax1, ax2), (-2, -1))
    n, m = core.get_aval(a).shape[-2:]
    rows = np.arange(max(-offset, 0), min(n, m - offset)) if offset < m else np.arange(0)
    cols = rows + offset
    from ._indexing import getitem
    return getitem(a, (Ellipsis, rows, cols))


def diag(v, k=0):
    if not tracing():
        return np.diag(v, k)
    v = operand(v)
    s = core.get_aval(v).shape
    if len(s) == 2:
        return diagonal(v, k)
    if len(s) != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = s[0] + abs(k)
    padded = st.pad(v, np.zeros((), core.get_aval(v).dtype), [(0, abs(k), 0)])
    spread = st.broadcast_in_dim(padded, (n, n), (0,) if k >= 0 else (1,))
    return ew.select(np.eye(n, n, k, dtype=bool), spread, ew.zeros_like(spread))


def trace(a, offset=0, axis1=0, axis2=1, dtype=None):
    if not tracing():
        return np.trace(a, offset, axis1, axis2, dtype)
    from ._reductions import sum
    return sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)
