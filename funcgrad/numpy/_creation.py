"""Array creation. Constant arrays are plain NumPy arrays (under a trace they become
constants of the jaxpr); functions of traced values (``zeros_like(x)``, ``tril(x)``,
``linspace`` with traced endpoints, ``full`` with a traced fill value) are traced."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..core import Tracer
from ..primitives import elementwise as ew, reduction as red, structural as st
from . import _ufuncs as uf
from ._array import cast_all, normalize_axis, operand, result_dtype, static, tracing, weak_operand


def _shape(shape) -> tuple[int, ...]:
    """A static shape (traced entries concretized) as a tuple of ints."""
    shape = static(shape, "a shape")
    if isinstance(shape, (list, tuple)) or np.ndim(shape):
        return tuple(int(static(s, "a shape")) for s in shape)
    return (int(shape),)


def zeros(shape, dtype=float, order="C"):
    return np.zeros(_shape(shape), dtype, order)


def ones(shape, dtype=float, order="C"):
    return np.ones(_shape(shape), dtype, order)


def empty(shape, dtype=float, order="C"):
    """Zeros: results must never depend on uninitialized memory."""
    return np.zeros(_shape(shape), dtype, order)


def full(shape, fill_value, dtype=None, order="C"):
    if type(fill_value) is not Tracer:
        return np.full(_shape(shape), fill_value, dtype, order)
    fill = weak_operand(fill_value)
    dt = dtypes.canonicalize_dtype(dtype) if dtype is not None else fill.dtype
    return st.broadcast_to(ew.convert_element_type(fill, dt), _shape(shape))


def _like(a, fill, dtype, shape):
    if type(a) is not Tracer:
        if type(fill) is Tracer:
            return full(np.shape(a) if shape is None else shape, fill,
                        np.result_type(a) if dtype is None else dtype)
        return np.full_like(a, fill, dtype=dtype, shape=shape)
    dt = dtypes.canonicalize_dtype(dtype) if dtype is not None else a.dtype
    shape = a.shape if shape is None else _shape(shape)
    return full(shape, fill, dt) if type(fill) is Tracer else st.full(shape, fill, dt)


def zeros_like(a, dtype=None, shape=None):
    return _like(a, 0, dtype, shape)


def ones_like(a, dtype=None, shape=None):
    return _like(a, 1, dtype, shape)


def empty_like(a, dtype=None, shape=None):
    """Zeros (never uninitialized memory)."""
    return _like(a, 0, dtype, shape)


def full_like(a, fill_value, dtype=None, shape=None):
    return _like(a, fill_value, dtype, shape)


def copy(a, order="K"):
    """A copy (traced arrays are immutable, so a traced value is its own copy)."""
    return np.copy(a, order) if not tracing() else operand(a)


def arange(start, stop=None, step=None, dtype=None):
    """numpy.arange; the bounds must be static (the length depends on them)."""
    start, stop, step = (static(v, "a bound of arange") for v in (start, stop, step))
    if stop is None and step is None:
        return np.arange(start, dtype=dtype)
    return np.arange(start, stop, step, dtype=dtype)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """numpy.linspace, traced when an endpoint is (NumPy's algorithm: ``arange(num) * step +
    start`` in the inexact result dtype, the last point set to ``stop``)."""
    if type(start) is not Tracer and type(stop) is not Tracer:
        return np.linspace(start, stop, num, endpoint, retstep, dtype, axis)
    num = int(static(num, "the number of samples"))
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    start, stop = (weak_operand(v) for v in (start, stop))
    dt = result_dtype(start, stop)
    if dt.kind not in "fc":
        dt = dtypes.float64
    start, stop = (operand(v) for v in cast_all([start, stop], [dt, dt], False))
    div = (num - 1) if endpoint else num
    delta = ew.sub(stop, start)
    shape = delta.shape
    y = st.broadcasted_iota(dt, (num,) + shape, 0)
    if div > 0:
        step = ew.div(delta, np.asarray(div, dt))
        y = ew.mul(y, step)
    else:
        step = np.nan
        y = ew.mul(y, delta)
    y = ew.add(y, start)
    if endpoint and num > 1:
        last = st.reshape(st.broadcast_to(stop, shape), (1,) + shape)
        y = st.concatenate([st.slice_in_dim(y, 0, num - 1, 1, 0), last], 0)
    if axis != 0:
        from ._shape import moveaxis
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind in "iu":
            y = ew.floor(y)
        y = ew.convert_element_type(y, dtype)
    return (y, step) if retstep else y


def logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    """``base ** linspace(start, stop)``."""
    if type(start) is not Tracer and type(stop) is not Tracer and type(base) is not Tracer:
        return np.logspace(start, stop, num, endpoint, base, dtype, axis)
    if not isinstance(base, (float, int)) and np.ndim(base):
        from ._shape import broadcast_arrays, expand_dims
        start, stop, base = broadcast_arrays(start, stop, base)
        base = expand_dims(base, axis)
    out = uf.power(base, linspace(start, stop, num, endpoint, axis=axis))
    return out if dtype is None else ew.convert_element_type(out, dtype)


def eye(N, M=None, k=0, dtype=float, order="C"):
    N, M, k = (static(v, "a size of eye") for v in (N, M, k))
    return np.eye(N, M, k, dtype, order)


def identity(n, dtype=float):
    return np.identity(static(n, "the size of identity"), dtype)


def tri(N, M=None, k=0, dtype=float):
    N, M, k = (static(v, "a size of tri") for v in (N, M, k))
    return np.tri(N, M, k, dtype)


def tril(m, k=0):
    """Zero above the ``k``-th diagonal (of the last two axes)."""
    if not tracing():
        return np.tril(m, k)
    m = operand(m)
    mask = np.tri(*m.shape[-2:], k=static(k, "the diagonal offset"), dtype=bool)
    return ew.select(mask, m, np.zeros((), m.dtype))


def triu(m, k=0):
    """Zero below the ``k``-th diagonal (of the last two axes)."""
    if not tracing():
        return np.triu(m, k)
    m = operand(m)
    mask = np.tri(*m.shape[-2:], k=static(k, "the diagonal offset") - 1, dtype=bool)
    return ew.select(mask, np.zeros((), m.dtype), m)


def vander(x, N=None, increasing=False):
    """Powers of ``x`` in columns (``x**(N-1), ..., x, 1``, or increasing), by repeated
    multiplication as NumPy."""
    if not tracing():
        return np.vander(x, N, increasing)
    x = operand(x)
    if x.ndim != 1:
        raise ValueError("x must be a one-dimensional array or sequence.")
    n = x.shape[0] if N is None else int(static(N, "the number of columns"))
    dt = np.promote_types(x.dtype, int)
    x = ew.convert_element_type(x, dt)
    cols = [st.full((x.shape[0], 1), 1, dt)] if n > 0 else []
    if n > 1:
        cols.append(red.cumprod(st.broadcast_in_dim(x, (x.shape[0], n - 1), (0,)), 1))
    v = st.concatenate(cols, 1) if cols else st.full((x.shape[0], 0), 0, dt)
    return v if increasing else st.rev(v, (1,))


def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    if not tracing():
        return np.meshgrid(*xi, copy=copy, sparse=sparse, indexing=indexing)
    if indexing not in ("xy", "ij"):
        raise ValueError("Valid values for `indexing` are 'xy' and 'ij'.")
    xi = [operand(x) for x in xi]
    ndim = len(xi)
    shapes = [[1] * ndim for _ in xi]
    for i, x in enumerate(xi):
        shapes[i][i] = x.size
    if indexing == "xy" and ndim > 1:
        shapes[0][:2], shapes[1][:2] = [1, xi[0].size], [xi[1].size, 1]
    out = [st.reshape(x, tuple(s)) for x, s in zip(xi, shapes)]
    if not sparse:
        full_shape = np.broadcast_shapes(*(o.shape for o in out))
        out = [st.broadcast_to(o, full_shape) for o in out]
    return tuple(out)


def indices(dimensions, dtype=int, sparse=False):
    return np.indices(_shape(dimensions), dtype, sparse)


def diagonal(a, offset=0, axis1=0, axis2=1):
    """The ``offset`` diagonal of the (axis1, axis2) planes, as the last axis: a strided
    slice of the flattened planes (no gather)."""
    if not tracing():
        return np.diagonal(a, offset, axis1, axis2)
    from ._shape import moveaxis
    a = operand(a)
    if a.ndim < 2:
        raise ValueError("diag requires an array of at least two dimensions")
    ax1, ax2 = normalize_axis(axis1, a.ndim), normalize_axis(axis2, a.ndim)
    if ax1 == ax2:
        raise ValueError("axis1 and axis2 cannot be the same")
    a = moveaxis(a, (ax1, ax2), (-2, -1))
    *lead, n, m = a.shape
    k = int(static(offset, "the diagonal offset"))
    count = max(0, min(n, m - k) if k >= 0 else min(n + k, m))
    flat = st.reshape(a, tuple(lead) + (n * m,))
    start = (k if k >= 0 else -k * m) if count else 0
    limit = start + (count - 1) * (m + 1) + 1 if count else 0
    return st.slice_in_dim(flat, start, limit, m + 1, len(lead))


def diag(v, k=0):
    if not tracing():
        return np.diag(v, k)
    v = operand(v)
    k = int(static(k, "the diagonal offset"))
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = v.shape[0] + abs(k)
    padded = st.pad(v, np.zeros((), v.dtype), [(0, abs(k), 0)])
    spread = st.broadcast_in_dim(padded, (n, n), (0,) if k >= 0 else (1,))
    return ew.select(np.eye(n, n, k, dtype=bool), spread, np.zeros((), v.dtype))


def diagflat(v, k=0):
    if not tracing():
        return np.diagflat(v, k)
    v = operand(v)
    return diag(st.reshape(v, (v.size,)), k)


def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    if not tracing():
        return np.trace(a, offset, axis1, axis2, dtype, out)
    from ._reductions import sum
    return sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype, out=out)
