"""Conversions and NumPy 2 dtype promotion for funcgrad.numpy.

With no transform active, funcgrad.numpy functions call NumPy (or CuPy) directly, so eager
results are NumPy's own. Under a trace they are built from primitives, converting operands to
the dtypes NumPy's own type resolution picks (``ufunc.resolve_dtypes`` with Python scalars as
weak types), so traced and eager results have the same dtypes.

Weak types. A *weakly typed* value stands for a Python scalar: a Python number, or a traced
input that was one (``grad(f)(3.0)``). As in NumPy 2, weak values take the dtype of the strong
values they meet (``x32 * 2.0`` is float32). Python arithmetic on Python scalars gives Python
scalars, so operators (``x * 2``) on only-weak operands stay weak; funcgrad.numpy *functions*,
like NumPy's, always return strongly typed arrays (``np.sin(3.0)`` is a float64 array scalar,
and ``np.sin(3.0) * x32`` is float64). Traced results therefore match eager ones exactly.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Sequence

import numpy as np

from .. import core, dtypes
from ..core import Literal, ShapedArray, Tracer
from ..primitives import elementwise as ew, structural as st

_PY_SCALARS = (bool, int, float, complex)


def tracing() -> bool:
    return bool(core._state.stack)


def asarray(x, dtype=None, *, copy=None):
    """numpy.asarray. A traced value stays traced (strongly typed, converted if asked);
    a (nested) list holding traced values is stacked. Under a trace, a concrete array (not a
    scalar) becomes a constant of the trace, as in ``jax.numpy``, so ``asarray(table)[i]``
    takes a traced index; with nothing traced the result is NumPy's (or CuPy's) own array."""
    if type(x) is Tracer:
        return astype(x, dtype) if dtype is not None else strong(x)
    if isinstance(x, (list, tuple)) and _contains_tracer(x):
        return _stack_nested(x, dtype)
    if "cupy" in sys.modules and isinstance(x, sys.modules["cupy"].ndarray):
        out = x if dtype is None else x.astype(dtype, copy=bool(copy))
    else:
        out = np.asarray(x, dtype=dtype, copy=copy)
    trace = core.current_trace() if out.ndim else None
    return out if trace is None else trace.const(out)


def array(object, dtype=None, *, copy: bool = True, ndmin: int = 0):
    """numpy.array (a traced value is never copied: traced arrays are immutable)."""
    if type(object) is Tracer or isinstance(object, (list, tuple)) and _contains_tracer(object):
        out = asarray(object, dtype)
        nd = out.ndim
        return st.reshape(out, (1,) * (ndmin - nd) + out.shape) if ndmin > nd else out
    return np.array(object, dtype=dtype, copy=copy, ndmin=ndmin)


def _contains_tracer(x) -> bool:
    if type(x) is Tracer:
        return True
    return isinstance(x, (list, tuple)) and any(_contains_tracer(e) for e in x)


def _stack_nested(x, dtype):
    """np.array of nested sequences holding tracers. As in NumPy's array coercion, Python
    scalars here are not weak: ``[x32, 2.0]`` is float64."""
    from ._shape import stack
    parts = [_stack_nested(e, None) if isinstance(e, (list, tuple)) else operand(e) for e in x]
    out = stack(promote(*parts))
    return astype(out, dtype) if dtype is not None else out


def astype(x, dtype, copy: bool = True):
    """``x.astype(dtype)``; traced values get a ``convert_element_type``."""
    dtype = dtypes.canonicalize_dtype(dtype)
    if type(x) is Tracer:
        return ew.convert_element_type(x, dtype)
    return asarray(x).astype(dtype, copy=copy)


def strong(x: Tracer) -> Tracer:
    """The same traced value, strongly typed (what NumPy's asarray does to a Python scalar)."""
    aval = x.ir_var.aval
    return ew.convert_element_type(x, aval.dtype, False) if aval.weak_type else x


def operand(x):
    """An array argument, as numpy.asarray sees it: tracers (strongly typed), arrays and
    numpy scalars; Python scalars and sequences become arrays."""
    if type(x) is Tracer:
        return strong(x) if x.ir_var.aval.weak_type else x
    if isinstance(x, np.ndarray):
        return x
    return asarray(x)


def weak_operand(x):
    """An operand of a ufunc-like function: as :func:`operand`, but Python scalars and weakly
    typed tracers stay weak (they take the dtype of the arrays they meet)."""
    if type(x) is Tracer or type(x) in _PY_SCALARS or isinstance(x, (np.ndarray, Literal)):
        return x
    return asarray(x)


def is_weak(x) -> bool:
    t = type(x)
    return t in _PY_SCALARS or ((t is Tracer or t is Literal) and x.aval.weak_type)


_WEAK_PYTYPE = {"i": int, "u": int, "f": float, "c": complex}


def dtype_key(x):
    """What NumPy's type resolution needs: a dtype, or the Python type of a weak value.
    (NumPy treats Python bools as ``bool`` arrays: bool is the lowest type anyway.)"""
    t = type(x)
    if t in _PY_SCALARS:
        return _WEAK_PYTYPE.get(dtypes.python_scalar_dtype(x).kind, np.dtype(bool))
    aval = core.get_aval(x)
    if aval.weak_type:
        return _WEAK_PYTYPE.get(aval.dtype.kind, aval.dtype)
    return aval.dtype


@functools.lru_cache(maxsize=8192)
def resolve_ufunc(ufunc: np.ufunc, keys: tuple) -> tuple[np.dtype, ...]:
    """The loop dtypes NumPy uses for ``ufunc`` on operands of these dtypes / weak types:
    ``(in_dtype_0, ..., out_dtype)``."""
    if all(type(k) is type for k in keys):
        # Only Python scalars: NumPy converts them to its default dtypes first (np.less(1, 2)
        # compares int64s); asking with the weak Python types can pick an object loop.
        keys = tuple(dtypes.python_scalar_dtype(k()) for k in keys)
    return ufunc.resolve_dtypes(keys + (None,) * ufunc.nout)


def cast(x, dtype: np.dtype, weak: bool = False):
    """``x`` as a value of ``dtype`` (weakly typed if ``weak``). Python scalars become 0-d
    arrays (weak literals if ``weak``); NumPy's own casting errors (``uint8`` from ``300``)
    are raised as NumPy raises them."""
    t = type(x)
    if t in _PY_SCALARS:
        val = np.asarray(x, dtype)
        return Literal(val, ShapedArray((), dtype, True)) if weak else val
    aval = core.get_aval(x)
    if aval.dtype == dtype and aval.weak_type == weak:
        return x
    if t is Literal:
        return Literal(x.val.astype(dtype), ShapedArray((), dtype, weak))
    if t is Tracer:
        return ew.convert_element_type(x, dtype, weak)
    return x.astype(dtype)


def cast_all(xs: Sequence, dtypes_: Sequence[np.dtype], weak: bool) -> list:
    """Cast operands for one primitive whose result should be weak iff ``weak``. When some
    operand is strong the result is strong anyway, so weak tracers that already have the
    right dtype are left alone (no conversion equation)."""
    any_strong = not all(is_weak(x) for x in xs)
    out = []
    for x, d in zip(xs, dtypes_):
        if type(x) is Tracer and any_strong and x.ir_var.aval.dtype == d:
            out.append(x)
        else:
            out.append(cast(x, d, weak))
    return out


def promote(*xs, weak: bool = False) -> list:
    """Operands converted to their NumPy result type (weak Python scalars follow arrays).
    The results are strong unless ``weak`` and every operand is weak."""
    xs = [weak_operand(x) for x in xs]
    dtype, all_weak = dtypes.result_type(*(x if type(x) in _PY_SCALARS else core.get_aval(x)
                                           for x in xs))
    return cast_all(xs, [dtype] * len(xs), weak and all_weak)


def promote_inexact(*xs) -> list:
    """As :func:`promote`, then to the float dtype NumPy's float ufuncs compute in."""
    xs = [weak_operand(x) for x in xs]
    dtype, _ = dtypes.result_type(*(x if type(x) in _PY_SCALARS else core.get_aval(x) for x in xs))
    return cast_all(xs, [dtypes.inexact_for(dtype)] * len(xs), False)


def result_dtype(*xs) -> np.dtype:
    """NumPy's result dtype for these operands (Python scalars weak)."""
    return dtypes.result_type(*(x if type(x) in _PY_SCALARS else core.get_aval(weak_operand(x))
                                for x in xs))[0]


def _dtype_operand(a):
    """An operand of result_type: traced values by their aval (weak if a Python scalar's)."""
    if type(a) is Tracer:
        return a.aval
    if type(a) in _PY_SCALARS:
        return a
    if not isinstance(a, type) and hasattr(a, "dtype"):
        return ShapedArray(np.shape(a), a.dtype)
    return np.dtype(a)


def result_type(*arrays_and_dtypes) -> np.dtype:
    """numpy.result_type; traced values count by their dtype (and weak type)."""
    if not any(type(a) is Tracer for a in arrays_and_dtypes):
        return np.result_type(*arrays_and_dtypes)
    return dtypes.result_type(*(_dtype_operand(a) for a in arrays_and_dtypes))[0]


def can_cast(from_, to, casting: str = "safe") -> bool:
    """numpy.can_cast; a traced ``from_`` counts by its dtype."""
    return np.can_cast(from_.dtype if type(from_) is Tracer else from_, to, casting)


def shape(a) -> tuple[int, ...]:
    if type(a) is Tracer:
        return a.shape
    return np.shape(a) if not tracing() else core.get_aval(weak_operand(a)).shape


def ndim(a) -> int:
    return len(shape(a))


def size(a, axis: int | None = None) -> int:
    s = shape(a)
    return int(np.prod(s, dtype=np.int64)) if axis is None else s[axis]


def normalize_axis(axis, ndim: int, name: str = "axis") -> int:
    """``axis`` in ``[0, ndim)`` (NumPy's AxisError otherwise)."""
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """``None`` (all axes), an int or a sequence of ints -> a tuple of axes in ``[0, ndim)``."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        return (normalize_axis(axis, ndim),)
    out = tuple(normalize_axis(a, ndim) for a in axis)
    if len(set(out)) != len(out):
        raise ValueError("duplicate value in 'axis'")
    return out


def static(x, what: str = "this argument") -> Any:
    """The concrete value of an argument that must be static (a shape, a count, an index)."""
    if type(x) is Tracer:
        return x.concrete_value(f"a traced value used as {what}")
    return x


