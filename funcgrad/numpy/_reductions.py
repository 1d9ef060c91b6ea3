"""Reductions and statistics of funcgrad.numpy, with NumPy's accumulator dtypes."""
from __future__ import annotations

import builtins
import functools

import numpy as np

from .. import core, dtypes
from ..primitives import elementwise as ew, reduction as red, structural as st
from . import _ufuncs as uf
from ._array import astype, normalize_axes, normalize_axis, operand, tracing


@functools.lru_cache(maxsize=256)
def _sum_dtype(dtype: np.dtype) -> np.dtype:
    """NumPy's default accumulator for sum/prod/cumsum (small ints widen to the platform int)."""
    return np.sum(np.zeros(1, dtype)).dtype


def _keepdims(y, shape, axes):
    return st.reshape(y, tuple(1 if i in axes else n for i, n in enumerate(shape)))


def _reduce(name, prim_fn, identity, x, axis, dtype, keepdims, initial, where, combine=None):
    x = operand(x)
    aval = core.get_aval(x)
    axes = normalize_axes(axis, aval.ndim)
    if dtype is not None:
        x = astype(x, dtype)
    if where is not None:
        if identity is None and initial is None:
            raise ValueError(f"reduction operation '{name}' does not have an identity, so to use "
                             "a where mask one has to specify 'initial'")
        fill = identity if initial is None else initial
        x = ew.select(st.broadcast_to(operand(where), aval.shape), x, ew.full_like(x, fill))
    y = prim_fn(x, axes) if axes else x
    if initial is not None:
        y = combine(y, initial)
    return _keepdims(y, aval.shape, axes) if keepdims else y


def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    if not tracing():
        return np.sum(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims,
                      **_opt(initial=initial, where=where))
    a = operand(a)
    dtype = dtype or _sum_dtype(core.get_aval(a).dtype)
    return _reduce("sum", red.reduce_sum, 0, a, axis, dtype, keepdims, initial, where, uf.add)


def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    if not tracing():
        return np.prod(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims,
                       **_opt(initial=initial, where=where))
    a = operand(a)
    dtype = dtype or _sum_dtype(core.get_aval(a).dtype)
    return _reduce("prod", red.reduce_prod, 1, a, axis, dtype, keepdims, initial, where, uf.multiply)


def max(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    if not tracing():
        return np.max(a, axis=axis, out=out, keepdims=keepdims, **_opt(initial=initial, where=where))
    return _reduce("maximum", red.reduce_max, None, a, axis, None, keepdims, initial, where, uf.maximum)


def min(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    if not tracing():
        return np.min(a, axis=axis, out=out, keepdims=keepdims, **_opt(initial=initial, where=where))
    return _reduce("minimum", red.reduce_min, None, a, axis, None, keepdims, initial, where, uf.minimum)


amax, amin = max, min


def all(a, axis=None, out=None, keepdims=False, *, where=None):
    if not tracing():
        return np.all(a, axis=axis, out=out, keepdims=keepdims, **_opt(where=where))
    return _reduce("all", red.reduce_and, True, _as_bool(a), axis, None, keepdims, None, where)


def any(a, axis=None, out=None, keepdims=False, *, where=None):
    if not tracing():
        return np.any(a, axis=axis, out=out, keepdims=keepdims, **_opt(where=where))
    return _reduce("any", red.reduce_or, False, _as_bool(a), axis, None, keepdims, None, where)


def _as_bool(a):
    a = operand(a)
    return a if core.get_aval(a).dtype == dtypes.bool_ else uf.not_equal(a, 0)


def _opt(**kw):
    return {k: v for k, v in kw.items() if v is not None}


def _count(aval, axes, where):
    if where is None:
        return int(np.prod([aval.shape[a] for a in axes], dtype=np.int64))
    return sum(st.broadcast_to(operand(where), aval.shape), axis=axes, dtype=np.int64)


def _mean_dtype(dtype):
    return np.mean(np.zeros(1, dtype)).dtype


def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    if not tracing():
        return np.mean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **_opt(where=where))
    a = operand(a)
    aval = core.get_aval(a)
    out_dtype = np.dtype(dtype) if dtype is not None else _mean_dtype(aval.dtype)
    acc = np.dtype(np.float32) if out_dtype == np.float16 else out_dtype  # numpy accumulates f16 in f32
    total = sum(a, axis=axis, dtype=acc, keepdims=keepdims, where=where)
    n = _count(aval, normalize_axes(axis, aval.ndim), where)
    if where is not None and keepdims:
        n = _keepdims(n, aval.shape, normalize_axes(axis, aval.ndim))
    return astype(uf.true_divide(total, n if not isinstance(n, int) else acc.type(n)), out_dtype)


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
        correction=None):
    if not tracing():
        return np.var(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims,
                      **_opt(where=where, mean=mean, correction=correction))
    if correction is not None:
        ddof = correction
    a = operand(a)
    aval = core.get_aval(a)
    axes = normalize_axes(axis, aval.ndim)
    out_dtype = np.dtype(dtype) if dtype is not None else _mean_dtype(aval.dtype)
    centered = uf.subtract(astype(a, out_dtype),
                           _mean_fn(a, axes, out_dtype, where) if mean is None else mean)
    sq = uf.multiply(centered, centered)
    n = _count(aval, axes, where)
    total = sum(sq, axis=axes, keepdims=keepdims, where=where)
    denom = uf.subtract(n, ddof) if not isinstance(n, int) else out_dtype.type(n - ddof)
    if where is not None and keepdims:
        denom = _keepdims(denom, aval.shape, axes)
    return uf.true_divide(total, denom)


def _mean_fn(a, axes, dtype, where):
    return mean(a, axis=axes, dtype=dtype, keepdims=True, where=where)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=None, mean=None,
        correction=None):
    if not tracing():
        return np.std(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims,
                      **_opt(where=where, mean=mean, correction=correction))
    return uf.sqrt(var(a, axis, dtype, None, ddof, keepdims, where=where, mean=mean, correction=correction))


def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    if not tracing():
        return np.average(a, axis=axis, weights=weights, returned=returned, keepdims=keepdims)
    if weights is None:
        avg = mean(a, axis=axis, keepdims=keepdims)
        n = core.get_aval(operand(a)).size // builtins.max(core.get_aval(avg).size, 1)
        return (avg, ew.full_like(avg, n)) if returned else avg
    a, w = uf._inexact(a, weights)
    w = st.broadcast_to(w, core.get_aval(a).shape) if core.get_aval(w).ndim == core.get_aval(a).ndim \
        else _weights_along(w, core.get_aval(a), axis)
    scl = sum(w, axis=axis, keepdims=keepdims)
    avg = uf.true_divide(sum(uf.multiply(a, w), axis=axis, keepdims=keepdims), scl)
    return (avg, scl) if returned else avg


def _weights_along(w, aval, axis):
    ax = normalize_axis(axis, aval.ndim)
    return st.broadcast_in_dim(w, aval.shape, (ax,))


def argmax(a, axis=None, out=None, *, keepdims=False):
    if not tracing():
        return np.argmax(a, axis=axis, out=out, keepdims=keepdims)
    return _arg(red.argmax, a, axis, keepdims)


def argmin(a, axis=None, out=None, *, keepdims=False):
    if not tracing():
        return np.argmin(a, axis=axis, out=out, keepdims=keepdims)
    return _arg(red.argmin, a, axis, keepdims)


def _arg(fn, a, axis, keepdims):
    a = operand(a)
    aval = core.get_aval(a)
    if axis is None:
        y = fn(st.reshape(a, (aval.size,)), 0)
        return st.reshape(y, (1,) * aval.ndim) if keepdims else y
    ax = normalize_axis(axis, aval.ndim)
    y = fn(a, ax)
    return _keepdims(y, aval.shape, (ax,)) if keepdims else y


def _cumulative(np_fn, prim_fn, a, axis, dtype):
    if not tracing():
        return np_fn(a, axis=axis, dtype=dtype)
    a = operand(a)
    aval = core.get_aval(a)
    a = astype(a, dtype or _sum_dtype(aval.dtype))
    if axis is None:
        a, axis = st.reshape(a, (aval.size,)), 0
    return prim_fn(a, normalize_axis(axis, aval.ndim if axis is not None else 1))


def cumsum(a, axis=None, dtype=None, out=None):
    return _cumulative(np.cumsum, red.cumsum, a, axis, dtype)


def cumprod(a, axis=None, dtype=None, out=None):
    return _cumulative(np.cumprod, red.cumprod, a, axis, dtype)


cumulative_sum, cumulative_prod = cumsum, cumprod


def count_nonzero(a, axis=None, *, keepdims=False):
    if not tracing():
        return np.count_nonzero(a, axis=axis, keepdims=keepdims)
    return sum(_as_bool(a), axis=axis, dtype=np.int64, keepdims=keepdims)


def ptp(a, axis=None, keepdims=False):
    if not tracing():
        return np.ptp(a, axis=axis, keepdims=keepdims)
    return uf.subtract(max(a, axis, keepdims=keepdims), min(a, axis, keepdims=keepdims))


def _nan_to(a, fill):
    a = operand(a)
    return ew.select(uf.isnan(a), ew.full_like(a, fill), a) if core.get_aval(a).dtype.kind in "fc" else a


def nansum(a, axis=None, dtype=None, out=None, keepdims=False):
    if not tracing():
        return np.nansum(a, axis=axis, dtype=dtype, keepdims=keepdims)
    return sum(_nan_to(a, 0), axis=axis, dtype=dtype, keepdims=keepdims)


def nanmean(a, axis=None, dtype=None, out=None, keepdims=False):
    if not tracing():
        return np.nanmean(a, axis=axis, dtype=dtype, keepdims=keepdims)
    a = operand(a)
    valid = uf.logical_not(uf.isnan(a))
    return uf.true_divide(nansum(a, axis, dtype, keepdims=keepdims), sum(valid, axis, keepdims=keepdims))


def nanmax(a, axis=None, out=None, keepdims=False):
    if not tracing():
        return np.nanmax(a, axis=axis, keepdims=keepdims)
    return max(_nan_to(a, -np.inf), axis, keepdims=keepdims)


def nanmin(a, axis=None, out=None, keepdims=False):
    if not tracing():
        return np.nanmin(a, axis=axis, keepdims=keepdims)
    return min(_nan_to(a, np.inf), axis, keepdims=keepdims)
