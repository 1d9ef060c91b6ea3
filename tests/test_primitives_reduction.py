"""Reductions and cumulative ops through the uniform harness: sum, max, min, prod (with
zeros), and/or, argmax/argmin (ties, NaN), cumsum/cumprod/cummax/cummin (also reversed)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import funcgrad
from funcgrad import lax, make_jaxpr
from funcgrad.test_util import check_grads

import primitive_harness as h
from primitive_harness import NUMERIC_DTYPES, Operand

I32, I64, BOOL = np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.bool_)


@st.composite
def reduction_params(draw, nonempty: bool = False):
    """(shape, axes): one or more sorted distinct axes; ``nonempty`` makes the reduced axes'
    sizes >= 1 (the other axes may still be empty)."""
    shape = list(draw(h.shapes(min_dims=1, max_dims=3, max_side=3), label="shape"))
    axes = tuple(sorted(draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True),
                             label="axes")))
    if nonempty:
        for a in axes:
            shape[a] = max(shape[a], 1)
    return tuple(shape), axes


def with_zeros(domain: h.Domain) -> h.Domain:
    """``domain`` with some entries replaced by exact zeros."""
    def zeroed(shape, dtype):
        return st.tuples(domain(shape, dtype), h.hnp.arrays(BOOL, shape)).map(
            lambda vm: np.where(vm[1], np.zeros((), dtype), vm[0]))
    return zeroed


REDUCTIONS = {
    # name: (function, numpy reference, dtypes, domain, nonempty, derivative order)
    "reduce_sum": (lax.reduce_sum, lambda x, a: np.sum(x, a, dtype=x.dtype), NUMERIC_DTYPES,
                   h.reals(), False, 2),
    "reduce_max": (lax.reduce_max, np.max, h.ALL_DTYPES, h.reals(-4, 4, unique=True), True, 2),
    "reduce_min": (lax.reduce_min, np.min, h.ALL_DTYPES, h.reals(-4, 4, unique=True), True, 2),
    "reduce_prod": (lax.reduce_prod, lambda x, a: np.prod(x, a, dtype=x.dtype), NUMERIC_DTYPES,
                    with_zeros(h.reals(-1.5, 1.5)), False, 2),
    "reduce_and": (lax.reduce_and, np.all, (BOOL,), h.reals(), False, 0),
    "reduce_or": (lax.reduce_or, np.any, (BOOL,), h.reals(), False, 0),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@given(data=st.data())
def test_reduction(name, data):
    fn, ref, dtypes_, domain, nonempty, order = REDUCTIONS[name]
    shape, axes = data.draw(reduction_params(nonempty), label="shape, axes")
    dtype = data.draw(st.sampled_from(dtypes_), label="dtype")
    h.check_primitive(data, lambda x: fn(x, axes), [Operand(shape, dtype, domain)],
                      lambda x: ref(x, axes), prim=name, order=order)


def test_prod_gradient_with_zeros():
    """d prod / d x_i is the product of the others: exact with one or several zeros."""
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 4.0]])
    g = funcgrad.grad(lambda v: lax.reduce_prod(v, 1).sum())(x)
    np.testing.assert_array_equal(g, [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [8.0, 4.0, 2.0]])
    funcgrad.test_util.check_grads(lambda v: lax.reduce_prod(v, (0, 1)), (x,), order=2)


def test_max_ties_share_the_gradient():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    g = funcgrad.grad(lambda v: lax.reduce_max(v, 1).sum())(x)
    np.testing.assert_allclose(g, [[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_zero_size_max_is_a_trace_time_error():
    with pytest.raises(TypeError, match="reduce_max: zero-size reduction"):
        make_jaxpr(lambda v: lax.reduce_max(v, 0))(np.zeros((0, 2)))


# ---------------------------------------------------------------------------------------------
# argmax / argmin


def ties_and_nans(shape, dtype):
    """Few distinct values (many ties) and, for floats, some NaNs."""
    values = {"b": st.booleans(), "i": st.sampled_from([-1, 0, 2]),
              "f": st.sampled_from([-1.0, 0.0, 2.0, np.nan, -np.inf])}[dtype.kind]
    return h.hnp.arrays(dtype, shape, elements=values)


@pytest.mark.parametrize("name, ref", [("argmax", np.argmax), ("argmin", np.argmin)])
@given(data=st.data(), shape=h.shapes(min_dims=1, max_dims=3),
       dtype=st.sampled_from(h.ALL_DTYPES), index_dtype=st.sampled_from([I32, I64]))
def test_argmax_argmin(name, ref, data, shape, dtype, index_dtype):
    """First index of the extremum, NaN counting as the extremum (numpy's rules)."""
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    shape = shape[:axis] + (max(shape[axis], 1),) + shape[axis + 1:]
    fn = getattr(lax, name)
    h.check_primitive(data, lambda x: fn(x, axis, index_dtype), [Operand(shape, dtype, ties_and_nans)],
                      lambda x: ref(x, axis).astype(index_dtype), prim=name, order=0)


def test_argmax_has_zero_float0_tangent():
    x = np.array([1.0, 3.0, 2.0])
    _, t = funcgrad.jvp(lambda v: lax.argmax(v, 0), (x,), (np.ones(3),))
    assert t.dtype == funcgrad.dtypes.float0


# ---------------------------------------------------------------------------------------------
# Cumulative ops


CUMULATIVE = {
    "cumsum": (lax.cumsum, lambda x, a: np.cumsum(x, a, dtype=x.dtype), h.reals()),
    "cumprod": (lax.cumprod, lambda x, a: np.cumprod(x, a, dtype=x.dtype),
                with_zeros(h.reals(-1.5, 1.5))),
    "cummax": (lax.cummax, np.maximum.accumulate, h.reals(-4, 4, unique=True)),
    "cummin": (lax.cummin, np.minimum.accumulate, h.reals(-4, 4, unique=True)),
}


@pytest.mark.parametrize("name", sorted(CUMULATIVE))
@given(data=st.data(), shape=h.shapes(min_dims=1, max_dims=3, max_side=3), reverse=st.booleans(),
       dtype=st.sampled_from(NUMERIC_DTYPES))
def test_cumulative(name, data, shape, reverse, dtype):
    fn, ref, domain = CUMULATIVE[name]
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")

    def reference(x):
        flip = (lambda v: np.flip(v, axis)) if reverse else (lambda v: v)
        return flip(ref(flip(x), axis))

    h.check_primitive(data, lambda x: fn(x, axis, reverse), [Operand(shape, dtype, domain)],
                      reference, prim=name)


@pytest.mark.parametrize("name", ["cummax", "cummin"])
def test_cumulative_extremum_ties_take_the_latest(name):
    """With ties the running extremum's tangent comes from its latest attaining position."""
    x = np.array([1.0, 1.0, 0.0, 2.0]) * (1 if name == "cummax" else -1)
    t = np.array([1.0, 10.0, 100.0, 1000.0])
    _, out = funcgrad.jvp(lambda v: getattr(lax, name)(v, 0), (x,), (t,))
    np.testing.assert_array_equal(out, [1.0, 10.0, 10.0, 1000.0])


def test_batched_reduction_axes_around_the_batch_axis():
    """vmap with the batch axis between reduced axes keeps the right output axis."""
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    out = funcgrad.vmap(lambda v: lax.reduce_sum(v, (0, 2)), in_axes=2)(x)
    np.testing.assert_array_equal(out, np.sum(np.moveaxis(x, 2, 0), (1, 3)))
    out = funcgrad.vmap(lambda v: lax.argmax(v, 1), in_axes=1)(x)
    np.testing.assert_array_equal(out, np.argmax(np.moveaxis(x, 1, 0), 2))


def test_associative_scan_takes_an_array_or_any_pytree():
    x = np.arange(12.0).reshape(3, 4)
    add = lambda a, b: a + b
    np.testing.assert_array_equal(funcgrad.lax.associative_scan(add, x), np.cumsum(x, 0))
    np.testing.assert_array_equal(funcgrad.lax.associative_scan(add, x[0]), np.cumsum(x[0]))
    np.testing.assert_array_equal(funcgrad.lax.associative_scan(add, x, axis=-1), np.cumsum(x, 1))
    np.testing.assert_array_equal(funcgrad.lax.associative_scan(add, x, reverse=True),
                                  np.cumsum(x[::-1], 0)[::-1])
    both = lambda a, b: {"s": a["s"] + b["s"], "m": funcgrad.numpy.maximum(a["m"], b["m"])}
    out = funcgrad.jit(lambda t: funcgrad.lax.associative_scan(both, t, axis=1))({"s": x, "m": -x})
    np.testing.assert_array_equal(out["s"], np.cumsum(x, 1))
    np.testing.assert_array_equal(out["m"], np.maximum.accumulate(-x, 1))
    check_grads(lambda v: funcgrad.lax.associative_scan(lambda a, b: a * b, v), [x[0] + 1], order=2)
    with pytest.raises(ValueError, match="same length along axis 0"):
        funcgrad.lax.associative_scan(add, (x, x[:2]))
    with pytest.raises(TypeError, match="structure of elems"):
        funcgrad.lax.associative_scan(lambda a, b: a[0], (x, x))


@pytest.mark.parametrize("case", ["rows", "columns", "with_y", "one_variable", "bias", "ddof"])
def test_cov_and_corrcoef_match_numpy_traced(case):
    rng = np.random.default_rng(0)
    m, y = rng.normal(size=(3, 20)).astype(np.float32), rng.normal(size=20)
    args = {"rows": ((m,), {}), "columns": ((m.T,), {"rowvar": False}), "with_y": ((m, y), {}),
            "one_variable": ((m[0],), {}), "bias": ((m,), {"bias": True}),
            "ddof": ((m,), {"ddof": 3})}[case]
    (a, *rest), kw = args
    for name in ("cov", "corrcoef"):
        if name == "corrcoef" and ("bias" in kw or "ddof" in kw):
            continue
        fn = getattr(funcgrad.numpy, name)
        want = getattr(np, name)(a, *rest, **kw)
        got = funcgrad.jit(lambda a: fn(a, *rest, **kw))(a)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    check_grads(lambda v: funcgrad.numpy.corrcoef(v)[0, 1:], [m.astype(np.float64)], order=1)
