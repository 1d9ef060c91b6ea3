"""Elementwise primitives through the uniform harness, plus the differentiation conventions
(sqrt and abs at 0, max ties, float0 tangents, symbolic zeros)."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable

import numpy as np
import pytest
from hypothesis import Phase, given, settings, strategies as st

import funcgrad
from funcgrad import dtypes, lax, make_jaxpr
from funcgrad.primitives import elementwise as ew
from funcgrad.interpreters import ad

import primitive_harness as h
from primitive_harness import FLOAT_DTYPES, NUMERIC_DTYPES, Operand

F32, F64, I32, BOOL = (np.dtype(t) for t in (np.float32, np.float64, np.int32, np.bool_))
EXAMPLES = h.examples(0.6)


def in_float64(fn: Callable) -> Callable:
    """A float reference computed in float64 and rounded to the operand dtype."""
    def ref(*args):
        dtype = args[0].dtype
        out = fn(*(np.asarray(a, np.float64) if a.dtype.kind == "f" else a for a in args))
        return np.asarray(out).astype(dtype)
    return ref


_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _erf_inv_ref(y):
    """Bisection on math.erf: independent of the implementation's approximation."""
    y = np.asarray(y, np.float64)
    lo, hi = np.full(y.shape, -6.0), np.full(y.shape, 6.0)
    for _ in range(80):
        mid = (lo + hi) / 2
        below = _erf(mid) < y
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    out = (lo + hi) / 2
    out = np.where(y == 1, np.inf, np.where(y == -1, -np.inf, out))
    return np.where((np.abs(y) > 1) | np.isnan(y), np.nan, out)


def choice(*values) -> h.Domain:
    return lambda shape, dtype: h.hnp.arrays(dtype, shape, elements=st.sampled_from(values))


def nonzero(lo: float = 0.5, hi: float = 3.0) -> h.Domain:
    """Values with lo <= |x| <= hi, either sign."""
    def domain(shape, dtype):
        return h.reals(lo, hi)(shape, dtype).flatmap(
            lambda mag: h.hnp.arrays(np.bool_, shape).map(lambda neg: np.where(neg, -mag, mag)))
    return domain


# ---------------------------------------------------------------------------------------------
# Unary


@dataclasses.dataclass(frozen=True)
class Unary:
    name: str
    fun: Callable
    ref: Callable
    domain: h.Domain = h.reals()
    dtypes: tuple = FLOAT_DTYPES
    order: int = 2


UNARY = [
    Unary("exp", lax.exp, in_float64(np.exp)),
    Unary("exp2", lax.exp2, in_float64(np.exp2)),
    Unary("expm1", lax.expm1, in_float64(np.expm1)),
    Unary("log", lax.log, in_float64(np.log), h.positive()),
    Unary("log1p", lax.log1p, in_float64(np.log1p), h.reals(-0.9, 3)),
    Unary("log2", lax.log2, in_float64(np.log2), h.positive()),
    Unary("log10", lax.log10, in_float64(np.log10), h.positive()),
    Unary("sqrt", lax.sqrt, in_float64(np.sqrt), h.positive()),
    Unary("rsqrt", lax.rsqrt, in_float64(lambda x: 1 / np.sqrt(x)), h.positive()),
    Unary("cbrt", lax.cbrt, in_float64(np.cbrt), nonzero(0.2, 3)),
    Unary("sin", lax.sin, in_float64(np.sin)),
    Unary("cos", lax.cos, in_float64(np.cos)),
    Unary("tan", lax.tan, in_float64(np.tan), h.reals(-1.2, 1.2)),
    Unary("asin", lax.asin, in_float64(np.arcsin), h.reals(-0.9, 0.9)),
    Unary("acos", lax.acos, in_float64(np.arccos), h.reals(-0.9, 0.9)),
    Unary("atan", lax.atan, in_float64(np.arctan)),
    Unary("sinh", lax.sinh, in_float64(np.sinh)),
    Unary("cosh", lax.cosh, in_float64(np.cosh)),
    Unary("tanh", lax.tanh, in_float64(np.tanh)),
    Unary("asinh", lax.asinh, in_float64(np.arcsinh)),
    Unary("acosh", lax.acosh, in_float64(np.arccosh), h.reals(1.1, 4)),
    Unary("atanh", lax.atanh, in_float64(np.arctanh), h.reals(-0.9, 0.9)),
    Unary("logistic", lax.logistic, in_float64(lambda x: 1 / (1 + np.exp(-x))), h.reals(-8, 8)),
    Unary("erf", lax.erf, in_float64(_erf)),
    Unary("erfc", lax.erfc, in_float64(_erfc)),
    Unary("erf_inv", lax.erf_inv, in_float64(_erf_inv_ref), h.reals(-0.9, 0.9)),
    Unary("floor", lax.floor, np.floor, h.off_grid(), NUMERIC_DTYPES),
    Unary("ceil", lax.ceil, np.ceil, h.off_grid(), NUMERIC_DTYPES),
    Unary("round", lax.round, np.round, h.off_grid(grid=0.5), NUMERIC_DTYPES),
    Unary("sign", lax.sign, np.sign, nonzero(0.1, 3), NUMERIC_DTYPES),
    Unary("abs", lax.abs, np.abs, nonzero(0.1, 3), NUMERIC_DTYPES),
    Unary("neg", lax.neg, np.negative, h.reals(), NUMERIC_DTYPES),
    Unary("is_finite", lax.is_finite, np.isfinite, order=0),
    Unary("not", lax.bitwise_not, np.invert, dtypes=(I32, BOOL), order=0),
    Unary("stop_gradient", lax.stop_gradient, lambda x: x, dtypes=h.ALL_DTYPES, order=0),
]


@pytest.mark.parametrize("case", UNARY, ids=lambda c: c.name)
@EXAMPLES
@given(data=st.data())
def test_unary(case, data):
    shape = data.draw(h.shapes(), label="shape")
    dtype = data.draw(st.sampled_from(case.dtypes), label="dtype")
    h.check_primitive(data, case.fun, [Operand(shape, dtype, case.domain)], case.ref,
                      prim=case.name, order=case.order)


SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 1e30, -1e30])


@pytest.mark.parametrize("case", [c for c in UNARY if F32 in c.dtypes], ids=lambda c: c.name)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_unary_special_values(case, dtype):
    """NaN, infinities, signed zeros, out-of-domain and huge inputs behave as in NumPy."""
    x = SPECIAL.astype(dtype)
    with np.errstate(all="ignore"):
        h.assert_same(case.fun(x), case.ref(x), what=case.name)


# ---------------------------------------------------------------------------------------------
# Binary (broadcasting)


@dataclasses.dataclass(frozen=True)
class Binary:
    name: str
    fun: Callable
    ref: Callable
    domains: tuple = (h.reals(), h.reals())
    dtypes: tuple = FLOAT_DTYPES
    order: int = 2


def _shift_domains():
    return (h.reals(-1000, 1000), h.reals(0, 31))


BINARY = [
    Binary("add", lax.add, np.add, dtypes=NUMERIC_DTYPES),
    Binary("sub", lax.sub, np.subtract, dtypes=NUMERIC_DTYPES),
    Binary("mul", lax.mul, np.multiply, dtypes=NUMERIC_DTYPES),
    Binary("div", lax.div, np.true_divide, (h.reals(), nonzero())),
    Binary("pow", lax.pow, in_float64(np.power), (h.positive(0.5, 3), h.reals(-2, 2))),
    Binary("pow", lax.pow, np.power, (h.reals(-4, 4), h.reals(0, 4)), dtypes=(I32,)),
    Binary("max", lax.max, np.maximum, (h.interleaved(0.25), h.interleaved(0.75)), h.ALL_DTYPES),
    Binary("min", lax.min, np.minimum, (h.interleaved(0.25), h.interleaved(0.75)), h.ALL_DTYPES),
    Binary("atan2", lax.atan2, in_float64(np.arctan2), (h.reals(), h.positive(0.5, 3))),  # no branch cut
    Binary("rem", lax.rem, np.remainder, (h.off_grid(grid=0.5), choice(-2, -1, -0.5, 0.5, 1, 2))),
    Binary("rem", lax.rem, np.remainder, (h.reals(-20, 20), nonzero(1, 5)), dtypes=(I32,)),
    Binary("floor_divide", lax.floor_divide, np.floor_divide,
           (h.off_grid(grid=0.5), choice(-2, -1, -0.5, 0.5, 1, 2))),
    Binary("floor_divide", lax.floor_divide, np.floor_divide, (h.reals(-20, 20), nonzero(1, 5)),
           dtypes=(I32,)),
    Binary("nextafter", lax.nextafter, np.nextafter),
    Binary("eq", lax.eq, np.equal, (h.reals(-2, 2), h.reals(-2, 2)), h.ALL_DTYPES, order=0),
    Binary("ne", lax.ne, np.not_equal, (h.reals(-2, 2), h.reals(-2, 2)), h.ALL_DTYPES, order=0),
    Binary("lt", lax.lt, np.less, (h.reals(-2, 2), h.reals(-2, 2)), h.ALL_DTYPES, order=0),
    Binary("le", lax.le, np.less_equal, (h.reals(-2, 2), h.reals(-2, 2)), h.ALL_DTYPES, order=0),
    Binary("gt", lax.gt, np.greater, (h.reals(-2, 2), h.reals(-2, 2)), h.ALL_DTYPES, order=0),
    Binary("ge", lax.ge, np.greater_equal, (h.reals(-2, 2), h.reals(-2, 2)), h.ALL_DTYPES, order=0),
    Binary("and", lax.bitwise_and, np.bitwise_and, (h.reals(-99, 99),) * 2, (I32, BOOL), order=0),
    Binary("or", lax.bitwise_or, np.bitwise_or, (h.reals(-99, 99),) * 2, (I32, BOOL), order=0),
    Binary("xor", lax.bitwise_xor, np.bitwise_xor, (h.reals(-99, 99),) * 2, (I32, BOOL), order=0),
    Binary("shift_left", lax.shift_left, np.left_shift, _shift_domains(), (I32,), order=0),
    Binary("shift_right", lax.shift_right, np.right_shift, _shift_domains(), (I32,), order=0),
]


@pytest.mark.parametrize("case", BINARY, ids=lambda c: f"{c.name}-{'-'.join(map(str, c.dtypes))}")
@EXAMPLES
@given(data=st.data())
def test_binary(case, data):
    shape_x, shape_y = data.draw(h.broadcastable_shapes(2), label="shapes")
    dtype = data.draw(st.sampled_from(case.dtypes), label="dtype")
    operands = [Operand(shape_x, dtype, case.domains[0]), Operand(shape_y, dtype, case.domains[1])]
    h.check_primitive(data, case.fun, operands, case.ref, prim=case.name, order=case.order)


@EXAMPLES
@given(data=st.data(), shape=h.shapes(), dtype=st.sampled_from(NUMERIC_DTYPES))
def test_add_any(data, shape, dtype):
    """add_any (the tangent accumulator) adds equal-shape operands."""
    h.check_primitive(data, ad.add_any_p.bind, [Operand(shape, dtype)] * 2, np.add, prim="add_any")


# ---------------------------------------------------------------------------------------------
# integer_pow, select, clamp, casts


@EXAMPLES
@given(data=st.data(), shape=h.shapes(), y=st.integers(-3, 4), dtype=st.sampled_from(NUMERIC_DTYPES))
def test_integer_pow(data, shape, y, dtype):
    if dtype == I32 and y < 0:
        y = -y
    domain = nonzero(0.5, 2) if y < 0 else h.reals(-2, 2)
    ref = in_float64(lambda x: np.power(x, float(y))) if dtype.kind == "f" else \
        (lambda x: np.power(x, y, dtype=dtype))
    # Bind the primitive itself: lax.integer_pow(x, 1) returns x with no equation.
    h.check_primitive(data, lambda x: ew.integer_pow_p.bind(x, y=y), [Operand(shape, dtype, domain)], ref,
                      prim="integer_pow")


@EXAMPLES
@given(data=st.data(), shapes=h.broadcastable_shapes(3), dtype=st.sampled_from(h.ALL_DTYPES))
def test_select(data, shapes, dtype):
    operands = [Operand(shapes[0], BOOL), Operand(shapes[1], dtype), Operand(shapes[2], dtype)]
    h.check_primitive(data, lax.select, operands, np.where, prim="select")


@EXAMPLES
@given(data=st.data(), shapes=h.broadcastable_shapes(3), dtype=st.sampled_from(NUMERIC_DTYPES))
def test_clamp(data, shapes, dtype):
    """x, lo and hi never tie (offsets .25/.75/.5); lo > hi is allowed (the result is hi)."""
    operands = [Operand(shapes[0], dtype, h.interleaved(0.25)),
                Operand(shapes[1], dtype, h.interleaved(0.75)),
                Operand(shapes[2], dtype, h.interleaved(0.5))]
    h.check_primitive(data, lambda x, lo, hi: ew.clamp_p.bind(x, lo, hi), operands,
                      lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi), prim="clamp")


@EXAMPLES
@given(data=st.data(), shape=h.shapes(), src=st.sampled_from(h.ALL_DTYPES),
       dst=st.sampled_from(h.ALL_DTYPES + (np.dtype(np.int64),)))
def test_convert_element_type(data, shape, src, dst):
    if src == dst:
        dst = np.dtype(np.int64)
    h.check_primitive(data, lambda x: lax.convert_element_type(x, dst),
                      [Operand(shape, src, h.reals(-100, 100))], lambda x: x.astype(dst),
                      prim="convert_element_type", order=0)


def test_convert_element_type_derivatives():
    """float -> float converts tangents and cotangents; ints get float0 and float -> int is 0."""
    x = np.linspace(-2, 2, 6).reshape(2, 3)
    roundtrip = lambda v: lax.convert_element_type(lax.convert_element_type(v, F32), F64)
    funcgrad.test_util.check_grads(roundtrip, (x,), order=2, eps=1e-2, atol=1e-4, rtol=1e-4)
    h.check_ad_jaxprs(roundtrip, (x,))
    _, t = funcgrad.jvp(lambda v: lax.convert_element_type(v, I32), (x,), (np.ones_like(x),))
    assert t.dtype == dtypes.float0 and t.shape == x.shape
    i = np.arange(6, dtype=I32)
    _, t = funcgrad.jvp(lambda v: lax.convert_element_type(v, F64), (i,),
                        (np.zeros(6, dtypes.float0),))
    np.testing.assert_array_equal(t, np.zeros(6))
    g = funcgrad.grad(lambda v: lax.convert_element_type(v, I32).sum() * 1.0 + v.sum())(x)
    np.testing.assert_array_equal(g, np.ones_like(x))


@EXAMPLES
@given(data=st.data(), shape=h.shapes(),
       pair=st.sampled_from([(F32, I32), (I32, F32), (F64, np.dtype(np.int64)),
                             (np.dtype(np.int64), F64), (np.dtype(np.uint32), I32)]))
def test_bitcast_convert_type(data, shape, pair):
    src, dst = pair
    h.check_primitive(data, lambda x: lax.bitcast_convert_type(x, dst), [Operand(shape, src)],
                      lambda x: x.view(dst), prim="bitcast_convert_type", order=0)


# ---------------------------------------------------------------------------------------------
# Differentiation conventions


def test_sqrt_at_zero_is_inf():
    with np.errstate(divide="ignore"):
        assert funcgrad.grad(lax.sqrt)(0.0) == np.inf
        assert funcgrad.grad(funcgrad.numpy.sqrt)(np.float64(0.0)) == np.inf


def test_abs_at_zero_is_one():
    assert funcgrad.grad(lax.abs)(0.0) == 1.0
    assert funcgrad.grad(lax.abs)(-0.0) == 1.0
    assert funcgrad.grad(lax.abs)(-2.0) == -1.0


@pytest.mark.parametrize("op", [lax.max, lax.min])
def test_max_min_ties_split_the_gradient(op):
    gx, gy = funcgrad.grad(lambda x, y: op(x, y), argnums=(0, 1))(0.0, 0.0)
    assert (gx, gy) == (0.5, 0.5)
    relu_at_zero = funcgrad.grad(lambda x: funcgrad.numpy.maximum(x, 0.0))(0.0)
    assert relu_at_zero == 0.5


def test_max_ties_in_arrays_broadcast():
    x = np.array([0.0, 1.0, -1.0])
    g = funcgrad.grad(lambda v: lax.max(v, np.zeros((2, 3))).sum())(x)
    np.testing.assert_array_equal(g, [1.0, 2.0, 0.0])


def test_integer_inputs_get_float0_tangents():
    i = np.arange(4, dtype=I32)
    x = np.linspace(0, 1, 4)
    out, t = funcgrad.jvp(lambda a, b: lax.mul(lax.convert_element_type(a, F64), b), (i, x),
                          (np.zeros(4, dtypes.float0), np.ones(4)))
    np.testing.assert_allclose(t, i)
    _, pullback = funcgrad.vjp(lambda a, b: lax.convert_element_type(a, F64) * b, i, x)
    gi, gx = pullback(np.ones(4))
    assert gi.dtype == dtypes.float0 and gi.shape == (4,)
    np.testing.assert_allclose(gx, i)
    _, t = funcgrad.jvp(lambda a: lax.lt(a, 0.5), (x,), (np.ones(4),))
    assert t.dtype == dtypes.float0


@pytest.mark.parametrize("name", ["floor", "sign", "stop_gradient", "round"])
def test_piecewise_constant_tangents_are_symbolic_zeros(name):
    fn = getattr(lax, name)
    x = np.linspace(-1, 1, 5) + 0.1
    _, t = funcgrad.jvp(fn, (x,), (np.ones(5),))
    np.testing.assert_array_equal(t, np.zeros(5))
    jaxpr = make_jaxpr(funcgrad.value_and_grad(lambda v: fn(v).sum() + v.sum()))(x)
    # Forward: name, 2 reduce_sum, add. Backward: one broadcast of the output cotangent.
    assert h.primitives_in(jaxpr) == {name, "reduce_sum", "add", "broadcast_in_dim"}, jaxpr
    assert h.count_eqns(jaxpr) == 5, jaxpr


def test_unused_inputs_cost_nothing():
    """Symbolic zeros: the gradient jaxpr does no work for an input that does not matter."""
    f = lambda x, y: lax.sin(x).sum()
    x, y = np.ones(3), np.ones((1000, 1000))
    jaxpr = make_jaxpr(funcgrad.grad(f, argnums=(0, 1)))(x, y)
    assert h.primitives_in(jaxpr) <= {"sin", "cos", "mul", "reduce_sum", "broadcast_in_dim"}, jaxpr
    only_x = make_jaxpr(funcgrad.grad(f))(x, y)
    assert h.count_eqns(only_x) == 3, only_x    # cos; broadcast 1, mul (grad skips the value)
    assert "add_any" not in h.primitives_in(only_x)


# ---------------------------------------------------------------------------------------------
# Trace-time errors name the operation, the operand types and the user's line


@pytest.mark.parametrize("fn, args, message", [
    (lax.exp, (np.arange(3, dtype=I32),), "exp: expected floating-point operands (operands: i32[3])"),
    (lax.add, (np.ones(3, F32), np.ones(3, F64)), "add: operands must have the same dtype"),
    (lax.mul, (np.ones(3), np.ones(4)),
     "mul: shapes cannot be broadcast together (operands: f64[3], f64[4])"),
    (lax.shift_left, (np.ones(3), np.ones(3)), "shift_left: expected integer operands"),
    (lax.select, (np.ones(3), np.ones(3), np.ones(3)), "select: predicate must be boolean"),
])
def test_type_errors_name_the_operation(fn, args, message):
    with pytest.raises(TypeError, match=re.escape(message)) as info:
        make_jaxpr(lambda *a: fn(*a))(*args)
    assert "test_primitives_elementwise.py" in str(info.value)


# ---------------------------------------------------------------------------------------------
# The harness itself: each kind of broken rule makes it fail


def _looping_batch(orig_rule, args, dims):
    """A batching rule that loops over the batch (forbidden): one mul per example."""
    from funcgrad.interpreters.batching import batch_size, move_to_front_or_broadcast
    size = batch_size(args, dims)
    if size == 0:
        return orig_rule(args, dims)
    x, y = (move_to_front_or_broadcast(a, d, size) for a, d in zip(args, dims))
    rows = [lax.mul(lax.slice_in_dim(x, i, i + 1), lax.slice_in_dim(y, i, i + 1)) for i in range(size)]
    return lax.concatenate(rows, 0), 0


def _wrong_out_dim(out, dim):
    return out, (dim + 1) % out.ndim


_BROKEN_MUL_RULES = {
    "impl": lambda orig: lambda xp, x, y: orig(xp, x, y) + 1,
    "abstract_eval": lambda orig: lambda x, y: orig(x, y).update(dtype=np.dtype(np.float32)),
    "jvp": lambda orig: lambda p, t: (lambda ans, tan: (ans, tan * 2.0))(*orig(p, t)),
    "transpose": lambda orig: lambda ct, x, y: [None if c is None else c * 2.0 for c in orig(ct, x, y)],
    "batch": lambda orig: lambda args, dims: _wrong_out_dim(*orig(args, dims)),
    "looping batch": lambda orig: lambda args, dims: _looping_batch(orig, args, dims),
}


@pytest.mark.parametrize("rule", sorted(_BROKEN_MUL_RULES))
def test_harness_catches_a_broken_rule(rule, monkeypatch):
    attr = rule.split()[-1]
    monkeypatch.setattr(ew.mul_p, attr, _BROKEN_MUL_RULES[rule](getattr(ew.mul_p, attr)))

    @settings(max_examples=10, database=None, phases=[Phase.generate])   # no shrinking
    @given(data=st.data())
    def run(data):
        operands = [Operand((2, 3), F64), Operand((3,), F64)]
        h.check_primitive(data, lax.mul, operands, np.multiply, prim="mul")

    with pytest.raises((AssertionError, TypeError)):
        run()
