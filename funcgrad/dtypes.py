"""Dtype rules: NumPy 2 promotion with weakly typed Python scalars (NEP 50), and float0.

A value is *weakly typed* when it came from a Python scalar (``2.0``, ``3``, ``True``). Weak
values take the dtype of the strong values they meet, exactly as NumPy 2 does:
``float32_array * 2.0`` is float32, ``int32_array * 2.5`` is float64. We delegate the lattice to
``numpy.result_type`` itself (which implements NEP 50 for Python scalars), so the rules are
NumPy's by construction, and cache the answers.
"""
from __future__ import annotations

import functools

import numpy as np

float0 = np.dtype([("float0", np.void, 0)])
"""Dtype of the tangent of an integer or boolean value (it carries no information)."""

bool_ = np.dtype(np.bool_)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
uint32 = np.dtype(np.uint32)
float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

# A Python scalar of each kind, used to ask NumPy how a weak value of that kind promotes.
_WEAK_STANDINS = {"b": False, "i": 0, "u": 0, "f": 0.0, "c": 0j}
_DEFAULT_OF_KIND = {"b": bool_, "i": int64, "u": int64, "f": float64, "c": np.dtype(np.complex128)}


def python_scalar_dtype(x: bool | int | float | complex) -> np.dtype:
    """The dtype a Python scalar gets on its own (NumPy's defaults)."""
    return _DEFAULT_OF_KIND[_KIND_OF_PYTYPE[type(x)]]


_KIND_OF_PYTYPE = {bool: "b", int: "i", float: "f", complex: "c"}


def is_python_scalar(x) -> bool:
    return type(x) in _KIND_OF_PYTYPE


def is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f"


def is_inexact(dtype: np.dtype) -> bool:
    return dtype.kind in "fc"


def is_integer(dtype: np.dtype) -> bool:
    return dtype.kind in "iu"


def is_differentiable(dtype: np.dtype) -> bool:
    """Only inexact values have (nonzero) tangents; the rest get float0 tangents."""
    return dtype.kind in "fc"


def tangent_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if is_differentiable(dtype) else float0


@functools.lru_cache(maxsize=4096)
def _result_type(strong: tuple[np.dtype, ...], weak_kinds: tuple[str, ...]) -> np.dtype:
    if not strong:
        # Only weak values: Python's own promotion between the kinds, at NumPy's defaults.
        return np.result_type(*(_DEFAULT_OF_KIND[k] for k in weak_kinds))
    return np.result_type(*strong, *(_WEAK_STANDINS[k] for k in weak_kinds))


def result_type(*avals_or_dtypes) -> tuple[np.dtype, bool]:
    """Promote per NumPy 2. Accepts avals (with ``weak_type``), dtypes, or Python scalars.

    Returns ``(dtype, weak_type)``; the result is weak only when every input is weak.
    """
    strong, weak = [], []
    for a in avals_or_dtypes:
        if type(a) in _KIND_OF_PYTYPE:
            weak.append(_KIND_OF_PYTYPE[type(a)])
        elif isinstance(a, np.dtype):
            strong.append(a)
        elif getattr(a, "weak_type", False):
            weak.append(a.dtype.kind)
        else:
            strong.append(np.dtype(a.dtype))
    return _result_type(tuple(strong), tuple(weak)), not strong


def canonicalize_dtype(dtype) -> np.dtype:
    """Accept anything NumPy accepts as a dtype (``'float32'``, ``np.float32``, ``float``)."""
    if dtype is float0:
        return float0
    return np.dtype(dtype)


@functools.lru_cache(maxsize=1024)
def finfo(dtype: np.dtype):
    return np.finfo(dtype)


@functools.lru_cache(maxsize=1024)
def iinfo(dtype: np.dtype):
    return np.iinfo(dtype)


def extreme(dtype: np.dtype, highest: bool):
    """The highest (or lowest) value of a real or boolean ``dtype``: +-inf for floats."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.bool_(highest)
    if dtype.kind == "f":
        return dtype.type(np.inf if highest else -np.inf)
    info = np.iinfo(dtype)
    return dtype.type(info.max if highest else info.min)


@functools.lru_cache(maxsize=256)
def inexact_for(dtype: np.dtype) -> np.dtype:
    """The float dtype NumPy's float ufuncs (``np.sin`` & co.) compute an input of ``dtype`` in."""
    if dtype.kind in "fc":
        return dtype
    return np.sin(np.zeros((), dtype)).dtype


def short_name(dtype: np.dtype) -> str:
    """Compact dtype name for printing IR: f32, i64, u8, bool, c64, float0."""
    if dtype == float0:
        return "float0"
    if dtype.kind == "b":
        return "bool"
    return {"f": "f", "i": "i", "u": "u", "c": "c"}[dtype.kind] + str(dtype.itemsize * 8)
