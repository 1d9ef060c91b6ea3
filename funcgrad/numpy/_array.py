"""Conversions and NumPy 2 dtype promotion for funcgrad.numpy.

With no transform active, funcgrad.numpy functions call NumPy (or CuPy) directly, so eager
results are NumPy's own. Under a trace they are built from primitives; the dtype each
operand is converted to is the one NumPy's own type resolution picks (``ufunc.resolve_dtypes``
with Python scalars as weak types), so traced and eager results have the same dtypes.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from .. import core, dtypes
from ..core import Literal, ShapedArray, Tracer
from ..primitives import elementwise as ew, structural as st

_PY_SCALARS = (bool, int, float, complex)


def tracing() -> bool:
    return bool(core._state.stack)


def is_traced(*xs) -> bool:
    return any(type(x) is Tracer for x in xs)


def asarray(x, dtype=None, copy=None):
    """Like numpy.asarray; traced values stay traced (converted with astype if asked)."""
    if type(x) is Tracer:
        return x if dtype is None else astype(x, dtype)
    if isinstance(x, (list, tuple)) and _contains_tracer(x):
        return _stack_nested(x, dtype)
    if "cupy" in __import__("sys").modules:
        import cupy
        if isinstance(x, cupy.ndarray):
            return x if dtype is None else x.astype(dtype, copy=False)
    return np.array(x, dtype=dtype, copy=copy) if copy else np.asarray(x, dtype=dtype)


def array(x, dtype=None, copy: bool = True, ndmin: int = 0):
    out = asarray(x, dtype, copy=copy if type(x) is not Tracer else None)
    nd = core.get_aval(out).ndim
    if ndmin > nd:
        out = st.reshape(out, (1,) * (ndmin - nd) + core.get_aval(out).shape)
    return out


def _contains_tracer(x) -> bool:
    if type(x) is Tracer:
        return True
    if isinstance(x, (list, tuple)):
        return any(_contains_tracer(e) for e in x)
    return False


def _stack_nested(x, dtype):
    from ._shape import stack
    return stack([_stack_nested(e, dtype) if isinstance(e, (list, tuple)) else asarray(e, dtype)
                  for e in x])


def astype(x, dtype, copy: bool = False):
    dtype = dtypes.canonicalize_dtype(dtype)
    if type(x) is Tracer:
        return ew.convert_element_type(x, dtype)
    x = asarray(x)
    return x.astype(dtype, copy=copy)


def operand(x):
    """A valid operand: tracers, arrays and Python scalars pass; sequences become arrays."""
    if type(x) is Tracer or type(x) in _PY_SCALARS or isinstance(x, (np.ndarray, np.generic)):
        return x
    return asarray(x)


def aval_key(x):
    """What NumPy's type resolution needs: a dtype, or the Python type of a weak scalar."""
    if type(x) in _PY_SCALARS:
        return type(x)
    if type(x) is Tracer and x.ir_var.aval.weak_type:
        return _WEAK_PYTYPE[x.ir_var.aval.dtype.kind]
    return x.dtype


_WEAK_PYTYPE = {"b": bool, "i": int, "u": int, "f": float, "c": complex}


@functools.lru_cache(maxsize=8192)
def resolve_ufunc(ufunc: np.ufunc, keys: tuple) -> tuple[np.dtype, ...]:
    """The loop dtypes NumPy uses for ``ufunc`` on operands of these dtypes / weak types:
    ``(in_dtype_0, ..., out_dtype)``."""
    return ufunc.resolve_dtypes(keys + (None,) * ufunc.nout)


def cast(x, dtype: np.dtype, weak: bool = False):
    """Convert an operand to ``dtype`` (Python scalars become typed literals)."""
    if type(x) in _PY_SCALARS:
        val = np.asarray(x, dtype)
        return Literal(val, ShapedArray((), dtype, weak)) if tracing() else val
    if type(x) is Tracer:
        aval = x.ir_var.aval
        if aval.dtype == dtype and aval.weak_type == weak:
            return x
        return ew.convert_element_type(x, dtype, weak)
    if x.dtype == dtype:
        return x
    return x.astype(dtype)


def is_weak(x) -> bool:
    return type(x) in _PY_SCALARS or (type(x) is Tracer and x.ir_var.aval.weak_type)


def promote(*xs):
    """Convert operands to their NumPy result type (weak Python scalars follow arrays)."""
    xs = [operand(x) for x in xs]
    dtype, weak = dtypes.result_type(*(x if type(x) in _PY_SCALARS else core.get_aval(x) for x in xs))
    return [cast(x, dtype, weak) for x in xs]


def promote_inexact(*xs):
    """As :func:`promote`, then to the float dtype NumPy computes such operands in."""
    xs = promote(*xs)
    dtype = core.get_aval(xs[0]).dtype
    inexact = dtypes.inexact_for(dtype)
    if inexact != dtype:
        weak = all(is_weak(x) for x in xs)
        xs = [cast(x, inexact, weak) for x in xs]
    return xs


def result_dtype(*xs) -> np.dtype:
    return dtypes.result_type(*(x if type(x) in _PY_SCALARS else core.get_aval(x) for x in xs))[0]


def shape(x) -> tuple[int, ...]:
    return core.get_aval(operand(x)).shape


def ndim(x) -> int:
    return len(shape(x))


def size(x, axis=None) -> int:
    s = shape(x)
    return int(np.prod(s, dtype=np.int64)) if axis is None else s[axis]


def normalize_axis(axis: int, ndim: int, name: str = "axis") -> int:
    if not -ndim <= axis < max(ndim, 1):
        raise np.exceptions.AxisError(f"{name} {axis} is out of bounds for array of dimension {ndim}")
    return axis % max(ndim, 1)


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    out = tuple(normalize_axis(int(a), ndim) for a in axis)
    if len(set(out)) != len(out):
        raise ValueError("duplicate value in 'axis'")
    return out


def value(x) -> Any:
    """The concrete value of a (possibly traced) integer-like argument, for shapes/indices."""
    if type(x) is Tracer:
        return x.concrete_value("a traced value used where a static value is needed")
    return x
