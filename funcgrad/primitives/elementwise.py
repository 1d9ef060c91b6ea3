"""Elementwise primitives: unary math, binary arithmetic, comparisons, logic, select, casts.

Each primitive is one table entry: its numpy impl, its JVP (per argument, in terms of the
tangent ``g``, the answer ``ans`` and the primals), and its C expression for fused kernels.
Shape, batching and transpose rules are shared by the whole family and defined once below.

Binary primitives broadcast like numpy; their operands must have equal dtypes
(``funcgrad.numpy`` inserts the conversions NumPy's promotion asks for, ``funcgrad.lax`` does
not). Transposes sum cotangents over broadcast axes.
"""
from __future__ import annotations

import builtins
import math
from typing import Callable

import numpy as np

from .. import core, dtypes
from ..core import ShapedArray
from ..interpreters import ad
from ..interpreters.ad import Zero, defjvp, defjvp_zero, deflinear, is_undefined
from . import reduction, structural

# ---------------------------------------------------------------------------------------------
# Shared shape rules


def broadcast_shapes(name: str, avals) -> tuple[int, ...]:
    """NumPy broadcasting of the operands' shapes; a trace-time error names op and shapes."""
    shapes = [a.shape for a in avals]
    first = shapes[0]
    if all(s == first for s in shapes):
        return first
    ndim = builtins.max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        size = 1
        for s in shapes:
            d = s[i - ndim + len(s)] if i - ndim + len(s) >= 0 else 1
            if d != 1:
                if size != 1 and d != size:
                    raise core.type_error(name, "shapes cannot be broadcast together", avals)
                size = d
        out.append(size)
    return tuple(out)


def _check_kinds(name: str, avals, kinds: str, what: str):
    for a in avals:
        if a.dtype.kind not in kinds:
            raise core.type_error(name, f"expected {what} operands", avals)


def _same_dtypes(name: str, avals):
    d = avals[0].dtype
    for a in avals[1:]:
        if a.dtype != d:
            raise core.type_error(name, "operands must have the same dtype (funcgrad.numpy "
                                        "promotes automatically; funcgrad.lax does not)", avals)


def _weak(avals) -> bool:
    return all(a.weak_type for a in avals)


# dtype kinds: b bool, i signed, u unsigned, f float, c complex
FLOAT, REAL, NUMBER, INTEGER, INT_OR_BOOL, ANY = "fc", "iuf", "iufc", "iu", "iub", "biufc"
_KIND_NAMES = {FLOAT: "floating-point", REAL: "real", NUMBER: "numeric", INTEGER: "integer",
               INT_OR_BOOL: "integer or boolean", ANY: "array"}


def _abstract(name: str, kinds: str, out_dtype=None) -> Callable:
    """Abstract eval for an elementwise primitive with equal-dtype, broadcasting operands.
    ``out_dtype`` fixes the result dtype (e.g. bool for comparisons)."""

    def abstract_eval(*avals, **params):
        _check_kinds(name, avals, kinds, _KIND_NAMES.get(kinds, "numeric"))
        if len(avals) > 1:
            _same_dtypes(name, avals)
        shape = broadcast_shapes(name, avals)
        dtype = avals[0].dtype if out_dtype is None else out_dtype
        return ShapedArray(shape, dtype, _weak(avals) and out_dtype is None)

    return abstract_eval


# ---------------------------------------------------------------------------------------------
# Shared batching and transposition


def _broadcasting_batch(prim: core.Primitive) -> Callable:
    """Batch an op that broadcasts like numpy: keep the batch axis where it is when that is
    already consistent, else bring it to the front and pad per-example ranks."""

    def batch(args, dims, **params):
        avals = [core.get_aval(a) for a in args]
        ranks = [a.ndim - (d is not None) for a, d in zip(avals, dims)]
        out_rank = builtins.max(ranks)
        bdims = {d for d in dims if d is not None}
        if len(bdims) == 1:
            d = next(iter(bdims))
            if all((r == out_rank) if dd is not None else (r <= out_rank - d)
                   for r, dd in zip(ranks, dims)):
                return prim.bind(*args, **params), d
        moved = []
        for a, av, d, r in zip(args, avals, dims, ranks):
            if d is not None:
                from ..interpreters.batching import moveaxis
                a = moveaxis(a, d, 0)
                if r < out_rank:
                    shape = core.get_aval(a).shape
                    a = structural.reshape(a, shape[:1] + (1,) * (out_rank - r) + shape[1:])
            moved.append(a)
        return prim.bind(*moved, **params), 0

    return batch


def unbroadcast(x, aval: ShapedArray):
    """Sum ``x`` over the axes along which ``aval``'s shape was broadcast to ``x``'s."""
    shape = aval.shape
    xshape = core.get_aval(x).shape
    if xshape == shape:
        return x
    lead = len(xshape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and xshape[lead + i] != 1)
    if axes:
        x = reduction.reduce_sum(x, axes)
    if core.get_aval(x).shape != shape:
        x = structural.reshape(x, shape)
    return x


def _ct(x, ct):
    """A cotangent for operand ``x`` (UndefinedPrimal) of a broadcasting op."""
    return unbroadcast(ct, x.aval)


# ---------------------------------------------------------------------------------------------
# Table builders


def _impl(np_fn: Callable, xp_name: str | None = None) -> Callable:
    """impl(xp, *args): the numpy function, or the same-named function of the array module."""
    name = xp_name or np_fn.__name__

    def impl(xp, *args):
        return np_fn(*args) if xp is np else getattr(xp, name)(*args)

    return impl


def _define(name: str, impl: Callable, kinds: str, c_expr, out_dtype=None, nargs: int = 1
            ) -> core.Primitive:
    p = core.Primitive(name)
    p.impl = impl
    p.abstract_eval = _abstract(name, kinds, out_dtype)
    p.batch = _broadcasting_batch(p) if nargs > 1 else _unary_batch(p)
    p.c_expr = c_expr
    p.elementwise = True
    return p


def _unary_batch(prim):
    return lambda args, dims, **params: (prim.bind(*args, **params), dims[0])


def _arith_c(op: str, helper: str) -> Callable:
    """C expression of an arithmetic op: the operator for floats, a wrapping helper for
    integers (C's signed overflow is undefined; numpy's wraps)."""
    return lambda avals: op if avals[0].dtype.kind == "f" else helper


def unary(name, impl, jvp, c_expr, kinds=FLOAT):
    """``impl``: a numpy ufunc, or a function ``impl(xp, x)``; ``jvp(g, ans, x)`` or None
    for a zero derivative."""
    p = _define(name, _impl(impl) if isinstance(impl, np.ufunc) else impl, kinds, c_expr)
    if jvp is None:
        defjvp_zero(p)
    else:
        defjvp(p, jvp)
    return p


def binary(name, np_fn, jvps, c_expr, kinds=NUMBER, out_dtype=None):
    p = _define(name, _impl(np_fn), kinds, c_expr, out_dtype, nargs=2)
    if jvps is None:
        defjvp_zero(p)
    else:
        defjvp(p, *jvps)
    return p


# ---------------------------------------------------------------------------------------------
# Stable or missing numpy implementations


def _logistic_impl(xp, x):
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _special_impl(py_fn: Callable, cupy_name: str) -> Callable:
    """erf-like functions: exact via math.* on the CPU (numpy has none), cupyx on the GPU."""
    ufunc = np.frompyfunc(py_fn, 1, 1)

    def impl(xp, x):
        if xp is not np:
            import cupyx.scipy.special as sp
            return getattr(sp, cupy_name)(x)
        return np.asarray(ufunc(x), dtype=x.dtype)

    return impl


def _erf_inv_scalar(y: float) -> float:
    """Inverse error function: Giles' approximation refined by Newton steps on math.erf."""
    if y <= -1.0:
        return -math.inf if y == -1.0 else math.nan
    if y >= 1.0:
        return math.inf if y == 1.0 else math.nan
    w = -math.log((1.0 - y) * (1.0 + y))
    if w < 5.0:
        w -= 2.5
        p = 2.81022636e-08
        for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
                  -0.00417768164, 0.246640727, 1.50140941):
            p = c + p * w
    else:
        w = math.sqrt(w) - 3.0
        p = -0.000200214257
        for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
                  0.00943887047, 1.00167406, 2.83297682):
            p = c + p * w
    x = p * y
    for _ in range(3):
        err = math.erf(x) - y
        x -= err / (2.0 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


def _integer_pow_impl(xp, x, *, y):
    x = xp.asarray(x)
    if y == 2:
        return x * x
    if y < 0 and x.dtype.kind in "iu":
        raise ValueError("integer_pow: integers to negative powers are not allowed")
    return xp.power(x, x.dtype.type(y))


# ---------------------------------------------------------------------------------------------
# Unary primitives: name, numpy function, jvp(g, ans, x), C expression

LN2, LN10 = math.log(2.0), math.log(10.0)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

exp_p = unary("exp", np.exp, lambda g, ans, x: g * ans, "fg_exp({0})")
exp2_p = unary("exp2", np.exp2, lambda g, ans, x: g * ans * LN2, "fg_exp2({0})")
expm1_p = unary("expm1", np.expm1, lambda g, ans, x: g * (ans + 1), "fg_expm1({0})")
log_p = unary("log", np.log, lambda g, ans, x: g / x, "fg_log({0})")
log1p_p = unary("log1p", np.log1p, lambda g, ans, x: g / (x + 1), "fg_log1p({0})")
log2_p = unary("log2", np.log2, lambda g, ans, x: g / (x * LN2), "fg_log2({0})")
log10_p = unary("log10", np.log10, lambda g, ans, x: g / (x * LN10), "fg_log10({0})")
sqrt_p = unary("sqrt", np.sqrt, lambda g, ans, x: g / (ans * 2), "fg_sqrt({0})")
rsqrt_p = unary("rsqrt", lambda xp, x: 1 / xp.sqrt(x), lambda g, ans, x: g * ans / x * -0.5,
                "(({T})1 / fg_sqrt({0}))")
cbrt_p = unary("cbrt", np.cbrt, lambda g, ans, x: g / (ans * ans * 3), "fg_cbrt({0})")
sin_p = unary("sin", np.sin, lambda g, ans, x: g * cos(x), "fg_sin({0})")
cos_p = unary("cos", np.cos, lambda g, ans, x: -g * sin(x), "fg_cos({0})")
tan_p = unary("tan", np.tan, lambda g, ans, x: g * (ans * ans + 1), "fg_tan({0})")
asin_p = unary("asin", np.arcsin, lambda g, ans, x: g * rsqrt(1 - x * x), "fg_asin({0})")
acos_p = unary("acos", np.arccos, lambda g, ans, x: -g * rsqrt(1 - x * x), "fg_acos({0})")
atan_p = unary("atan", np.arctan, lambda g, ans, x: g / (x * x + 1), "fg_atan({0})")
sinh_p = unary("sinh", np.sinh, lambda g, ans, x: g * cosh(x), "fg_sinh({0})")
cosh_p = unary("cosh", np.cosh, lambda g, ans, x: g * sinh(x), "fg_cosh({0})")
tanh_p = unary("tanh", np.tanh, lambda g, ans, x: g * (1 - ans * ans), "fg_tanh({0})")
asinh_p = unary("asinh", np.arcsinh, lambda g, ans, x: g * rsqrt(x * x + 1), "fg_asinh({0})")
acosh_p = unary("acosh", np.arccosh, lambda g, ans, x: g * rsqrt((x - 1) * (x + 1)), "fg_acosh({0})")
atanh_p = unary("atanh", np.arctanh, lambda g, ans, x: g / ((1 - x) * (1 + x)), "fg_atanh({0})")
logistic_p = unary("logistic", _logistic_impl, lambda g, ans, x: g * ans * (1 - ans),
                   "fg_logistic({0})")
erf_p = unary("erf", _special_impl(math.erf, "erf"),
              lambda g, ans, x: g * exp(-x * x) * TWO_OVER_SQRT_PI, "fg_erf({0})")
erfc_p = unary("erfc", _special_impl(math.erfc, "erfc"),
               lambda g, ans, x: g * exp(-x * x) * -TWO_OVER_SQRT_PI, "fg_erfc({0})")
erf_inv_p = unary("erf_inv", _special_impl(_erf_inv_scalar, "erfinv"),
                  lambda g, ans, x: g * exp(ans * ans) * (1 / TWO_OVER_SQRT_PI), None)

# Piecewise constant: zero derivative almost everywhere.
floor_p = unary("floor", np.floor, None, "fg_floor({0})", kinds=REAL)
ceil_p = unary("ceil", np.ceil, None, "fg_ceil({0})", kinds=REAL)
round_p = unary("round", lambda xp, x: xp.round(x), None, "fg_round({0})", kinds=REAL)
sign_p = unary("sign", np.sign, None, "fg_sign({0})", kinds=REAL)
is_finite_p = _define("is_finite", _impl(np.isfinite), FLOAT, "fg_isfinite({0})", out_dtype=dtypes.bool_)
defjvp_zero(is_finite_p)

# abs: d|x| = sign, with 1 at 0 (JAX's convention: the right derivative).
abs_p = unary("abs", np.abs, lambda g, ans, x: select(x >= 0, g, -g), "fg_abs({0})", kinds="biuf")

neg_p = _define("neg", _impl(np.negative), NUMBER, _arith_c("(-{0})", "fg_neg({0})"))
deflinear(neg_p, lambda ct, x: [neg(ct) if type(ct) is not Zero else ct])

# stop_gradient: the identity, with a zero derivative.
stop_gradient_p = _define("stop_gradient", lambda xp, x: x, ANY, "({0})")
defjvp_zero(stop_gradient_p)

# Bitwise/logical not (logical for bool).
not_p = _define("not", _impl(np.invert), INT_OR_BOOL,
                lambda avals: "(!{0})" if avals[0].dtype.kind == "b" else "(~{0})")
defjvp_zero(not_p)

# ---------------------------------------------------------------------------------------------
# Binary primitives


def _pow_jvp_x(g, ans, x, y):
    # y * x ** (y - 1); at x = y = 0 that is 0 * inf, and the derivative is 0.
    at_origin = bitwise_and(eq(x, 0), eq(y, 0))
    return g * select(at_origin, zeros_like(ans), y * pow(x, y - 1))


def _pow_jvp_y(g, ans, x, y):
    return g * select(x == 0, zeros_like(ans), log(select(x == 0, ones_like(x), x)) * ans)


def _minmax_jvp(pick_x: Callable):
    """max/min: the chosen operand's tangent; ties split it half and half (as JAX). The weight
    is built from casts of the comparisons, not selects: it is the relu mask, on a hot path,
    and numpy's ``where`` is several times slower than a cast on random masks."""
    def weight(first, second, ans):
        dt = core.get_aval(ans).dtype
        return convert_element_type(pick_x(first, second), dt) + convert_element_type(eq(first, second), dt) * 0.5

    return (lambda g, ans, x, y: g * weight(x, y, ans),
            lambda g, ans, x, y: g * weight(y, x, ans))


add_p = _define("add", _impl(np.add), NUMBER, _arith_c("({0} + {1})", "fg_add({0}, {1})"), nargs=2)
sub_p = _define("sub", _impl(np.subtract), NUMBER, _arith_c("({0} - {1})", "fg_sub({0}, {1})"), nargs=2)
mul_p = _define("mul", _impl(np.multiply), NUMBER, _arith_c("({0} * {1})", "fg_mul({0}, {1})"), nargs=2)
div_p = _define("div", _impl(np.true_divide, "true_divide"), FLOAT, "({0} / {1})", nargs=2)


def _add_jvp(primals, tangents):
    x, y = primals
    tx, ty = tangents
    ans = add(x, y)
    return ans, _sum_broadcast(ans, tx, ty)


def _sub_jvp(primals, tangents):
    x, y = primals
    tx, ty = tangents
    ans = sub(x, y)
    return ans, _sum_broadcast(ans, tx, ty if type(ty) is Zero else neg(ty))


def _sum_broadcast(ans, tx, ty):
    if type(tx) is Zero and type(ty) is Zero:
        return Zero.like(ans)
    out = ad.add_tangents(tx, ty) if type(tx) is Zero or type(ty) is Zero else add(tx, ty)
    shape = core.get_aval(ans).shape
    return out if core.get_aval(out).shape == shape else structural.broadcast_to(out, shape)


add_p.jvp, sub_p.jvp = _add_jvp, _sub_jvp
add_p.transpose = lambda ct, x, y: [_ct(x, ct) if is_undefined(x) else None,
                                    _ct(y, ct) if is_undefined(y) else None]
sub_p.transpose = lambda ct, x, y: [_ct(x, ct) if is_undefined(x) else None,
                                    _ct(y, neg(ct)) if is_undefined(y) else None]
defjvp(mul_p, lambda g, ans, x, y: mul(g, y), lambda g, ans, x, y: mul(x, g))
mul_p.transpose = lambda ct, x, y: [_ct(x, mul(ct, y)) if is_undefined(x) else None,
                                    _ct(y, mul(x, ct)) if is_undefined(y) else None]
defjvp(div_p, lambda g, ans, x, y: div(g, y), lambda g, ans, x, y: -g * ans / y)
div_p.transpose = lambda ct, x, y: [_ct(x, div(ct, y)), None]

pow_p = binary("pow", np.power, (_pow_jvp_x, _pow_jvp_y),
                lambda avals: "fg_pow({0}, {1})" if avals[0].dtype.kind == "f" else None, kinds=NUMBER)
max_p = binary("max", np.maximum, _minmax_jvp(lambda a, b: a > b), "fg_max({0}, {1})", kinds=ANY)
min_p = binary("min", np.minimum, _minmax_jvp(lambda a, b: a < b), "fg_min({0}, {1})", kinds=ANY)
atan2_p = binary("atan2", np.arctan2, (lambda g, ans, x, y: g * y / (x * x + y * y),
                                       lambda g, ans, x, y: g * -x / (x * x + y * y)),
                 "fg_atan2({0}, {1})", kinds=FLOAT)
rem_p = binary("rem", np.remainder, (lambda g, ans, x, y: g,
                                     lambda g, ans, x, y: -g * floor_divide(x, y)),
               "fg_rem({0}, {1})")
floor_divide_p = binary("floor_divide", np.floor_divide, None, "fg_floordiv({0}, {1})")
# nextafter(x, y) is x moved by one ulp: its derivative is that of x.
nextafter_p = binary("nextafter", np.nextafter, (lambda g, ans, x, y: g, None),
                     "fg_nextafter({0}, {1})", kinds=FLOAT)

# Comparisons -> bool
eq_p = binary("eq", np.equal, None, "({0} == {1})", kinds=ANY, out_dtype=dtypes.bool_)
ne_p = binary("ne", np.not_equal, None, "({0} != {1})", kinds=ANY, out_dtype=dtypes.bool_)
lt_p = binary("lt", np.less, None, "({0} < {1})", kinds=ANY, out_dtype=dtypes.bool_)
le_p = binary("le", np.less_equal, None, "({0} <= {1})", kinds=ANY, out_dtype=dtypes.bool_)
gt_p = binary("gt", np.greater, None, "({0} > {1})", kinds=ANY, out_dtype=dtypes.bool_)
ge_p = binary("ge", np.greater_equal, None, "({0} >= {1})", kinds=ANY, out_dtype=dtypes.bool_)

# Logical (bool) / bitwise (integers)
and_p = binary("and", np.bitwise_and, None, "({0} & {1})", kinds=INT_OR_BOOL)
or_p = binary("or", np.bitwise_or, None, "({0} | {1})", kinds=INT_OR_BOOL)
xor_p = binary("xor", np.bitwise_xor, None, "({0} ^ {1})", kinds=INT_OR_BOOL)
shift_left_p = binary("shift_left", np.left_shift, None, "fg_shl({0}, {1})", kinds=INTEGER)
shift_right_p = binary("shift_right", np.right_shift, None, "fg_shr({0}, {1})", kinds=INTEGER)

# ---------------------------------------------------------------------------------------------
# integer_pow: x ** y for a static Python int y

integer_pow_p = core.Primitive("integer_pow")
integer_pow_p.impl = _integer_pow_impl
integer_pow_p.abstract_eval = _abstract("integer_pow", NUMBER)
integer_pow_p.batch = _unary_batch(integer_pow_p)
integer_pow_p.elementwise = True


def _integer_pow_c(avals, y):
    """As the impl: ``x * x`` for y = 2, numpy's ``power`` for floats, exact repeated
    squaring for integers (negative integer powers raise in numpy: not expressible)."""
    if avals[0].dtype.kind == "f":
        return "({0} * {0})" if y == 2 else f"fg_pow({{0}}, static_cast<{{T}}>({int(y)}))"
    return f"fg_ipow({{0}}, {int(y)})" if y >= 0 else None


integer_pow_p.c_expr = _integer_pow_c
defjvp(integer_pow_p, lambda g, ans, x, *, y: (zeros_like(g) if y == 0 else
                                                 g * y if y == 1 else
                                                 g * (integer_pow(x, y - 1) * y)))

# ---------------------------------------------------------------------------------------------
# select(pred, on_true, on_false), numpy's where


select_p = core.Primitive("select")
select_p.impl = lambda xp, pred, x, y: xp.where(pred, x, y)


def _select_abstract(pred, x, y):
    if pred.dtype != dtypes.bool_:
        raise core.type_error("select", "predicate must be boolean", [pred, x, y])
    _same_dtypes("select", [x, y])
    shape = broadcast_shapes("select", [pred, x, y])
    return ShapedArray(shape, x.dtype, x.weak_type and y.weak_type)


def _select_jvp(primals, tangents):
    pred, x, y = primals
    _, tx, ty = tangents
    ans = select(pred, x, y)
    if type(tx) is Zero and type(ty) is Zero:
        return ans, Zero.like(ans)
    tx = zeros_like(x) if type(tx) is Zero else tx
    ty = zeros_like(y) if type(ty) is Zero else ty
    return ans, select(pred, tx, ty)


def _select_transpose(ct, pred, x, y):
    if type(ct) is Zero:
        return [None, None, None]
    zero = zeros_like(ct)
    return [None,
            _ct(x, select(pred, ct, zero)) if is_undefined(x) else None,
            _ct(y, select(pred, zero, ct)) if is_undefined(y) else None]


select_p.abstract_eval = _select_abstract
select_p.jvp = _select_jvp
select_p.transpose = _select_transpose
select_p.batch = _broadcasting_batch(select_p)
select_p.elementwise = True
select_p.c_expr = "({0} ? {1} : {2})"

# clamp(x, lo, hi) = numpy.clip: min(max(x, lo), hi), broadcasting.
clamp_p = core.Primitive("clamp")
clamp_p.impl = lambda xp, x, lo, hi: xp.minimum(xp.maximum(x, lo), hi)
clamp_p.abstract_eval = _abstract("clamp", ANY)
clamp_p.batch = _broadcasting_batch(clamp_p)
clamp_p.elementwise = True
clamp_p.c_expr = "fg_min(fg_max({0}, {1}), {2})"
# The result is hi wherever max(x, lo) > hi (also when lo > hi), else lo where x < lo, else x.
defjvp(clamp_p,
       lambda g, ans, x, lo, hi: g * select((x >= lo) & (x <= hi), ones_like(ans), zeros_like(ans)),
       lambda g, ans, x, lo, hi: g * select((x < lo) & (lo <= hi), ones_like(ans), zeros_like(ans)),
       lambda g, ans, x, lo, hi: g * select((x > hi) | (lo > hi), ones_like(ans), zeros_like(ans)))

# ---------------------------------------------------------------------------------------------
# Casts

convert_element_type_p = core.Primitive("convert_element_type")
convert_element_type_p.impl = lambda xp, x, *, new_dtype, weak_type=False: (
    x.astype(new_dtype) if hasattr(x, "astype") else np.asarray(x, new_dtype))


def _convert_abstract(x, *, new_dtype, weak_type=False):
    return ShapedArray(x.shape, new_dtype, weak_type)


def _convert_jvp(primals, tangents, *, new_dtype, weak_type=False):
    (x,), (t,) = primals, tangents
    ans = convert_element_type(x, new_dtype, weak_type)
    if (type(t) is Zero or not dtypes.is_differentiable(new_dtype)
            or not dtypes.is_differentiable(core.get_aval(x).dtype)):
        return ans, Zero.like(ans)
    return ans, convert_element_type(t, new_dtype, weak_type)


def _convert_transpose(ct, x, *, new_dtype, weak_type=False):
    if type(ct) is Zero:
        return [None]
    return [convert_element_type(ct, x.aval.dtype, x.aval.weak_type)]


def _convert_c(avals, new_dtype, weak_type=False):
    if np.dtype(new_dtype).kind == "b":
        return "({0} != 0)"
    if avals[0].dtype.kind == "b":      # a select, which compilers vectorize (a bool cast: not always)
        return "({0} ? {T}(1) : {T}(0))"
    return "static_cast<{T}>({0})"


convert_element_type_p.abstract_eval = _convert_abstract
convert_element_type_p.jvp = _convert_jvp
convert_element_type_p.transpose = _convert_transpose
convert_element_type_p.batch = _unary_batch(convert_element_type_p)
convert_element_type_p.elementwise = True
convert_element_type_p.c_expr = _convert_c

bitcast_convert_type_p = core.Primitive("bitcast_convert_type")
bitcast_convert_type_p.impl = lambda xp, x, *, new_dtype: x.view(new_dtype)


def _bitcast_abstract(x, *, new_dtype):
    if np.dtype(new_dtype).itemsize != x.dtype.itemsize:
        raise core.type_error("bitcast_convert_type", f"{x.dtype} and {np.dtype(new_dtype)} "
                              "have different sizes", [x])
    return ShapedArray(x.shape, new_dtype)


bitcast_convert_type_p.abstract_eval = _bitcast_abstract
bitcast_convert_type_p.batch = _unary_batch(bitcast_convert_type_p)
bitcast_convert_type_p.elementwise = True
bitcast_convert_type_p.c_expr = "fg_bitcast<{T}>({0})"
defjvp_zero(bitcast_convert_type_p)

# ---------------------------------------------------------------------------------------------
# lax-level functions (strict dtypes; Python scalars take the other operand's dtype)


def _scalar_like(x, other):
    """Turn a Python scalar operand into a value of ``other``'s dtype (numpy's weak rule)."""
    if type(x) in (int, float, bool, complex):
        aval = core.get_aval(other)
        val = np.asarray(x, aval.dtype)
        return core.Literal(val, ShapedArray((), aval.dtype, aval.weak_type)) if core.is_tracing() else val
    return x


def _binary_fn(prim):
    def fn(x, y):
        if type(x) in (int, float, bool, complex):
            x = _scalar_like(x, y)
        elif type(y) in (int, float, bool, complex):
            y = _scalar_like(y, x)
        return prim.bind(x, y)
    fn.__name__ = prim.name
    return fn


exp, exp2, expm1, log, log1p = exp_p.bind, exp2_p.bind, expm1_p.bind, log_p.bind, log1p_p.bind
log2, log10, sqrt, rsqrt, cbrt = log2_p.bind, log10_p.bind, sqrt_p.bind, rsqrt_p.bind, cbrt_p.bind
sin, cos, tan, asin, acos, atan = sin_p.bind, cos_p.bind, tan_p.bind, asin_p.bind, acos_p.bind, atan_p.bind
sinh, cosh, tanh = sinh_p.bind, cosh_p.bind, tanh_p.bind
asinh, acosh, atanh = asinh_p.bind, acosh_p.bind, atanh_p.bind
logistic, erf, erfc, erf_inv = logistic_p.bind, erf_p.bind, erfc_p.bind, erf_inv_p.bind
floor, ceil, round, sign, is_finite = floor_p.bind, ceil_p.bind, round_p.bind, sign_p.bind, is_finite_p.bind
abs, neg, bitwise_not, stop_gradient = abs_p.bind, neg_p.bind, not_p.bind, stop_gradient_p.bind
add, sub, mul, div = (_binary_fn(p) for p in (add_p, sub_p, mul_p, div_p))
pow, max, min, atan2, rem = (_binary_fn(p) for p in (pow_p, max_p, min_p, atan2_p, rem_p))
floor_divide, nextafter = _binary_fn(floor_divide_p), _binary_fn(nextafter_p)
eq, ne, lt, le, gt, ge = (_binary_fn(p) for p in (eq_p, ne_p, lt_p, le_p, gt_p, ge_p))
bitwise_and, bitwise_or, bitwise_xor = _binary_fn(and_p), _binary_fn(or_p), _binary_fn(xor_p)
shift_left, shift_right = _binary_fn(shift_left_p), _binary_fn(shift_right_p)


def integer_pow(x, y: int):
    """``x ** y`` for a static int ``y`` (``x ** 1`` is ``x`` itself: no equation)."""
    y = int(y)
    return x if y == 1 else integer_pow_p.bind(x, y=y)


def select(pred, on_true, on_false):
    if type(on_true) in (int, float, bool):
        on_true = _scalar_like(on_true, on_false)
    if type(on_false) in (int, float, bool):
        on_false = _scalar_like(on_false, on_true)
    return select_p.bind(pred, on_true, on_false)


def clamp(x, lo, hi):
    return clamp_p.bind(x, _scalar_like(lo, x), _scalar_like(hi, x))


def convert_element_type(x, new_dtype, weak_type: bool = False):
    new_dtype = np.dtype(new_dtype)
    aval = core.get_aval(x)
    if aval.dtype == new_dtype and aval.weak_type == weak_type and type(x) not in (int, float, bool, complex):
        return x
    return convert_element_type_p.bind(x, new_dtype=new_dtype, weak_type=weak_type)


def bitcast_convert_type(x, new_dtype):
    return bitcast_convert_type_p.bind(x, new_dtype=np.dtype(new_dtype))


def full_like(x, value):
    aval = core.get_aval(x)
    return structural.full(aval.shape, value, aval.dtype)


def zeros_like(x):
    return full_like(x, 0)


def ones_like(x):
    return full_like(x, 1)


# ---------------------------------------------------------------------------------------------
# The C prelude the expression templates above rely on, shared by the C++ (host) and CUDA
# (device) kernels. The including code defines FG_INLINE, the fixed-width integer types and
# the C math functions. Helpers follow numpy's semantics: NaN propagation in max/min, floor
# division and remainder signs, integer division by zero giving 0, wrapping integer overflow
# (done in unsigned arithmetic: signed overflow is undefined in C), shifts past the width.

C_MATH_FUNCTIONS = ("exp", "exp2", "expm1", "log", "log1p", "log2", "log10", "sqrt", "cbrt",
                    "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh",
                    "asinh", "acosh", "atanh", "erf", "erfc", "floor", "ceil")

C_PRELUDE = "\n".join(
    [f"FG_INLINE float fg_{f}(float x) {{ return {f}f(x); }}\n"
     f"FG_INLINE double fg_{f}(double x) {{ return {f}(x); }}" for f in C_MATH_FUNCTIONS]
    + [f"template <class T> FG_INLINE T fg_{f}(T x) {{ return x; }}" for f in ("floor", "ceil")]) + r"""
FG_INLINE float fg_pow(float x, float y) { return powf(x, y); }
FG_INLINE double fg_pow(double x, double y) { return pow(x, y); }
FG_INLINE float fg_atan2(float x, float y) { return atan2f(x, y); }
FG_INLINE double fg_atan2(double x, double y) { return atan2(x, y); }
FG_INLINE float fg_nextafter(float x, float y) { return nextafterf(x, y); }
FG_INLINE double fg_nextafter(double x, double y) { return nextafter(x, y); }
FG_INLINE float fg_round(float x) { return rintf(x); }
FG_INLINE double fg_round(double x) { return rint(x); }
template <class T> FG_INLINE T fg_round(T x) { return x; }
FG_INLINE bool fg_isfinite(float x) { return isfinite(x); }
FG_INLINE bool fg_isfinite(double x) { return isfinite(x); }
template <class T> struct fg_wide { typedef T type; };
template <> struct fg_wide<int8_t> { typedef uint32_t type; };
template <> struct fg_wide<uint8_t> { typedef uint32_t type; };
template <> struct fg_wide<int16_t> { typedef uint32_t type; };
template <> struct fg_wide<uint16_t> { typedef uint32_t type; };
template <> struct fg_wide<int32_t> { typedef uint32_t type; };
template <> struct fg_wide<uint32_t> { typedef uint32_t type; };
template <> struct fg_wide<int64_t> { typedef uint64_t type; };
template <> struct fg_wide<uint64_t> { typedef uint64_t type; };
template <class T> FG_INLINE T fg_add(T a, T b) {
  typedef typename fg_wide<T>::type U; return (T)((U)a + (U)b);
}
template <class T> FG_INLINE T fg_sub(T a, T b) {
  typedef typename fg_wide<T>::type U; return (T)((U)a - (U)b);
}
template <class T> FG_INLINE T fg_mul(T a, T b) {
  typedef typename fg_wide<T>::type U; return (T)((U)a * (U)b);
}
template <class T> FG_INLINE T fg_neg(T a) {
  typedef typename fg_wide<T>::type U; return (T)((U)0 - (U)a);
}
template <class T> FG_INLINE T fg_logistic(T x) {
  T e = fg_exp(-(x < 0 ? -x : x));
  return x >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
}
FG_INLINE float fg_abs(float x) { return fabsf(x); }
FG_INLINE double fg_abs(double x) { return fabs(x); }
template <class T> FG_INLINE T fg_abs(T x) { return x < 0 ? fg_neg(x) : x; }
FG_INLINE bool fg_abs(bool x) { return x; }
template <class T> FG_INLINE T fg_sign(T x) {
  return x != x ? x : (x > 0 ? T(1) : (x < 0 ? T(-1) : T(0)));
}
template <class T> FG_INLINE T fg_max(T a, T b) { return (a > b || a != a) ? a : b; }
template <class T> FG_INLINE T fg_min(T a, T b) { return (a < b || a != a) ? a : b; }
template <class T> FG_INLINE T fg_ipow(T x, int n) {
  T acc = T(1);
  while (n) { if (n & 1) acc = fg_mul(acc, x); x = fg_mul(x, x); n >>= 1; }
  return acc;
}
template <class T> FG_INLINE T fg_floordiv(T a, T b) {
  if (b == 0) return T(0);
  if (T(-1) < T(0) && b == T(-1)) return fg_neg(a);
  T q = T(a / b);
  if ((a % b != 0) && ((a < 0) != (b < 0))) q = T(q - 1);
  return q;
}
template <class T> FG_INLINE T fg_floordiv_f(T a, T b) {
  if (b == 0) return a / b;
  T mod = fmod(a, b);
  T div = (a - mod) / b;
  if (mod != 0 && ((b < 0) != (mod < 0))) div -= T(1);
  T fl = floor(div);
  if (div - fl > T(0.5)) fl += T(1);
  return div == 0 ? copysign(T(0), a / b) : fl;
}
FG_INLINE float fg_floordiv(float a, float b) { return fg_floordiv_f<float>(a, b); }
FG_INLINE double fg_floordiv(double a, double b) { return fg_floordiv_f<double>(a, b); }
template <class T> FG_INLINE T fg_rem(T a, T b) {
  if (b == 0 || (T(-1) < T(0) && b == T(-1))) return T(0);
  T r = T(a % b);
  if (r != 0 && ((r < 0) != (b < 0))) r = T(r + b);
  return r;
}
template <class T> FG_INLINE T fg_rem_f(T a, T b) {
  if (b == 0) return fmod(a, b);
  T mod = fmod(a, b);
  if (mod != 0) { if ((b < 0) != (mod < 0)) mod += b; }
  else mod = copysign(T(0), b);
  return mod;
}
FG_INLINE float fg_rem(float a, float b) { return fg_rem_f<float>(a, b); }
FG_INLINE double fg_rem(double a, double b) { return fg_rem_f<double>(a, b); }
template <class T> FG_INLINE T fg_shl(T a, T b) {
  typedef typename fg_wide<T>::type U;
  return (b < 0 || b >= (T)(8 * sizeof(T))) ? T(0) : (T)((U)a << b);
}
template <class T> FG_INLINE T fg_shr(T a, T b) {
  return (b < 0 || b >= (T)(8 * sizeof(T))) ? (a < 0 ? T(-1) : T(0)) : T(a >> b);
}
template <class To, class From> FG_INLINE To fg_bitcast(From x) {
  To y; memcpy(&y, &x, sizeof(To)); return y;
}
"""
