"""Elementwise functions of funcgrad.numpy, with NumPy's dtype rules.

``_ufunc(np.exp, ew.exp_p)`` makes ``exp``: with no trace active it is NumPy's ufunc itself
(CuPy arrays dispatch to CuPy through ``__array_ufunc__``); under a trace the operands are
cast to the loop dtypes NumPy would pick (``ufunc.resolve_dtypes``) and the primitive is
bound. Functions NumPy computes as one ufunc but funcgrad composes from several primitives
pass a ``body`` instead, which receives operands already cast to the loop dtypes.

Each primitive-backed function also has an ``.operator`` variant, used by tracer operators
(``x * 2``): like Python arithmetic on Python scalars, its result is weakly typed when every
operand is (see ``_array``).
"""
from __future__ import annotations

import builtins
import functools
import math
import operator as _op

import numpy as np

from .. import core, dtypes
from ..custom_derivatives import custom_jvp
from ..primitives import elementwise as ew, structural as st
from ._array import (cast_all, dtype_key, is_weak, operand, promote, resolve_ufunc, result_dtype,
                     tracing, weak_operand)


def _loop_dtypes(name: str, np_ufunc: np.ufunc, args) -> tuple[np.dtype, ...]:
    try:
        return resolve_ufunc(np_ufunc, tuple(dtype_key(a) for a in args))
    except TypeError as e:
        raise core.type_error(name, str(e), [core.get_aval(a) for a in args]) from None


def _ufunc(np_ufunc: np.ufunc, prim: core.Primitive | None = None, *, body=None,
           bool_prim: core.Primitive | None = None, name: str | None = None):
    """A traceable ``np_ufunc``: eagerly NumPy's; traced, ``prim`` (or ``body``) applied to
    the operands cast to NumPy's loop dtypes (``bool_prim`` for boolean loops: NumPy's
    ``add`` of booleans is ``or``)."""
    name = name or np_ufunc.__name__
    nin = np_ufunc.nin
    apply = body if body is not None else prim.bind
    apply_bool = bool_prim.bind if bool_prim is not None else apply

    def traced(args, weak: bool):
        args = [weak_operand(a) for a in args]
        loop = _loop_dtypes(name, np_ufunc, args)
        fn = apply_bool if loop[0].kind == "b" else apply
        return fn(*cast_all(args, loop[:nin], weak and all(is_weak(a) for a in args)))

    if nin == 1:
        def fn(x, /):
            if not core._state.stack:
                return np_ufunc(x)
            return traced((x,), False)
    else:
        def fn(x, y, /):
            if not core._state.stack:
                return np_ufunc(x, y)
            return traced((x, y), False)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise ``numpy.{np_ufunc.__name__}``, traceable."
    if body is None:
        fn.operator = lambda *args: traced(args, True)
    return fn


def _identity_unless_float(prim):
    """Body for a ufunc whose NumPy loop keeps integer/bool inputs (floor, ceil): identity
    on those."""
    return lambda x: prim.bind(x) if x.dtype.kind in "fc" else x


# --- arithmetic ---------------------------------------------------------------------------------
add = _ufunc(np.add, ew.add_p, bool_prim=ew.or_p)
subtract = _ufunc(np.subtract, ew.sub_p)
multiply = _ufunc(np.multiply, ew.mul_p, bool_prim=ew.and_p)
true_divide = divide = _ufunc(np.true_divide, ew.div_p, name="true_divide")
floor_divide = _ufunc(np.floor_divide, ew.floor_divide_p)
remainder = mod = _ufunc(np.remainder, ew.rem_p, name="remainder")
negative = _ufunc(np.negative, ew.neg_p)
positive = _ufunc(np.positive, body=lambda x: x)
absolute = abs = _ufunc(np.absolute, ew.abs_p, name="absolute")
fabs = _ufunc(np.fabs, ew.abs_p)
sign = _ufunc(np.sign, ew.sign_p)
maximum = _ufunc(np.maximum, ew.max_p)
minimum = _ufunc(np.minimum, ew.min_p)
square = _ufunc(np.square, body=lambda x: ew.integer_pow(x, 2))
float_power = _ufunc(np.float_power, ew.pow_p)
_power = _ufunc(np.power, ew.pow_p)


def power(x, y, /):
    """``x ** y``. A Python int exponent becomes ``integer_pow`` (exact, cheap to
    differentiate); integers to negative integer powers raise as in NumPy."""
    if type(y) is int and core._state.stack and type(x) is not int:
        return _integer_power(x, y, False)
    return _power(x, y)


def _integer_power(x, y: int, weak: bool):
    """``x ** y`` in NumPy's loop dtype: ``power``'s, but ``square``'s for the operator
    (``weak``) with ``y == 2``, as ``ndarray.__pow__`` squares (a bool array squared is int8)."""
    x = weak_operand(x)
    square = weak and y == 2
    loop = _loop_dtypes("power", np.square if square else np.power, (x,) if square else (x, y))[0]
    if y < 0 and loop.kind in "iu":
        raise ValueError("Integers to negative integer powers are not allowed.")
    (x,) = cast_all([x], [loop], weak and is_weak(x))
    return ew.integer_pow(x, y)


power.operator = lambda x, y: _integer_power(x, y, True) if type(y) is int and type(x) is not int \
    else _power.operator(x, y)
pow = power  # noqa: A001


def _reciprocal(x):
    if x.dtype.kind in "fc":
        return ew.div(1, x)
    # NumPy's integer loop converts 1.0 / x back to the integer type (0 gives the platform's
    # conversion of inf, as NumPy's own cast does).
    f64 = np.dtype(np.float64)
    return ew.convert_element_type(ew.div(1, ew.convert_element_type(x, f64)), x.dtype)


reciprocal = _ufunc(np.reciprocal, body=_reciprocal)


def _divmod(x, y, /):
    return floor_divide(x, y), remainder(x, y)


def divmod(x, y, /):  # noqa: A001
    """``(x // y, x % y)``."""
    return np.divmod(x, y) if not tracing() else _divmod(x, y)


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


def _logaddexp(x, y, exp_fn, expm1_fn, log1p_scale):
    """``log(exp(x) + exp(y))`` (base e or 2) as NumPy computes it, ``max + log1p(exp(min -
    max))``, but written so that every derivative is smooth, ties included: the maximum is
    a constant shift (``stop_gradient``), and ``log1p``'s argument is ``exp(y - c) +
    expm1(x - c)`` (``x`` the larger), exactly ``exp(y - c)`` in value. Infinite shifts are
    replaced by 0, and where an operand is ``+inf`` the result is ``max(x, y)`` while the
    formula sees zeros (double where), so no ``inf - inf`` appears in values or derivatives
    (``d/dx logaddexp(inf, 0) = 1``)."""
    amax = ew.max(x, y)
    posinf = ew.eq(amax, np.asarray(np.inf, amax.dtype))
    x, y = ew.select(posinf, 0, x), ew.select(posinf, 0, y)
    c = ew.stop_gradient(ew.select(ew.is_finite(amax), amax, ew.zeros_like(amax)))
    dx, dy = ew.sub(x, c), ew.sub(y, c)
    arg = ew.select(ew.ge(x, y), ew.add(exp_fn(dy), expm1_fn(dx)), ew.add(exp_fn(dx), expm1_fn(dy)))
    log1p = ew.log1p(arg)
    if log1p_scale != 1:
        log1p = ew.mul(log1p, np.asarray(log1p_scale, arg.dtype))
    return ew.select(posinf, amax, ew.add(c, log1p))


_LN2 = math.log(2)
logaddexp = _ufunc(np.logaddexp, body=lambda x, y: _logaddexp(x, y, ew.exp, ew.expm1, 1.0))
logaddexp2 = _ufunc(np.logaddexp2, body=lambda x, y: _logaddexp(
    x, y, ew.exp2, lambda d: ew.expm1(ew.mul(d, np.asarray(_LN2, d.dtype))), math.log2(math.e)))


def _ldexp(x, i):
    return ew.mul(x, ew.exp2(ew.convert_element_type(i, x.dtype)))


ldexp = _ufunc(np.ldexp, body=_ldexp)


# --- trigonometric and hyperbolic ---------------------------------------------------------------
sin = _ufunc(np.sin, ew.sin_p)
cos = _ufunc(np.cos, ew.cos_p)
tan = _ufunc(np.tan, ew.tan_p)
arcsin = asin = _ufunc(np.arcsin, ew.asin_p, name="arcsin")
arccos = acos = _ufunc(np.arccos, ew.acos_p, name="arccos")
arctan = atan = _ufunc(np.arctan, ew.atan_p, name="arctan")
arctan2 = atan2 = _ufunc(np.arctan2, ew.atan2_p, name="arctan2")
sinh = _ufunc(np.sinh, ew.sinh_p)
cosh = _ufunc(np.cosh, ew.cosh_p)
tanh = _ufunc(np.tanh, ew.tanh_p)
arcsinh = asinh = _ufunc(np.arcsinh, ew.asinh_p, name="arcsinh")
arccosh = acosh = _ufunc(np.arccosh, ew.acosh_p, name="arccosh")
arctanh = atanh = _ufunc(np.arctanh, ew.atanh_p, name="arctanh")


def _hypot(x, y):
    # big * sqrt(1 + (small / big)^2) never overflows; infinities win over NaN as in C.
    x, y = ew.abs(x), ew.abs(y)
    big, small = ew.max(x, y), ew.min(x, y)
    zero = ew.eq(big, 0)
    ratio = ew.div(small, ew.select(zero, ew.ones_like(big), big))
    out = ew.select(zero, big, big * ew.sqrt(ratio * ratio + 1))
    inf = ew.full_like(out, np.inf)
    return ew.select(ew.eq(x, inf) | ew.eq(y, inf), inf, out)


hypot = _ufunc(np.hypot, body=_hypot)
deg2rad = radians = _ufunc(np.deg2rad, body=lambda x: x * (math.pi / 180), name="deg2rad")
rad2deg = degrees = _ufunc(np.rad2deg, body=lambda x: x * (180 / math.pi), name="rad2deg")


def sinc(x, /):
    """``sin(pi x) / (pi x)``, 1 at 0 (computed in the dtype of ``x * 1.0``, as NumPy), with
    every derivative exact at 0 too (:func:`_sinc_maclaurin`)."""
    if not tracing():
        return np.sinc(x)
    x = weak_operand(x)
    (x,) = cast_all([x], [result_dtype(x, 1.0)], False)
    px = x * math.pi
    zero = ew.eq(x, np.zeros((), x.dtype))
    safe = ew.select(zero, ew.ones_like(px), px)
    return ew.select(zero, _sinc_maclaurin(0, px), ew.sin(safe) / safe)


@functools.partial(custom_jvp, nondiff_argnums=(0,))
def _sinc_maclaurin(k: int, x):
    """The ``k``-th derivative of ``sin(x) / x`` at 0, shaped like ``x``: ``(-1)^(k/2) /
    (k + 1)`` for even ``k``, else 0. Its JVP is the ``k + 1``-th, so derivatives of any order
    at 0 are exact (a ``select`` with a constant would make them all 0)."""
    return ew.full_like(x, 0.0 if k % 2 else (-1) ** (k // 2) / (k + 1))


_sinc_maclaurin.defjvp(lambda k, primals, tangents: (
    _sinc_maclaurin(k, *primals), _sinc_maclaurin(k + 1, *primals) * tangents[0]))


# --- rounding -----------------------------------------------------------------------------------
floor = _ufunc(np.floor, body=_identity_unless_float(ew.floor_p))
ceil = _ufunc(np.ceil, body=_identity_unless_float(ew.ceil_p))
rint = _ufunc(np.rint, ew.round_p)


def _trunc(x):
    if x.dtype.kind not in "fc":
        return x
    return ew.select(ew.lt(x, ew.zeros_like(x)), ew.ceil(x), ew.floor(x))


trunc = fix = _ufunc(np.trunc, body=_trunc, name="trunc")


def round(a, decimals: int = 0, out=None):  # noqa: A001
    """numpy.round: half to even, ``decimals`` through a power-of-ten scale as NumPy does."""
    if not tracing():
        return np.round(a, decimals, out)
    _no_out(out, "round")
    x = operand(a)
    is_int = x.dtype.kind in "iu"
    if decimals == 0 and not is_int:
        return rint(x)
    if decimals >= 0 and is_int:
        return x
    if x.dtype.kind == "b":
        raise TypeError("round: booleans can only be rounded to 0 decimals")
    scale = 10.0 ** builtins.abs(decimals)
    y = ew.convert_element_type(x, np.float64) if is_int else x
    if decimals >= 0:
        y = true_divide(ew.round(multiply(y, scale)), scale)
    else:
        y = multiply(ew.round(true_divide(y, scale)), scale)
    return ew.convert_element_type(y, x.dtype) if is_int else y


around = round


def modf(x, /):
    """``(fractional part, integral part)``, both with the sign of ``x``."""
    if not tracing():
        return np.modf(x)
    (x,) = _cast_to_loop("modf", np.modf, x)
    whole = _trunc(x)
    frac = ew.select(ew.eq(ew.abs(x), np.inf), ew.zeros_like(x), ew.sub(x, whole))
    return copysign(frac, x), whole


def _cast_to_loop(name, np_ufunc, *args):
    args = [weak_operand(a) for a in args]
    loop = _loop_dtypes(name, np_ufunc, args)
    return cast_all(args, loop[:np_ufunc.nin], False)


def _no_out(out, name):
    if out is not None:
        raise TypeError(f"{name}: out= is not supported on traced values (arrays are immutable)")


# --- comparisons and logic ----------------------------------------------------------------------
def _comparison(np_ufunc, prim, py_op):
    """A comparison, exact as NumPy 2's: a Python int outside the other operand's integer
    range compares by value (``uint8_array < 1000`` is all True) instead of overflowing, and
    int64 against uint64 compares exactly (NumPy has mixed loops for it)."""

    def mixed_signs(x, y):
        if x.dtype == y.dtype:
            return prim.bind(x, y)
        signed_first = x.dtype.kind == "i"
        s = x if signed_first else y
        negative = ew.lt(s, np.zeros((), s.dtype))    # below every unsigned value
        s = ew.convert_element_type(s, np.dtype(f"u{s.dtype.itemsize}"))
        compared = prim.bind(s, y) if signed_first else prim.bind(x, s)
        when_negative = py_op(-1, 0) if signed_first else py_op(0, -1)
        return ew.select(negative, np.asarray(when_negative), compared)

    base = _ufunc(np_ufunc, body=mixed_signs)

    def outside(c, other) -> int:
        """+1 / -1 if Python int ``c`` is above / below the integer dtype of ``other``."""
        if type(c) is not int or type(other) in (int, float, bool, complex):
            return 0
        dt = core.get_aval(weak_operand(other)).dtype
        if dt.kind not in "iu":
            return 0
        info = dtypes.iinfo(dt)
        return 1 if c > info.max else -1 if c < info.min else 0

    def fn(x, y, /):
        if not core._state.stack:
            return np_ufunc(x, y)
        side_y, side_x = outside(y, x), outside(x, y)
        if side_y or side_x:  # the int beats every value: compare as 1 vs 0 (or 0 vs 1)
            arr = weak_operand(x if side_y else y)
            ans = py_op(0, side_y) if side_y else py_op(side_x, 0)
            return st.full(core.get_aval(arr).shape, ans, dtypes.bool_)
        return base(x, y)

    fn.__name__ = fn.__qualname__ = np_ufunc.__name__
    fn.__doc__ = base.__doc__
    fn.operator = fn
    return fn


equal = _comparison(np.equal, ew.eq_p, _op.eq)
not_equal = _comparison(np.not_equal, ew.ne_p, _op.ne)
less = _comparison(np.less, ew.lt_p, _op.lt)
less_equal = _comparison(np.less_equal, ew.le_p, _op.le)
greater = _comparison(np.greater, ew.gt_p, _op.gt)
greater_equal = _comparison(np.greater_equal, ew.ge_p, _op.ge)


def _truth(x):
    return x if x.dtype.kind == "b" else ew.ne(x, np.zeros((), x.dtype))


logical_and = _ufunc(np.logical_and, body=lambda x, y: ew.bitwise_and(_truth(x), _truth(y)))
logical_or = _ufunc(np.logical_or, body=lambda x, y: ew.bitwise_or(_truth(x), _truth(y)))
logical_xor = _ufunc(np.logical_xor, body=lambda x, y: ew.ne(_truth(x), _truth(y)))
logical_not = _ufunc(np.logical_not, body=lambda x: ew.bitwise_not(_truth(x)))
bitwise_and = _ufunc(np.bitwise_and, ew.and_p)
bitwise_or = _ufunc(np.bitwise_or, ew.or_p)
bitwise_xor = _ufunc(np.bitwise_xor, ew.xor_p)
invert = bitwise_not = bitwise_invert = _ufunc(np.invert, ew.not_p, name="invert")
left_shift = bitwise_left_shift = _ufunc(np.left_shift, ew.shift_left_p, name="left_shift")
right_shift = bitwise_right_shift = _ufunc(np.right_shift, ew.shift_right_p, name="right_shift")
nextafter = _ufunc(np.nextafter, ew.nextafter_p)


def _constant_for_non_float(fn, value: bool):
    return lambda x: fn(x) if x.dtype.kind in "fc" else st.full(x.shape, value, dtypes.bool_)


def _isinf(x):
    return ew.eq(ew.abs(x), np.asarray(np.inf, x.dtype))


isfinite = _ufunc(np.isfinite, body=_constant_for_non_float(ew.is_finite, True))
isnan = _ufunc(np.isnan, body=_constant_for_non_float(lambda x: ew.ne(x, x), False))
isinf = _ufunc(np.isinf, body=_constant_for_non_float(_isinf, False))


def _signbit(x):
    if x.dtype.kind == "f":
        int_dt = np.dtype(f"int{x.dtype.itemsize * 8}")
        return ew.lt(ew.bitcast_convert_type(x, int_dt), np.zeros((), int_dt))
    return ew.lt(x, np.zeros((), x.dtype))


signbit = _ufunc(np.signbit, body=_signbit)


def isposinf(x, /):
    if not tracing():
        return np.isposinf(x)
    return logical_and(isinf(x), logical_not(signbit(x)))


def isneginf(x, /):
    if not tracing():
        return np.isneginf(x)
    return logical_and(isinf(x), signbit(x))


def _copysign(x, y):
    mag = ew.abs(x)
    return ew.select(_signbit(y), ew.neg(mag), mag)


copysign = _ufunc(np.copysign, body=_copysign)


def _fmax_fmin(prim_fn):
    """Maximum/minimum ignoring NaNs (NaN only where both are)."""
    def body(x, y):
        if x.dtype.kind not in "fc":
            return prim_fn(x, y)
        return ew.select(ew.ne(x, x), y, ew.select(ew.ne(y, y), x, prim_fn(x, y)))
    return body


fmax = _ufunc(np.fmax, body=_fmax_fmin(ew.max))
fmin = _ufunc(np.fmin, body=_fmax_fmin(ew.min))


def _fmod(x, y):
    """C's remainder, with the sign of the dividend."""
    if x.dtype.kind in "fc":  # exact: fmod(|x|, |y|) == remainder(|x|, |y|)
        return _copysign(ew.rem(ew.abs(x), ew.abs(y)), x)
    r = ew.rem(x, y)
    zero = ew.zeros_like(r)
    wrong_sign = ew.bitwise_and(ew.ne(r, zero), ew.ne(ew.lt(r, zero), ew.lt(x, ew.zeros_like(x))))
    return ew.select(wrong_sign, ew.sub(r, y), r)


fmod = _ufunc(np.fmod, body=_fmod)


def _heaviside(x, h0):
    zero = ew.zeros_like(x)
    step = ew.select(ew.lt(x, zero), zero, ew.select(ew.gt(x, zero), ew.ones_like(x), x))
    return ew.select(ew.eq(x, zero), h0, step)


heaviside = _ufunc(np.heaviside, body=_heaviside)


# --- real and complex parts (funcgrad's primitives are real-valued) ------------------------------
def _real_only(name, np_fn, traced_fn):
    def fn(x, /):
        if not tracing():
            return np_fn(x)
        x = operand(x)
        if x.dtype.kind == "c":
            raise NotImplementedError(f"{name}: complex traced values are not supported")
        return traced_fn(x)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"``numpy.{name}`` (real inputs under a trace)."
    return fn


real = _real_only("real", np.real, lambda x: x)
imag = _real_only("imag", np.imag, ew.zeros_like)


def _conjugate(x):
    if x.dtype.kind == "c":
        raise NotImplementedError("conjugate: complex traced values are not supported")
    return x


conjugate = conj = _ufunc(np.conjugate, body=_conjugate, name="conjugate")
isreal = _real_only("isreal", np.isreal, lambda x: st.full(x.shape, True, dtypes.bool_))
iscomplex = _real_only("iscomplex", np.iscomplex, lambda x: st.full(x.shape, False, dtypes.bool_))


def angle(z, deg: bool = False):
    """The argument of ``z``, ``arctan2(0, z)`` for real ``z``: pi where the sign bit is set."""
    if not tracing():
        return np.angle(z, deg)
    _, z = _cast_to_loop("angle", np.arctan2, 0, z)
    if z.dtype.kind == "c":
        raise NotImplementedError("angle: complex traced values are not supported")
    half_turn = 180.0 if deg else math.pi
    turned = ew.select(_signbit(z), ew.full_like(z, half_turn), ew.zeros_like(z))
    return ew.select(ew.ne(z, z), z, turned)


# --- clip and where -------------------------------------------------------------------------------
_NO_VALUE = object()


def clip(a, a_min=_NO_VALUE, a_max=_NO_VALUE, out=None, *, min=_NO_VALUE, max=_NO_VALUE):
    """numpy.clip: ``minimum(maximum(a, lo), hi)``; a bound may be None. The derivative
    passes through where ``lo <= a <= hi`` (boundaries included)."""
    lo = a_min if a_min is not _NO_VALUE else (None if min is _NO_VALUE else min)
    hi = a_max if a_max is not _NO_VALUE else (None if max is _NO_VALUE else max)
    if not tracing():
        return np.clip(a, lo, hi, out)
    _no_out(out, "clip")
    a = operand(a)
    lo, hi = (_bound_in_range(b, a) for b in (lo, hi))
    if lo is None and hi is None:
        return positive(a)
    if lo is None or hi is None:
        return _clip_one_sided(a, lo, hi)
    return ew.clamp_p.bind(*promote(a, lo, hi))


def _clip_one_sided(a, lo, hi):
    """``clip`` with one bound None: ``clamp`` with the result dtype's extreme in its place,
    so ties follow the two-sided rule (derivative 1 at the bound, not ``maximum``'s 1/2)."""
    a, bound = promote(a, hi if lo is None else lo)
    far = dtypes.extreme(a.dtype, highest=lo is not None)
    return ew.clamp(a, far, bound) if lo is None else ew.clamp(a, bound, far)


def _bound_in_range(bound, a):
    """NumPy 2 clips integer arrays by Python-int bounds outside their range without error."""
    dt = a.dtype
    if type(bound) is int and dt.kind in "iu":
        info = dtypes.iinfo(dt)
        return builtins.min(builtins.max(bound, int(info.min)), int(info.max))
    return bound


def where(condition, x=None, y=None, /, *, size=None, fill_value=None):
    """numpy.where: select from ``x`` where ``condition``, else ``y`` (broadcasting).

    With only ``condition``, the indices of nonzero entries: needs a concrete value, or
    ``size`` (and ``fill_value``) as in jax.numpy and :func:`nonzero`.
    """
    if x is None and y is None:
        from ._indexing import nonzero
        return nonzero(condition, size=size, fill_value=fill_value)
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    if size is not None or fill_value is not None:
        raise ValueError("where: size and fill_value apply to the one-argument form only")
    if not tracing():
        return np.where(condition, x, y)
    cond = _truth(operand(condition))
    x, y = weak_operand(x), weak_operand(y)
    dtype = result_dtype(x, y)
    # NumPy casts the values unsafely: a Python int out of range wraps around.
    x, y = (np.array(v).astype(dtype) if type(v) is int else v for v in (x, y))
    return ew.select(cond, *cast_all([x, y], [dtype, dtype], False))


def nan_to_num(x, copy: bool = True, nan=0.0, posinf=None, neginf=None):
    """Replace NaN by ``nan`` and infinities by ``posinf``/``neginf`` (default: the largest
    finite values of the dtype)."""
    if not tracing():
        return np.nan_to_num(x, copy=copy, nan=nan, posinf=posinf, neginf=neginf)
    x = operand(x)
    if x.dtype.kind not in "fc":
        return x
    info = dtypes.finfo(x.dtype)
    big = ew.full_like(x, info.max if posinf is None else posinf)
    small = ew.full_like(x, info.min if neginf is None else neginf)
    x = ew.select(ew.ne(x, x), ew.full_like(x, nan), x)
    x = ew.select(ew.eq(x, np.asarray(np.inf, x.dtype)), big, x)
    return ew.select(ew.eq(x, np.asarray(-np.inf, x.dtype)), small, x)


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan: bool = False):
    """``|a - b| <= atol + rtol * |b|`` elementwise, computed as NumPy does (``b`` made
    inexact, the tolerance in ``b``'s dtype); infinities are close only to themselves."""
    if not tracing():
        return np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)
    if type(b) is int:
        b = float(b)
    elif type(b) is not float:
        b = operand(b)
        (b,) = cast_all([b], [result_dtype(b, 1.0)], False)
    tol = add(atol, multiply(rtol, absolute(b)))
    close = logical_and(less_equal(absolute(subtract(a, b)), tol), isfinite(b))
    out = logical_or(close, equal(a, b))
    return logical_or(out, logical_and(isnan(a), isnan(b))) if equal_nan else out


def interp(x, xp, fp, left=None, right=None, period=None):
    """numpy.interp: piecewise-linear interpolation of ``(xp, fp)`` (``xp`` increasing) at
    ``x``, in float64, with NumPy's rules at the knots and outside ``[xp[0], xp[-1]]``.
    Differentiable in ``x`` and ``fp`` (and ``xp``); ``period`` is not supported traced."""
    if not tracing():
        return np.interp(x, xp, fp, left, right, period)
    if period is not None:
        raise NotImplementedError("interp: period= is not supported on traced values")
    from ._indexing import searchsorted, take
    f64 = np.dtype(np.float64)
    x, xp, fp = (ew.convert_element_type(operand(v), f64) for v in (x, xp, fp))
    if xp.ndim != 1 or fp.ndim != 1 or xp.shape != fp.shape:
        raise ValueError("fp and xp are not of the same length.")
    n = xp.shape[0]
    if n == 0:
        raise ValueError("array of sample points is empty")
    first, last = take(fp, 0), take(fp, n - 1)
    if n == 1:
        inside = st.broadcast_to(first, x.shape)
    else:
        j = ew.clamp(ew.sub(searchsorted(xp, x, "right"), 1), 0, n - 2)
        x0, x1, y0, y1 = take(xp, j), take(xp, ew.add(j, 1)), take(fp, j), take(fp, ew.add(j, 1))
        slope = ew.div(ew.sub(y1, y0), ew.sub(x1, x0))
        below = ew.add(ew.mul(slope, ew.sub(x, x0)), y0)
        above = ew.add(ew.mul(slope, ew.sub(x, x1)), y1)  # NumPy's retry where below is NaN
        inside = ew.select(ew.ne(below, below), above, below)
        flat = ew.bitwise_and(ew.ne(inside, inside), ew.eq(y0, y1))
        inside = ew.select(flat, y0, inside)
        inside = ew.select(ew.eq(x, x0), y0, inside)
    lo_val = first if left is None else np.asarray(left, f64)
    hi_val = last if right is None else np.asarray(right, f64)
    x_first, x_last = take(xp, 0), take(xp, n - 1)
    out = ew.select(ew.eq(x, x_last), st.broadcast_to(last, x.shape), inside)
    out = ew.select(ew.gt(x, x_last), st.broadcast_to(hi_val, x.shape), out)
    out = ew.select(ew.lt(x, x_first), st.broadcast_to(lo_val, x.shape), out)
    return ew.select(ew.ne(x, x), x, out) if n > 1 else out   # NumPy's NaN rule needs 2 knots
