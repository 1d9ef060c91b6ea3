"""Reductions and statistics of funcgrad.numpy, with NumPy's accumulator and result dtypes.

Traced versions follow NumPy's own algorithms step by step (what is summed in which dtype,
what is divided by what), so eager and traced results agree in dtype and, up to summation
order, in value. ``out=`` is accepted eagerly only; traced arrays are immutable.
"""
from __future__ import annotations

import builtins
import functools

import numpy as np

from .. import dtypes
from ..core import Tracer
from ..primitives import elementwise as ew, indexing as ix, reduction as red, structural as st
from . import _ufuncs as uf
from ._array import astype, normalize_axes, normalize_axis, operand, static, tracing

_NV = np._NoValue   # NumPy's "not given": eager calls pass every argument through as it is


def _given(value, default):
    return default if value is _NV else value


def _no_out(out, name):
    if out is not None:
        raise TypeError(f"{name}: out= is not supported on traced values (arrays are immutable)")


@functools.lru_cache(maxsize=256)
def _sum_dtype(dtype: np.dtype) -> np.dtype:
    """NumPy's default accumulator for sum/prod/cumsum (small ints widen to the platform int)."""
    return np.sum(np.zeros(1, dtype)).dtype


def _keepdims(y, shape, axes):
    return st.reshape(y, tuple(1 if i in axes else n for i, n in enumerate(shape)))


def _axes(axis, ndim):
    return normalize_axes(static(axis, "an axis") if type(axis) is Tracer else axis, ndim)


def _reduce(name, prim_fn, identity, x, axis, keepdims, initial, where, combine=None):
    """Reduce ``x`` (already of the accumulator dtype) over ``axis`` with NumPy's
    ``keepdims``/``initial``/``where`` semantics."""
    keepdims, initial, where = _given(keepdims, False), _given(initial, None), _given(where, None)
    shape = x.shape
    axes = _axes(axis, x.ndim)
    if where is not None and where is not True:
        fill = identity if initial is None else initial
        if fill is None:
            raise ValueError(f"reduction operation '{name}' does not have an identity, so to use "
                             "a where mask one has to specify 'initial'")
        mask = st.broadcast_to(operand(where), shape)
        x = ew.select(mask, x, st.full(shape, fill, x.dtype))
    empty = builtins.any(shape[a] == 0 for a in axes)
    if empty and initial is None and identity is None:
        raise ValueError(f"zero-size array to reduction operation {name} which has no identity")
    if initial is not None and empty:
        y = st.full(tuple(n for i, n in enumerate(shape) if i not in axes), initial, x.dtype)
    else:
        y = prim_fn(x, axes) if axes else x
        if initial is not None:
            y = combine(y, np.asarray(initial, x.dtype))
    return _keepdims(y, shape, axes) if keepdims else y


def sum(a, axis=None, dtype=None, out=None, keepdims=_NV, initial=_NV, where=_NV):  # noqa: A001
    if not tracing():
        return np.sum(a, axis, dtype, out, keepdims, initial, where)
    _no_out(out, "sum")
    a = operand(a)
    a = astype(a, dtype if dtype is not None else _sum_dtype(a.dtype))
    return _reduce("add", red.reduce_sum, 0, a, axis, keepdims, initial, where, ew.add)


def prod(a, axis=None, dtype=None, out=None, keepdims=_NV, initial=_NV, where=_NV):
    if not tracing():
        return np.prod(a, axis, dtype, out, keepdims, initial, where)
    _no_out(out, "prod")
    a = operand(a)
    a = astype(a, dtype if dtype is not None else _sum_dtype(a.dtype))
    return _reduce("multiply", red.reduce_prod, 1, a, axis, keepdims, initial, where, ew.mul)


def max(a, axis=None, out=None, keepdims=_NV, initial=_NV, where=_NV):  # noqa: A001
    if not tracing():
        return np.max(a, axis, out, keepdims, initial, where)
    _no_out(out, "max")
    return _reduce("maximum", red.reduce_max, None, operand(a), axis, keepdims, initial, where,
                   ew.max)


def min(a, axis=None, out=None, keepdims=_NV, initial=_NV, where=_NV):  # noqa: A001
    if not tracing():
        return np.min(a, axis, out, keepdims, initial, where)
    _no_out(out, "min")
    return _reduce("minimum", red.reduce_min, None, operand(a), axis, keepdims, initial, where,
                   ew.min)


amax, amin = max, min


def all(a, axis=None, out=None, keepdims=_NV, *, where=_NV):  # noqa: A001
    if not tracing():
        return np.all(a, axis, out, keepdims, where=where)
    _no_out(out, "all")
    return _reduce("logical_and", red.reduce_and, True, _truth(a), axis, keepdims, None, where)


def any(a, axis=None, out=None, keepdims=_NV, *, where=_NV):  # noqa: A001
    if not tracing():
        return np.any(a, axis, out, keepdims, where=where)
    _no_out(out, "any")
    return _reduce("logical_or", red.reduce_or, False, _truth(a), axis, keepdims, None, where)


def _truth(a):
    a = operand(a)
    return a if a.dtype == dtypes.bool_ else ew.ne(a, np.zeros((), a.dtype))


def _count(shape, axes, keepdims, where):
    """The number of elements reduced: a Python int, or an intp array with ``where``."""
    where = _given(where, None)
    if where is None or where is True:
        return int(np.prod([shape[a] for a in axes], dtype=np.int64))
    mask = st.broadcast_to(operand(where), shape)
    return sum(mask, axis=axes, dtype=np.intp, keepdims=keepdims)


def _divide(total, count):
    """``true_divide(total, count, out=total, casting='unsafe')``: NumPy's mean/var division
    (in the promoted dtype, rounded back to the total's dtype)."""
    return astype(uf.true_divide(total, count), total.dtype, copy=False)


def mean(a, axis=None, dtype=None, out=None, keepdims=_NV, *, where=_NV):
    if not tracing():
        return np.mean(a, axis, dtype, out, keepdims, where=where)
    _no_out(out, "mean")
    a = operand(a)
    out_dtype = a.dtype
    if dtype is None:
        if a.dtype.kind in "biu":
            dtype = out_dtype = dtypes.float64
        elif a.dtype == dtypes.float16:
            dtype = dtypes.float32          # NumPy accumulates float16 in float32
    else:
        out_dtype = np.dtype(dtype)
    total = sum(a, axis=axis, dtype=dtype, keepdims=keepdims, where=where)
    count = _count(a.shape, _axes(axis, a.ndim), keepdims, where)
    return astype(_divide(total, count), out_dtype, copy=False)


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=_NV, *, where=_NV, mean=_NV,
        correction=_NV):
    if not tracing():
        return np.var(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                      correction=correction)
    _no_out(out, "var")
    return _var(operand(a), axis, dtype, _ddof(ddof, correction), keepdims, where, mean)


def _ddof(ddof, correction):
    if _given(correction, None) is not None:
        if ddof != 0:
            raise ValueError("ddof and correction can't be provided simultaneously.")
        return correction
    return ddof


def _var(a, axis, dtype, ddof, keepdims, where, arrmean):
    keepdims, arrmean = _given(keepdims, False), _given(arrmean, None)
    axes = _axes(axis, a.ndim)
    if dtype is None and a.dtype.kind in "biu":
        dtype = dtypes.float64
    count = _count(a.shape, axes, True, where)
    if arrmean is None:
        arrmean = _divide(sum(a, axis=axes, dtype=dtype, keepdims=True, where=where), count)
    x = uf.subtract(a, arrmean)
    total = sum(uf.multiply(x, x), axis=axes, dtype=dtype, keepdims=keepdims, where=where)
    if not isinstance(count, int) and not keepdims:
        count = st.reshape(count, total.shape)
    dof = builtins.max(count - ddof, 0) if isinstance(count, int) else uf.maximum(count - ddof, 0)
    return _divide(total, dof)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=_NV, *, where=_NV, mean=_NV,
        correction=_NV):
    if not tracing():
        return np.std(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                      correction=correction)
    _no_out(out, "std")
    return _sqrt_like(_var(operand(a), axis, dtype, _ddof(ddof, correction), keepdims, where, mean))


def _sqrt_like(variance):
    """NumPy's std: the root in the variance's dtype (an integer ``dtype=`` rounds a scalar
    result down and cannot hold an array one)."""
    root = uf.sqrt(variance)
    if root.dtype == variance.dtype:
        return root
    if variance.ndim:
        raise TypeError(f"Cannot cast ufunc 'sqrt' output from {root.dtype} to {variance.dtype} "
                        "with casting rule 'same_kind'")
    return astype(root, variance.dtype)


def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    """numpy.average. (NumPy raises ZeroDivisionError when the weights sum to zero; that
    check needs values, so traced weights summing to zero give inf/nan instead.)"""
    if not tracing():
        return np.average(a, axis=axis, weights=weights, returned=returned, keepdims=keepdims)
    a = operand(a)
    axes = None if axis is None else _axes(axis, a.ndim)
    if weights is None:
        avg = mean(a, axis=axes, keepdims=keepdims)
        scl = ew.full_like(avg, a.size // builtins.max(avg.size, 1))
    else:
        w = operand(weights)
        extra = ("f8",) if a.dtype.kind in "biu" else ()
        result_dtype = np.result_type(a.dtype, w.dtype, *extra)
        if a.shape != w.shape:
            if axes is None:
                raise TypeError("Axis must be specified when shapes of a and weights differ.")
            if w.shape != tuple(a.shape[ax] for ax in axes):
                raise ValueError("Shape of weights must be consistent with shape of a along "
                                 "specified axis.")
            w = st.transpose(w, tuple(np.argsort(axes)))
            w = st.reshape(w, tuple(s if ax in axes else 1 for ax, s in enumerate(a.shape)))
        scl = sum(w, axis=axes, dtype=result_dtype, keepdims=keepdims)
        weighted = uf.multiply(astype(a, result_dtype), astype(w, result_dtype))
        avg = uf.true_divide(sum(weighted, axis=axes, keepdims=keepdims), scl)
    if not returned:
        return avg
    return avg, (scl if scl.shape == avg.shape else st.broadcast_to(scl, avg.shape))


def argmax(a, axis=None, out=None, *, keepdims=_NV):
    if not tracing():
        return np.argmax(a, axis, out, keepdims=keepdims)
    _no_out(out, "argmax")
    return _arg(red.argmax, operand(a), axis, keepdims)


def argmin(a, axis=None, out=None, *, keepdims=_NV):
    if not tracing():
        return np.argmin(a, axis, out, keepdims=keepdims)
    _no_out(out, "argmin")
    return _arg(red.argmin, operand(a), axis, keepdims)


def _arg(fn, a, axis, keepdims):
    keepdims = _given(keepdims, False)
    if a.size == 0 and (axis is None or a.shape[normalize_axis(axis, a.ndim)] == 0):
        raise ValueError(f"attempt to get {fn.__name__} of an empty sequence")
    if axis is None:
        y = fn(st.reshape(a, (a.size,)), 0, np.intp)
        return st.reshape(y, (1,) * a.ndim) if keepdims else y
    ax = normalize_axis(axis, a.ndim)
    y = fn(a, ax, np.intp)
    return _keepdims(y, a.shape, (ax,)) if keepdims else y


# --- cumulative -------------------------------------------------------------------------------


def _cumulative(prim_fn, a, axis, dtype):
    a = operand(a)
    a = astype(a, dtype if dtype is not None else _sum_dtype(a.dtype))
    if axis is None:
        a, axis = st.reshape(a, (a.size,)), 0
    return prim_fn(a, normalize_axis(axis, a.ndim))


def cumsum(a, axis=None, dtype=None, out=None):
    if not tracing():
        return np.cumsum(a, axis=axis, dtype=dtype, out=out)
    _no_out(out, "cumsum")
    return _cumulative(red.cumsum, a, axis, dtype)


def cumprod(a, axis=None, dtype=None, out=None):
    if not tracing():
        return np.cumprod(a, axis=axis, dtype=dtype, out=out)
    _no_out(out, "cumprod")
    return _cumulative(red.cumprod, a, axis, dtype)


def _cumulative_with_initial(np_fn, prim_fn, identity, x, axis, dtype, out, include_initial):
    if not tracing():
        return np_fn(x, axis=axis, dtype=dtype, out=out, include_initial=include_initial)
    _no_out(out, np_fn.__name__)
    x = operand(x)
    if x.ndim == 0:
        x = st.reshape(x, (1,))
    if axis is None:
        if x.ndim > 1:
            raise ValueError("axis must be specified for multi-dimensional arrays.")
        axis = 0
    y = _cumulative(prim_fn, x, axis, dtype)
    if not include_initial:
        return y
    ax = normalize_axis(axis, y.ndim)
    config = [(0, 0, 0)] * y.ndim
    config[ax] = (1, 0, 0)
    return st.pad(y, np.asarray(identity, y.dtype), config)


def cumulative_sum(x, /, *, axis=None, dtype=None, out=None, include_initial=False):
    return _cumulative_with_initial(np.cumulative_sum, red.cumsum, 0, x, axis, dtype, out,
                                    include_initial)


def cumulative_prod(x, /, *, axis=None, dtype=None, out=None, include_initial=False):
    return _cumulative_with_initial(np.cumulative_prod, red.cumprod, 1, x, axis, dtype, out,
                                    include_initial)


# --- counting and comparison of whole arrays ------------------------------------------------------


def count_nonzero(a, axis=None, *, keepdims=False):
    if not tracing():
        return np.count_nonzero(a, axis=axis, keepdims=keepdims)
    return sum(_truth(a), axis=axis, dtype=np.intp, keepdims=keepdims)


def ptp(a, axis=None, out=None, keepdims=_NV):
    if not tracing():
        return np.ptp(a, axis, out, keepdims)
    _no_out(out, "ptp")
    return uf.subtract(max(a, axis, keepdims=keepdims), min(a, axis, keepdims=keepdims))


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan: bool = False):
    """``all(isclose(a, b))``: a Python bool eagerly (as NumPy), a traced bool when traced."""
    if not tracing():
        return np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)
    return all(uf.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def array_equal(a1, a2, equal_nan: bool = False):
    """Same shape and equal elements (NaNs equal with ``equal_nan``)."""
    if not tracing():
        return np.array_equal(a1, a2, equal_nan=equal_nan)
    a1, a2 = operand(a1), operand(a2)
    if a1.shape != a2.shape:
        return False
    same = uf.equal(a1, a2)
    if equal_nan:
        same = uf.logical_or(same, uf.logical_and(uf.isnan(a1), uf.isnan(a2)))
    return all(same)


def array_equiv(a1, a2):
    """Equal after broadcasting to a common shape (False when the shapes do not broadcast)."""
    if not tracing():
        return np.array_equiv(a1, a2)
    a1, a2 = operand(a1), operand(a2)
    try:
        np.broadcast_shapes(a1.shape, a2.shape)
    except ValueError:
        return False
    return all(uf.equal(a1, a2))


# --- NaN-ignoring versions ---------------------------------------------------------------------


def _replace_nan(a, fill):
    """``(a with NaNs replaced by fill, NaN mask or None)`` as numpy.lib's ``_replace_nan``."""
    a = operand(a)
    if a.dtype.kind not in "fc":
        return a, None
    mask = ew.ne(a, a)
    return ew.select(mask, st.full(a.shape, fill, a.dtype), a), mask


def nansum(a, axis=None, dtype=None, out=None, keepdims=_NV, initial=_NV, where=_NV):
    if not tracing():
        return np.nansum(a, axis, dtype, out, keepdims, initial, where)
    _no_out(out, "nansum")
    return sum(_replace_nan(a, 0)[0], axis, dtype, None, keepdims, initial, where)


def nanprod(a, axis=None, dtype=None, out=None, keepdims=_NV, initial=_NV, where=_NV):
    if not tracing():
        return np.nanprod(a, axis, dtype, out, keepdims, initial, where)
    _no_out(out, "nanprod")
    return prod(_replace_nan(a, 1)[0], axis, dtype, None, keepdims, initial, where)


def _nan_extremum(reduce, fill, a, axis, keepdims, initial, where):
    """nanmax/nanmin, a reduction by fmax/fmin as NumPy's: NaNs are ignored, and a slice
    with no other value gives NaN (or ``initial``)."""
    initial = _given(initial, None)
    arr, mask = _replace_nan(a, fill)
    y = reduce(arr, axis, keepdims=keepdims, initial=initial, where=where)
    if mask is None or initial is not None:
        return y
    all_nan = all(mask, axis, keepdims=keepdims, where=where)
    return ew.select(all_nan, ew.full_like(y, np.nan), y)


def nanmax(a, axis=None, out=None, keepdims=_NV, initial=_NV, where=_NV):
    if not tracing():
        return np.nanmax(a, axis, out, keepdims, initial, where)
    _no_out(out, "nanmax")
    return _nan_extremum(max, -np.inf, a, axis, keepdims, initial, where)


def nanmin(a, axis=None, out=None, keepdims=_NV, initial=_NV, where=_NV):
    if not tracing():
        return np.nanmin(a, axis, out, keepdims, initial, where)
    _no_out(out, "nanmin")
    return _nan_extremum(min, np.inf, a, axis, keepdims, initial, where)


def _nan_arg(arg_fn, fill, a, axis, keepdims):
    """nanargmax/nanargmin. NumPy raises on an all-NaN slice; that check needs values, so a
    traced all-NaN slice gives index 0."""
    arr, _ = _replace_nan(a, fill)
    return arg_fn(arr, axis, keepdims=keepdims)


def nanargmax(a, axis=None, out=None, *, keepdims=_NV):
    if not tracing():
        return np.nanargmax(a, axis, out, keepdims=keepdims)
    _no_out(out, "nanargmax")
    return _nan_arg(argmax, -np.inf, a, axis, keepdims)


def nanargmin(a, axis=None, out=None, *, keepdims=_NV):
    if not tracing():
        return np.nanargmin(a, axis, out, keepdims=keepdims)
    _no_out(out, "nanargmin")
    return _nan_arg(argmin, np.inf, a, axis, keepdims)


def nancumsum(a, axis=None, dtype=None, out=None):
    if not tracing():
        return np.nancumsum(a, axis=axis, dtype=dtype, out=out)
    _no_out(out, "nancumsum")
    return cumsum(_replace_nan(a, 0)[0], axis, dtype)


def nancumprod(a, axis=None, dtype=None, out=None):
    if not tracing():
        return np.nancumprod(a, axis=axis, dtype=dtype, out=out)
    _no_out(out, "nancumprod")
    return cumprod(_replace_nan(a, 1)[0], axis, dtype)


def nanmean(a, axis=None, dtype=None, out=None, keepdims=_NV, *, where=_NV):
    if not tracing():
        return np.nanmean(a, axis, dtype, out, keepdims, where=where)
    _no_out(out, "nanmean")
    arr, mask = _replace_nan(a, 0)
    _check_inexact_dtype(arr, dtype)
    if mask is None:
        return mean(arr, axis, dtype, None, keepdims, where=where)
    count = sum(uf.logical_not(mask), axis, np.intp, None, keepdims, where=where)
    total = sum(arr, axis, dtype, None, keepdims, where=where)
    return _divide(total, count)


def nanvar(a, axis=None, dtype=None, out=None, ddof=0, keepdims=_NV, *, where=_NV,
           mean=_NV, correction=_NV):
    if not tracing():
        return np.nanvar(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                         correction=correction)
    _no_out(out, "nanvar")
    return _nanvar(a, axis, dtype, _ddof(ddof, correction), keepdims, where, mean)


def _check_inexact_dtype(arr, dtype):
    if dtype is not None and arr.dtype.kind in "fc" and np.dtype(dtype).kind not in "fc":
        raise TypeError("If a is inexact, then dtype must be inexact")


def _nanvar(a, axis, dtype, ddof, keepdims, where, arrmean):
    keepdims, arrmean = _given(keepdims, False), _given(arrmean, None)
    arr, mask = _replace_nan(a, 0)
    _check_inexact_dtype(arr, dtype)
    if mask is None:
        return _var(arr, axis, dtype, ddof, keepdims, where, arrmean)
    axes = _axes(axis, arr.ndim)
    count = sum(uf.logical_not(mask), axes, np.intp, None, True, where=where)
    if arrmean is None:
        arrmean = _divide(sum(arr, axes, dtype, None, True, where=where), count)
    dev = astype(uf.subtract(arr, arrmean), arr.dtype, copy=False)
    dev = ew.select(mask, ew.zeros_like(dev), dev)
    total = sum(uf.multiply(dev, dev), axes, dtype, None, keepdims, where=where)
    if not keepdims:
        count = st.reshape(count, total.shape)
    dof = uf.subtract(count, ddof)
    return ew.select(uf.less_equal(dof, 0), ew.full_like(total, np.nan), _divide(total, dof))


def nanstd(a, axis=None, dtype=None, out=None, ddof=0, keepdims=_NV, *, where=_NV,
           mean=_NV, correction=_NV):
    if not tracing():
        return np.nanstd(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                         correction=correction)
    _no_out(out, "nanstd")
    return _sqrt_like(_nanvar(a, axis, dtype, _ddof(ddof, correction), keepdims, where, mean))


# --- order statistics (through the sort primitive) ------------------------------------------------


def _sorted_along_front(a, axis):
    """``a`` sorted along ``axis`` (None: flattened), with that axis moved to the front; and
    a function restoring ``keepdims`` shape on a result with the front axis reduced."""
    a = operand(a)
    axes = _axes(axis, a.ndim)
    rest = tuple(i for i in range(a.ndim) if i not in axes)
    n = int(np.prod([a.shape[i] for i in axes], dtype=np.int64))
    moved = st.reshape(st.transpose(a, axes + rest), (n,) + tuple(a.shape[i] for i in rest))
    sorted_ = ix.sort(moved, 0) if n else moved
    kept_shape = tuple(1 if i in axes else s for i, s in enumerate(a.shape))

    def keep(y, lead=0):
        return st.reshape(y, y.shape[:lead] + kept_shape)

    return sorted_, keep


def _take_front(x, indices):
    """``x[indices]`` for static integer ``indices`` (any shape) along the front axis."""
    idx = np.asarray(indices, np.int64) % builtins.max(x.shape[0], 1)
    return ix.gather(x, idx[..., None], (0,))


def _nan_fix(sorted_, result):
    """Slices holding a NaN (sorted last) give NaN, as NumPy's order statistics do."""
    if sorted_.dtype.kind not in "fc" or sorted_.shape[0] == 0:
        return result
    last = st.slice_in_dim(sorted_, sorted_.shape[0] - 1, sorted_.shape[0], 1, 0)
    last = st.reshape(last, last.shape[1:])
    return ew.select(ew.ne(last, last), astype(last, result.dtype), result)


def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    if not tracing():
        return np.median(a, axis=axis, out=out, overwrite_input=overwrite_input, keepdims=keepdims)
    _no_out(out, "median")
    sorted_, keep = _sorted_along_front(a, axis)
    n = sorted_.shape[0]
    middle = st.slice_in_dim(sorted_, (n - 1) // 2, n // 2 + 1, 1, 0) if n else sorted_
    result = _nan_fix(sorted_, mean(middle, axis=0))
    return keep(result) if keepdims else result


_CONTINUOUS_QUANTILE = {  # method: (alpha, beta) of Hyndman & Fan, for the virtual index
    "interpolated_inverted_cdf": (0, 1), "hazen": (0.5, 0.5), "weibull": (0, 0),
    "median_unbiased": (1 / 3.0, 1 / 3.0), "normal_unbiased": (3 / 8.0, 3 / 8.0),
}


def _virtual_index(n: int, q: np.ndarray, method: str):
    """NumPy's virtual index (float: interpolate; integer: take) and interpolation weight."""
    if method == "linear":
        return (n - 1) * q
    if method in _CONTINUOUS_QUANTILE:
        alpha, beta = _CONTINUOUS_QUANTILE[method]
        return n * q + (alpha + q * (1 - alpha - beta)) - 1
    if method == "lower":
        return np.floor((n - 1) * q).astype(np.intp)
    if method == "higher":
        return np.ceil((n - 1) * q).astype(np.intp)
    if method == "nearest":
        return np.around((n - 1) * q).astype(np.intp)
    if method == "midpoint":
        return 0.5 * (np.floor((n - 1) * q) + np.ceil((n - 1) * q))
    raise NotImplementedError(f"quantile method {method!r} is not supported on traced values")


def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False,
             *, weights=None):
    """numpy.quantile for the continuous methods and lower/higher/nearest/midpoint. ``q`` must
    be concrete (the shape of the result depends on it); ``a`` may be traced."""
    if not tracing():
        return np.quantile(a, q, axis, out, overwrite_input, method, keepdims, weights=weights)
    _no_out(out, "quantile")
    if weights is not None:
        raise NotImplementedError("quantile: weights are not supported on traced values")
    weak_q = type(q) in (int, float)
    q = np.asarray(static(q, "the quantiles q"))
    if q.ndim > 1:
        raise ValueError("q must be a scalar or 1d")
    if not (np.all(q >= 0) and np.all(q <= 1)):
        raise ValueError("Quantiles must be in the range [0, 1]")
    return _quantile(a, q, weak_q, axis, method, keepdims)


def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
               keepdims=False, *, weights=None):
    """numpy.percentile: :func:`quantile` of ``q / 100``."""
    if not tracing():
        return np.percentile(a, q, axis, out, overwrite_input, method, keepdims,
                             weights=weights)
    _no_out(out, "percentile")
    if weights is not None:
        raise NotImplementedError("percentile: weights are not supported on traced values")
    weak_q = type(q) in (int, float)
    q = np.true_divide(np.asarray(static(q, "the percentiles q")), 100)
    if q.ndim > 1:
        raise ValueError("q must be a scalar or 1d")
    if not (np.all(q >= 0) and np.all(q <= 1)):
        raise ValueError("Percentiles must be in the range [0, 100]")
    return _quantile(a, q, weak_q, axis, method, keepdims)


def _quantile(a, q, weak_q, axis, method, keepdims):
    sorted_, keep = _sorted_along_front(a, axis)
    n = sorted_.shape[0]
    vi = np.asanyarray(_virtual_index(n, q, method))
    if vi.dtype.kind in "iu":
        result = _take_front(sorted_, vi)
    else:
        prev = np.floor(vi)
        below, above = vi < 0, vi >= n - 1
        prev_i = np.where(above, -1, np.where(below, 0, prev)).astype(np.intp)
        next_i = np.where(above, -1, np.where(below, 0, prev + 1)).astype(np.intp)
        gamma = np.asanyarray(vi - prev, dtype=vi.dtype)
        if method == "midpoint":
            gamma = np.where(vi % 1 == 0, 0.0, 0.5).astype(vi.dtype)
        lo, hi = _take_front(sorted_, prev_i), _take_front(sorted_, next_i)
        t = float(gamma) if weak_q else gamma.reshape(gamma.shape + (1,) * (sorted_.ndim - 1))
        diff = uf.subtract(hi, lo)
        low_side = uf.add(lo, uf.multiply(diff, t))
        high_side = astype(uf.subtract(hi, uf.multiply(diff, 1 - t)), low_side.dtype)
        upper = st.broadcast_to(np.asarray(t) >= 0.5, low_side.shape)
        result = ew.select(upper, high_side, low_side)
    result = _nan_fix(sorted_, result)
    return keep(result, q.ndim) if keepdims else result


# --- histograms and integrals -------------------------------------------------------------------


def histogram(a, bins=10, range=None, density=None, weights=None):  # noqa: A002
    """numpy.histogram on concrete values (bin edges and counts are data-dependent)."""
    a, bins, weights = (static(v, "an argument of histogram") for v in (a, bins, weights))
    return np.histogram(a, bins=bins, range=range, density=density, weights=weights)


def cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *,
        dtype=None):
    """numpy.cov: the covariance of the variables in the rows (``rowvar``) or columns of
    ``m`` (and ``y``). Traced: without ``fweights``/``aweights``."""
    if not tracing():
        return np.cov(m, y, rowvar, bias, ddof, fweights, aweights, dtype=dtype)
    if fweights is not None or aweights is not None:
        raise NotImplementedError("cov: fweights/aweights are not supported on traced values")
    import funcgrad.numpy as fnp
    variables = lambda v: fnp.atleast_2d(v) if rowvar or fnp.ndim(v) < 2 else fnp.transpose(v)
    x = variables(m) if y is None else fnp.concatenate([variables(m), variables(y)], axis=0)
    x = astype(x, dtype or np.result_type(operand(m).dtype, np.float64))
    ddof = (0 if bias else 1) if ddof is None else ddof
    centered = uf.subtract(x, mean(x, axis=1, keepdims=True))
    c = uf.true_divide(fnp.matmul(centered, fnp.conj(fnp.transpose(centered))),
                       builtins.max(x.shape[1] - ddof, 0))
    return fnp.squeeze(c)


def corrcoef(x, y=None, rowvar=True, *, dtype=None):
    """numpy.corrcoef: Pearson correlation coefficients (the normalized :func:`cov`), clipped
    to [-1, 1] as NumPy does."""
    if not tracing():
        return np.corrcoef(x, y, rowvar, dtype=dtype)
    import funcgrad.numpy as fnp
    c = cov(x, y, rowvar, dtype=dtype)
    if fnp.ndim(c) == 0:
        return uf.true_divide(c, c)
    std = uf.sqrt(fnp.real(fnp.diagonal(c)))
    c = uf.true_divide(uf.true_divide(c, std[:, None]), std[None, :])
    return fnp.clip(c, -1, 1) if not np.issubdtype(c.dtype, np.complexfloating) else c


def trapezoid(y, x=None, dx=1.0, axis=-1):
    """Integral of ``y`` along ``axis`` by the trapezoidal rule (sample points ``x`` or
    spacing ``dx``)."""
    if not tracing():
        return np.trapezoid(y, x, dx, axis)
    y = operand(y)
    ax = normalize_axis(axis, y.ndim)
    n = y.shape[ax]
    if x is None:
        d = dx
    else:
        x = operand(x)
        from ._shape import diff
        d = diff(x, axis=ax if x.ndim > 1 else 0)
        if x.ndim == 1:
            d = st.reshape(d, tuple(d.shape[0] if i == ax else 1 for i in builtins.range(y.ndim)))
    hi = st.slice_in_dim(y, builtins.min(1, n), n, 1, ax)
    lo = st.slice_in_dim(y, 0, builtins.max(n - 1, 0), 1, ax)
    return sum(uf.true_divide(uf.multiply(d, uf.add(hi, lo)), 2.0), axis=ax)
