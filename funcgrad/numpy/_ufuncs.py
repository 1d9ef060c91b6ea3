"""Elementwise functions of funcgrad.numpy, with NumPy's dtype rules.

``_ufunc(np.exp, ew.exp_p)`` makes ``exp``: eagerly it is the primitive's impl (NumPy's
ufunc); under a trace the operands are cast to the loop dtypes NumPy would pick and the
primitive is bound. Functions NumPy computes from several operations are composed here from
the primitives' lax-level functions.
"""
from __future__ import annotations

import numpy as np

from .. import core
from ..core import Tracer
from ..primitives import elementwise as ew
from ._array import aval_key, cast, is_weak, operand, promote, resolve_ufunc, tracing


def _ufunc(np_ufunc: np.ufunc, prim: core.Primitive, name: str | None = None):
    nin = np_ufunc.nin

    def fn(*args):
        if len(args) != nin:
            raise TypeError(f"{fn.__name__}() takes {nin} positional arguments but {len(args)} were given")
        if not core._state.stack:
            return prim.bind(*args)
        args = [operand(a) for a in args]
        try:
            loop = resolve_ufunc(np_ufunc, tuple(aval_key(a) for a in args))
        except TypeError as e:
            raise core.type_error(fn.__name__, str(e), [core.get_aval(a) for a in args]) from None
        weak = all(is_weak(a) for a in args)
        return prim.bind(*(cast(a, d, weak) for a, d in zip(args, loop[:nin])))

    fn.__name__ = fn.__qualname__ = name or np_ufunc.__name__
    fn.__doc__ = f"Elementwise ``numpy.{np_ufunc.__name__}``, traceable (primitive ``{prim.name}``)."
    return fn


# --- arithmetic ---------------------------------------------------------------------------------
add = _ufunc(np.add, ew.add_p)
subtract = _ufunc(np.subtract, ew.sub_p)
multiply = _ufunc(np.multiply, ew.mul_p)
true_divide = divide = _ufunc(np.true_divide, ew.div_p, "true_divide")
floor_divide = _ufunc(np.floor_divide, ew.floor_divide_p)
remainder = mod = _ufunc(np.remainder, ew.rem_p, "remainder")
negative = _ufunc(np.negative, ew.neg_p)
absolute = abs = _ufunc(np.absolute, ew.abs_p, "absolute")
sign = _ufunc(np.sign, ew.sign_p)
maximum = _ufunc(np.maximum, ew.max_p)
minimum = _ufunc(np.minimum, ew.min_p)
_power = _ufunc(np.power, ew.pow_p, "power")


def power(x, y):
    """``x ** y``; a static integer exponent becomes ``integer_pow`` (exact, cheap)."""
    if type(y) is int and type(x) is Tracer:
        if y < 0 and x.dtype.kind in "iu":
            raise ValueError("Integers to negative integer powers are not allowed.")
        return ew.integer_pow(x, y)
    return _power(x, y)


def square(x):
    return power(x, 2) if type(x) is Tracer else np.square(x)


def reciprocal(x):
    return true_divide(1, x) if tracing() else np.reciprocal(x)


def positive(x):
    return operand(x)


def float_power(x, y):
    return _power(*(cast(operand(v), np.dtype(np.float64)) for v in promote(x, y)))


# --- exponents, logs, powers ---------------------------------------------------------------------
exp = _ufunc(np.exp, ew.exp_p)
exp2 = _ufunc(np.exp2, ew.exp2_p)
expm1 = _ufunc(np.expm1, ew.expm1_p)
log = _ufunc(np.log, ew.log_p)
log2 = _ufunc(np.log2, ew.log2_p)
log10 = _ufunc(np.log10, ew.log10_p)
log1p = _ufunc(np.log1p, ew.log1p_p)
sqrt = _ufunc(np.sqrt, ew.sqrt_p)
cbrt = _ufunc(np.cbrt, ew.cbrt_p)


def logaddexp(x, y):
    """log(exp(x) + exp(y)) without overflow; exact at x == y == -inf."""
    if not tracing():
        return np.logaddexp(x, y)
    x, y = _inexact(x, y)
    amax = maximum(x, y)
    delta = subtract(x, y)
    finite = ew.is_finite(delta)
    safe = amax + log1p(exp(negative(absolute(ew.select(finite, delta, ew.zeros_like(delta))))))
    return ew.select(finite, safe, amax)


def logaddexp2(x, y):
    if not tracing():
        return np.logaddexp2(x, y)
    ln2 = np.log(2.0)
    return true_divide(logaddexp(multiply(x, ln2), multiply(y, ln2)), ln2)


def _inexact(*xs):
    from ._array import promote_inexact
    return promote_inexact(*xs)


# --- trigonometric and hyperbolic ---------------------------------------------------------------
sin = _ufunc(np.sin, ew.sin_p)
cos = _ufunc(np.cos, ew.cos_p)
tan = _ufunc(np.tan, ew.tan_p)
arcsin = asin = _ufunc(np.arcsin, ew.asin_p, "arcsin")
arccos = acos = _ufunc(np.arccos, ew.acos_p, "arccos")
arctan = atan = _ufunc(np.arctan, ew.atan_p, "arctan")
arctan2 = atan2 = _ufunc(np.arctan2, ew.atan2_p, "arctan2")
sinh = _ufunc(np.sinh, ew.sinh_p)
cosh = _ufunc(np.cosh, ew.cosh_p)
tanh = _ufunc(np.tanh, ew.tanh_p)
arcsinh = asinh = _ufunc(np.arcsinh, ew.asinh_p, "arcsinh")
arccosh = acosh = _ufunc(np.arccosh, ew.acosh_p, "arccosh")
arctanh = atanh = _ufunc(np.arctanh, ew.atanh_p, "arctanh")


def hypot(x, y):
    if not tracing():
        return np.hypot(x, y)
    x, y = (absolute(v) for v in _inexact(x, y))
    big, small = maximum(x, y), minimum(x, y)
    safe_big = ew.select(big == 0, ew.ones_like(big), big)
    ratio = small / safe_big
    return ew.select(big == 0, big, big * sqrt(1 + ratio * ratio))


def deg2rad(x):
    return multiply(_inexact(x)[0], np.pi / 180) if tracing() else np.deg2rad(x)


def rad2deg(x):
    return multiply(_inexact(x)[0], 180 / np.pi) if tracing() else np.rad2deg(x)


radians, degrees = deg2rad, rad2deg


def sinc(x):
    if not tracing():
        return np.sinc(x)
    (x,) = _inexact(x)
    px = multiply(x, np.pi)
    safe = ew.select(x == 0, ew.ones_like(px), px)
    return ew.select(x == 0, ew.ones_like(px), sin(safe) / safe)


# --- rounding -----------------------------------------------------------------------------------
floor = _ufunc(np.floor, ew.floor_p)
ceil = _ufunc(np.ceil, ew.ceil_p)
rint = _ufunc(np.rint, ew.round_p, "rint")


def trunc(x):
    if not tracing():
        return np.trunc(x)
    x = operand(x)
    if core.get_aval(x).dtype.kind in "iub":
        return x
    return ew.select(ew.lt(x, ew.zeros_like(x)), ceil(x), floor(x))


fix = trunc


def round(x, decimals: int = 0):
    """Round half to even, like numpy.round (``decimals`` as numpy: via a scale)."""
    if not tracing():
        return np.round(x, decimals)
    x = operand(x)
    if decimals == 0 or core.get_aval(x).dtype.kind in "iub":
        return rint(x) if decimals == 0 else x
    scale = 10.0 ** decimals
    return true_divide(rint(multiply(x, scale)), scale)


around = round

# --- comparisons and logic ----------------------------------------------------------------------
equal = _ufunc(np.equal, ew.eq_p)
not_equal = _ufunc(np.not_equal, ew.ne_p)
less = _ufunc(np.less, ew.lt_p)
less_equal = _ufunc(np.less_equal, ew.le_p)
greater = _ufunc(np.greater, ew.gt_p)
greater_equal = _ufunc(np.greater_equal, ew.ge_p)
logical_and = _ufunc(np.logical_and, ew.and_p)
logical_or = _ufunc(np.logical_or, ew.or_p)
logical_xor = _ufunc(np.logical_xor, ew.xor_p)
logical_not = _ufunc(np.logical_not, ew.not_p)
bitwise_and = _ufunc(np.bitwise_and, ew.and_p)
bitwise_or = _ufunc(np.bitwise_or, ew.or_p)
bitwise_xor = _ufunc(np.bitwise_xor, ew.xor_p)
invert = bitwise_not = bitwise_invert = _ufunc(np.invert, ew.not_p, "invert")
left_shift = bitwise_left_shift = _ufunc(np.left_shift, ew.shift_left_p, "left_shift")
right_shift = bitwise_right_shift = _ufunc(np.right_shift, ew.shift_right_p, "right_shift")
isfinite = _ufunc(np.isfinite, ew.is_finite_p)
nextafter = _ufunc(np.nextafter, ew.nextafter_p)


def isnan(x):
    if not tracing():
        return np.isnan(x)
    x = operand(x)
    if core.get_aval(x).dtype.kind not in "fc":
        return ew.full_like(x, False) if type(x) is Tracer else np.zeros(np.shape(x), bool)
    return not_equal(x, x)


def isinf(x):
    if not tracing():
        return np.isinf(x)
    x = operand(x)
    if core.get_aval(x).dtype.kind not in "fc":
        return ew.full_like(x, False) if type(x) is Tracer else np.zeros(np.shape(x), bool)
    return equal(absolute(x), np.inf)


def isposinf(x):
    return logical_and(isinf(x), greater(x, 0)) if tracing() else np.isposinf(x)


def isneginf(x):
    return logical_and(isinf(x), less(x, 0)) if tracing() else np.isneginf(x)


def signbit(x):
    if not tracing():
        return np.signbit(x)
    x = operand(x)
    dt = core.get_aval(x).dtype
    if dt.kind in "iu":
        return less(x, 0)
    if dt.kind == "b":
        return ew.full_like(x, False)
    int_dt = np.dtype(f"int{dt.itemsize * 8}")
    return ew.lt(ew.bitcast_convert_type(x, int_dt), np.zeros((), int_dt))


def copysign(x, y):
    if not tracing():
        return np.copysign(x, y)
    x, y = _inexact(x, y)
    mag = absolute(x)
    return ew.select(signbit(y), negative(mag), mag)


def fmax(x, y):
    """Maximum ignoring NaNs (NaN only where both are NaN)."""
    if not tracing():
        return np.fmax(x, y)
    x, y = promote(x, y)
    return ew.select(isnan(x), y, ew.select(isnan(y), x, maximum(x, y)))


def fmin(x, y):
    if not tracing():
        return np.fmin(x, y)
    x, y = promote(x, y)
    return ew.select(isnan(x), y, ew.select(isnan(y), x, minimum(x, y)))


def fmod(x, y):
    """C-style remainder: the sign of the dividend."""
    if not tracing():
        return np.fmod(x, y)
    x, y = promote(x, y)
    r = remainder(x, y)
    fix_sign = logical_and(not_equal(r, 0), not_equal(less(r, 0), less(x, 0)))
    return ew.select(fix_sign, subtract(r, y), r)


def heaviside(x, h0):
    if not tracing():
        return np.heaviside(x, h0)
    x, h0 = _inexact(x, h0)
    zero, one = ew.zeros_like(x), ew.ones_like(x)
    return ew.select(less(x, 0), zero, ew.select(greater(x, 0), one, ew.select(x == x, h0 + zero, x)))


def real(x):
    return operand(x) if tracing() else np.real(x)


def imag(x):
    return ew.zeros_like(operand(x)) if tracing() else np.imag(x)


def conjugate(x):
    return operand(x) if tracing() else np.conjugate(x)


conj = conjugate


def clip(x, min=None, max=None, *, a_min=None, a_max=None):
    """numpy.clip: ``minimum(maximum(x, min), max)``; either bound may be None."""
    lo = min if min is not None else a_min
    hi = max if max is not None else a_max
    if not tracing():
        return np.clip(x, lo, hi)
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def where(condition, x=None, y=None):
    """numpy.where: select from ``x`` where ``condition``, else ``y`` (broadcasting).

    With only ``condition``, the indices of nonzero entries (needs a concrete value).
    """
    if x is None and y is None:
        from ._indexing import nonzero
        return nonzero(condition)
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    if not tracing():
        return np.where(condition, x, y)
    cond = operand(condition)
    if core.get_aval(cond).dtype.kind != "b":
        cond = not_equal(cond, 0)
    x, y = promote(x, y)
    return ew.select(cond, x, y)
