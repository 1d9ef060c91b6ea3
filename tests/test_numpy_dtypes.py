"""NumPy 2 dtype promotion under tracing: weak Python scalars, weakly typed traced inputs.

The traced result type of every operation is compared with the dtype NumPy itself gives on
concrete values, over all pairs of dtypes and Python scalar kinds; then the weak-type rules
for traced Python scalars (``grad(f)(3.0)``) are checked against what eager Python gives.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core

DTYPES = [np.dtype(d) for d in ("bool", "int8", "uint8", "int16", "int32", "int64", "uint32",
                                "uint64", "float16", "float32", "float64")]
SCALARS = [True, 3, -2, 2.5]        # Python scalars: weak (NumPy 2, NEP 50)


def _traced_dtype(fn, *args) -> np.dtype:
    """The result dtype of ``fn`` traced abstractly on array args (scalars closed over)."""
    arrays = [a for a in args if isinstance(a, np.ndarray)]

    def call(*arrs):
        it = iter(arrs)
        return fn(*(next(it) if isinstance(a, np.ndarray) else a for a in args))

    closed = funcgrad.make_jaxpr(call)(*arrays)
    core.check_jaxpr(closed)
    (aval,) = closed.out_avals
    return aval.dtype


def _numpy_dtype(fn, *args):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.asarray(fn(*args)).dtype
        except (TypeError, ValueError, OverflowError):
            return None


def _operand(spec):
    return np.ones((2,), spec) if isinstance(spec, np.dtype) else spec


BINARY = ["add", "subtract", "multiply", "true_divide", "floor_divide", "remainder", "power",
          "maximum", "minimum", "arctan2", "hypot", "logaddexp", "copysign", "fmod", "equal",
          "less", "logical_and", "bitwise_and", "left_shift", "where_xy", "clip_lo"]


def _binary_fn(module, name):
    if name == "where_xy":
        return lambda x, y: module.where(np.array([True, False]), x, y)
    if name == "clip_lo":
        return lambda x, y: module.clip(x, y, None)
    return getattr(module, name)


@pytest.mark.parametrize("name", BINARY)
def test_binary_promotion_table(name):
    """Every (dtype | Python scalar) x (dtype | Python scalar) pair, one array at least."""
    f, g = _binary_fn(fnp, name), _binary_fn(np, name)
    specs = DTYPES + SCALARS
    for a, b in itertools.product(specs, specs):
        if not (isinstance(a, np.dtype) or isinstance(b, np.dtype)):
            continue
        x, y = _operand(a), _operand(b)
        want = _numpy_dtype(g, x, y)
        if want is None:
            with pytest.raises((TypeError, ValueError, OverflowError)):
                _traced_dtype(f, x, y)
            continue
        assert _traced_dtype(f, x, y) == want, (name, a, b)


@pytest.mark.parametrize("name", ["negative", "absolute", "sign", "exp", "sqrt", "sin", "floor",
                                  "rint", "trunc", "isnan", "square", "reciprocal", "sinc",
                                  "signbit", "logical_not", "invert", "deg2rad", "nan_to_num"])
def test_unary_result_dtypes(name):
    f, g = getattr(fnp, name), getattr(np, name)
    for dt in DTYPES:
        x = np.ones((2,), dt)
        want = _numpy_dtype(g, x)
        if want is None:
            with pytest.raises((TypeError, ValueError)):
                _traced_dtype(f, x)
        else:
            assert _traced_dtype(f, x) == want, (name, dt)


@pytest.mark.parametrize("name", ["sum", "prod", "mean", "var", "std", "cumsum", "cumprod", "max",
                                  "argmax", "all", "count_nonzero", "median", "average", "ptp",
                                  "nansum", "nanmean", "trace_2d", "linspace_to"])
def test_reduction_result_dtypes(name):
    """Accumulator rules: small integers sum to the platform int, means of integers are
    float64, float16 means are float16 (accumulated in float32)."""
    if name == "trace_2d":
        f, g = (lambda x: m.trace(m.stack([x, x])) for m in (fnp, np))
    elif name == "linspace_to":
        f, g = (lambda x: m.linspace(x, 1, 3) for m in (fnp, np))
    else:
        f, g = getattr(fnp, name), getattr(np, name)
    for dt in DTYPES:
        x = np.ones((2,), dt)
        want = _numpy_dtype(g, x)
        if want is None:
            with pytest.raises((TypeError, ValueError)):
                _traced_dtype(f, x)
        else:
            assert _traced_dtype(f, x) == want, (name, dt)


def test_the_headline_rules():
    x32 = np.ones(3, np.float32)
    i32 = np.ones(3, np.int32)
    u8 = np.ones(3, np.uint8)
    assert _traced_dtype(lambda x: x * 2.0, x32) == np.float32
    assert _traced_dtype(lambda x: x * 2.5, i32) == np.float64
    assert _traced_dtype(lambda x: x + 1, u8) == np.uint8
    assert _traced_dtype(lambda x: 1 + x, u8) == np.uint8
    assert _traced_dtype(lambda x: x / 2, i32) == np.float64
    assert _traced_dtype(lambda x: x // 2, u8) == np.uint8
    assert _traced_dtype(lambda x: x ** 2, u8) == np.uint8
    assert _traced_dtype(lambda x: x > 2.5, i32) == np.bool_
    assert _traced_dtype(lambda x: x + np.float64(1), x32) == np.float64  # NumPy scalars are strong
    assert _traced_dtype(lambda x: x + np.ones((), np.float64), x32) == np.float64
    with pytest.raises(OverflowError):
        _traced_dtype(lambda x: x + 300, u8)
    # The printed IR shows the scalar as a literal of the array's dtype.
    assert "2.0:f32[]" in str(funcgrad.make_jaxpr(lambda x: x * 2.0)(x32))


def test_comparisons_with_mixed_kinds_compare_values():
    i32 = np.array([1, 2, 3], np.int32)
    got = core.eval_jaxpr(*_closed(lambda x: x < 2.5, i32), i32)[0]
    np.testing.assert_array_equal(got, [True, True, False])
    u8 = np.array([0, 200, 255], np.uint8)
    for f in (lambda x: x < 1000, lambda x: x > -1, lambda x: x == 256, lambda x: -1 != x):
        got = core.eval_jaxpr(*_closed(f, u8), u8)[0]
        np.testing.assert_array_equal(got, f(u8))
    f = lambda x, y: fnp.less_equal(x, y)
    x, y = np.array([1, 2], np.int64), np.array([1.5, 2.0], np.float32)
    np.testing.assert_array_equal(core.eval_jaxpr(*_closed(f, x, y), x, y)[0], [True, True])


def _closed(fn, *args):
    closed = funcgrad.make_jaxpr(fn)(*args)
    return closed.jaxpr, closed.consts


def test_python_scalar_only_operations():
    """funcgrad.numpy functions of Python scalars give NumPy's (strong) array scalars, also
    when traced; operators on Python scalars are plain Python."""
    x = np.ones(2, np.float32)
    for f in [lambda x: fnp.add(2, 3) + x, lambda x: fnp.multiply(2.0, 3) * x,
              lambda x: fnp.sqrt(4) * x, lambda x: fnp.sum(2.0) * x,
              lambda x: fnp.maximum(1, 2.5) * x, lambda x: fnp.where(True, 1.5, 2) * x,
              lambda x: fnp.asarray(2.0) * x, lambda x: fnp.power(2.0, 3) * x]:
        want = np.asarray(f(x))
        got_dtype = _traced_dtype(f, x)
        assert got_dtype == want.dtype, (got_dtype, want.dtype)
        np.testing.assert_array_equal(core.eval_jaxpr(*_closed(f, x), x)[0], want)


# ---------------------------------------------------------------------------------------------
# Weakly typed traced inputs: Python scalars passed to grad / jvp / vjp


X32 = np.array([1.0, 2.0], np.float32)
CASES = {
    # name: function of a Python scalar x
    "x * array": lambda x: x * X32,
    "x * x * array": lambda x: x * x * X32,
    "(x + 1) ** 2 * array": lambda x: (x + 1) ** 2 * X32,
    "-x / 2 * array": lambda x: -x / 2 * X32,
    "abs(x) * array": lambda x: abs(x) * X32,
    "sin(x) * array": lambda x: fnp.sin(x) * X32,           # np.sin(3.0) is strong float64
    "multiply(x, 2) * array": lambda x: fnp.multiply(x, 2) * X32,
    "asarray(x) * array": lambda x: fnp.asarray(x) * X32,
    "sum(x * array)": lambda x: fnp.sum(x * X32),
    "where(x > 0, x, 0) * array": lambda x: fnp.where(x > 0, x, 0.0) * X32,
    "x * 2 * array": lambda x: x * 2 * X32,
    "maximum(x, 0) * array": lambda x: fnp.maximum(x, 0) * X32,
}


@pytest.mark.parametrize("name", list(CASES))
def test_weak_traced_inputs_match_eager_python(name):
    f = CASES[name]
    eager = np.asarray(f(1.5))
    primal, tangent = funcgrad.jvp(f, (1.5,), (1.0,))
    assert np.asarray(primal).dtype == eager.dtype, (np.asarray(primal).dtype, eager.dtype)
    assert np.asarray(tangent).dtype == eager.dtype
    np.testing.assert_allclose(primal, eager, rtol=1e-6)
    out, pullback = funcgrad.vjp(f, 1.5)
    assert np.asarray(out).dtype == eager.dtype
    (ct,) = pullback(np.ones_like(eager))
    # The cotangent of a Python float input is a float64 (the input's own type).
    assert np.asarray(ct).dtype == np.float64
    np.testing.assert_allclose(ct, np.sum(tangent, dtype=np.float64), rtol=1e-6)


def test_weak_input_under_grad_and_hessian():
    f = lambda x: fnp.sum(x * x * X32)
    assert funcgrad.grad(f)(3.0) == pytest.approx(2 * 3.0 * 3.0)
    assert funcgrad.grad(funcgrad.grad(f))(3.0) == pytest.approx(6.0)
    # The value is float32, as eager f(3.0) is.
    value, _ = funcgrad.value_and_grad(f)(3.0)
    assert np.asarray(value).dtype == np.float32 == np.asarray(f(3.0)).dtype
    # Integer Python scalars are weak too: x + i32_array stays int32.
    out = funcgrad.vmap(lambda i: i + np.int32(0) * 0 + np.ones(2, np.int32), in_axes=None,
                        axis_size=2)(3)
    assert out.dtype == np.int32


def test_weak_types_in_the_jaxpr():
    """A Python-scalar input is a weakly typed variable; arithmetic on it alone stays weak,
    a NumPy function of it is strong (as NumPy's own results are)."""
    closed = funcgrad.make_jaxpr(lambda x: (x * 2, fnp.exp(x), x * X32))(1.0)
    weak = [a.weak_type for a in closed.out_avals]
    assert weak == [True, False, False]
    assert [a.dtype for a in closed.out_avals] == [np.float64, np.float64, np.float32]


def test_array_of_a_list_holding_tracers():
    """Array coercion is not promotion: Python scalars in a list are float64/int64."""
    x32 = np.float32(1.5)
    for f in [lambda x: fnp.array([x, 2.0]), lambda x: fnp.asarray([[x, 1], [2, x]]),
              lambda x: fnp.array([x, x], dtype=np.int32), lambda x: fnp.array([x], ndmin=3),
              lambda x: fnp.stack([x, 2.0])]:
        want = np.asarray(f(x32))
        got = core.eval_jaxpr(*_closed(f, x32), x32)[0]
        assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)


def test_result_type_and_can_cast_take_traced_values():
    """Re-exported NumPy functions would recurse through __array_function__ on tracers."""
    seen = {}

    def f(x, w):
        seen["mixed"] = fnp.result_type(x, 1.0), np.result_type(x, np.int64), fnp.result_type(w, x)
        seen["dtype"] = fnp.result_type(x, "f8"), fnp.result_type(x, np.ones(2, np.int8))
        seen["cast"] = fnp.can_cast(x, np.float64), np.can_cast(x, np.int8)
        return x

    funcgrad.jit(f)(np.ones(3, np.float32), 2.0)
    x32 = np.ones(3, np.float32)
    assert seen["mixed"] == (np.float32, np.float64, np.result_type(2.0, x32))
    assert seen["dtype"] == (np.float64, np.float32)
    assert seen["cast"] == (True, False)


def test_numpy_functions_without_an_equivalent_say_so():
    with pytest.raises(TypeError, match="numpy.fft.fft is not supported on traced values"):
        funcgrad.jit(lambda x: np.fft.fft(x))(np.ones(4))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint16, np.float32])
def test_power_operator_with_int_exponent_traced_dtype(dtype, k):
    """``a ** 2`` is NumPy's ``square`` (a bool array squared is int8, not power's int64)."""
    x = np.array([1, 0, 1], dtype)
    want = x ** k
    for got in [funcgrad.jit(lambda v: v ** k)(x), funcgrad.vmap(lambda v: v ** k)(x),
                core.eval_jaxpr(*_closed(lambda v: v ** k, x), x)[0]]:
        assert got.dtype == want.dtype, (dtype, k, got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)
    assert funcgrad.jit(lambda v: fnp.power(v, k))(x).dtype == np.power(x, k).dtype
