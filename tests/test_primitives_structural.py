"""Structural primitives through the uniform harness: broadcast_in_dim, reshape, transpose,
squeeze, expand_dims, rev, slice, pad, concatenate, iota. All are linear (order-2 checks
exercise their transposes), all dtypes."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

import funcgrad
from funcgrad import lax, make_jaxpr
from funcgrad.primitives import structural

import primitive_harness as h
from primitive_harness import ALL_DTYPES, Operand

dtypes_ = st.sampled_from(ALL_DTYPES)


def sizes(max_side: int = 3):
    return st.integers(0, max_side)


# ---------------------------------------------------------------------------------------------
# broadcast_in_dim


@st.composite
def broadcast_in_dim_params(draw):
    """(operand shape, output shape, broadcast_dimensions): operand axes map to increasing
    output axes; 1-sized operand axes may broadcast (also to 0)."""
    shape = draw(h.shapes(max_dims=3, max_side=3), label="operand shape")
    out_rank = len(shape) + draw(st.integers(0, 2), label="new axes")
    dims = tuple(sorted(draw(st.permutations(range(out_rank)))[:len(shape)]))
    out = [draw(sizes()) for _ in range(out_rank)]
    for i, d in enumerate(dims):
        out[d] = draw(sizes()) if shape[i] == 1 else shape[i]
    return shape, tuple(out), dims


@given(data=st.data(), params=broadcast_in_dim_params(), dtype=dtypes_)
def test_broadcast_in_dim(data, params, dtype):
    shape, out_shape, dims = params

    def ref(x):
        expanded = [1] * len(out_shape)
        for i, d in enumerate(dims):
            expanded[d] = x.shape[i]
        return np.broadcast_to(x.reshape(expanded), out_shape)

    h.check_primitive(data, lambda x: structural.broadcast_in_dim_p.bind(
        x, shape=out_shape, broadcast_dimensions=dims), [Operand(shape, dtype)], ref,
        prim="broadcast_in_dim")


# ---------------------------------------------------------------------------------------------
# reshape, transpose, squeeze, expand_dims, rev


@st.composite
def reshape_params(draw):
    """An operand shape and a new shape of the same size (size 0 included)."""
    shape = draw(h.shapes(max_dims=3, max_side=4), label="shape")
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        new = draw(st.lists(sizes(), min_size=1, max_size=3)) + [0]
        return shape, tuple(draw(st.permutations(new)))
    factors = [p for p in (2, 3) for _ in range(20) if n % p ** (_ + 1) == 0]
    assert int(np.prod(factors, dtype=np.int64)) == n, "sides are at most 4"
    groups = [draw(st.integers(0, 2)) for _ in factors]
    new = [1] * (draw(st.integers(0, 1)) + 3)
    for f, g in zip(factors, groups):
        new[g] *= f
    new = [s for s in new if s != 1] + [1] * draw(st.integers(0, 1))
    return shape, tuple(draw(st.permutations(new)))


@given(data=st.data(), params=reshape_params(), dtype=dtypes_)
def test_reshape(data, params, dtype):
    shape, new = params
    h.check_primitive(data, lambda x: lax.reshape(x, new), [Operand(shape, dtype)],
                      lambda x: x.reshape(new), prim="reshape" if new != shape else None)


@given(data=st.data(), shape=h.shapes(max_dims=4, max_side=3), dtype=dtypes_)
def test_transpose(data, shape, dtype):
    perm = tuple(data.draw(st.permutations(range(len(shape))), label="permutation"))
    identity = perm == tuple(range(len(shape)))
    h.check_primitive(data, lambda x: lax.transpose(x, perm), [Operand(shape, dtype)],
                      lambda x: np.transpose(x, perm), prim=None if identity else "transpose")


@given(data=st.data(), shape=h.shapes(max_dims=4, max_side=2), dtype=dtypes_)
def test_squeeze(data, shape, dtype):
    ones = [i for i, s in enumerate(shape) if s == 1]
    axes = data.draw(st.lists(st.sampled_from(ones), unique=True) if ones else st.just([]),
                     label="axes")
    axes = tuple(a - len(shape) if data.draw(st.booleans(), label="negative") else a for a in axes)
    h.check_primitive(data, lambda x: lax.squeeze(x, axes), [Operand(shape, dtype)],
                      lambda x: np.squeeze(x, axes), prim="squeeze" if axes else None)


@given(data=st.data(), shape=h.shapes(max_dims=3, max_side=3), dtype=dtypes_)
def test_expand_dims(data, shape, dtype):
    out_rank = len(shape) + data.draw(st.integers(1, 2), label="new axes")
    axes = tuple(data.draw(st.permutations(range(out_rank)), label="axes")[:out_rank - len(shape)])
    h.check_primitive(data, lambda x: lax.expand_dims(x, axes), [Operand(shape, dtype)],
                      lambda x: np.expand_dims(x, axes), prim="expand_dims")


@given(data=st.data(), shape=h.shapes(min_dims=1, max_dims=3), dtype=dtypes_)
def test_rev(data, shape, dtype):
    axes = tuple(data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True),
                           label="axes"))
    h.check_primitive(data, lambda x: lax.rev(x, axes), [Operand(shape, dtype)],
                      lambda x: np.flip(x, axes), prim="rev")


# ---------------------------------------------------------------------------------------------
# slice, pad, concatenate


@st.composite
def slice_params(draw):
    shape = draw(h.shapes(min_dims=1, max_dims=3, max_side=5), label="shape")
    starts, limits, strides = [], [], []
    for n in shape:
        start = draw(st.integers(0, n))
        starts.append(start)
        limits.append(draw(st.integers(start, n)))
        strides.append(draw(st.integers(1, 3)))
    return shape, tuple(starts), tuple(limits), tuple(strides)


@given(data=st.data(), params=slice_params(), dtype=dtypes_)
def test_slice(data, params, dtype):
    shape, starts, limits, strides = params
    index = tuple(slice(s, l, st_) for s, l, st_ in zip(starts, limits, strides))
    h.check_primitive(data, lambda x: structural.slice_p.bind(
        x, start_indices=starts, limit_indices=limits, strides=strides),
        [Operand(shape, dtype)], lambda x: x[index], prim="slice")


def _pad_ref(x, value, config):
    """Each output position, per axis, maps back to operand index (j - lo) / (interior + 1)
    when that is a whole number in range; every other position holds the padding value."""
    sources, inside = [], []
    for n, (lo, hi, interior) in zip(x.shape, config):
        offset = np.arange(lo + n + max(n - 1, 0) * interior + hi) - lo
        src, rem = np.divmod(offset, interior + 1)
        inside.append((rem == 0) & (src >= 0) & (src < n))
        sources.append(np.clip(src, 0, max(n - 1, 0)))
    mask = np.ones((), bool)
    for k, m in enumerate(inside):
        mask = mask & m.reshape((-1,) + (1,) * (len(inside) - k - 1))
    gathered = x[np.ix_(*sources)] if x.size else np.zeros(mask.shape, x.dtype)
    return np.where(mask, gathered, value).astype(x.dtype)


@st.composite
def pad_params(draw):
    """Operand shape and a padding_config with negative edges and interior padding, giving
    non-negative sizes."""
    shape = draw(h.shapes(max_dims=3, max_side=3), label="shape")
    config = []
    for n in shape:
        interior = draw(st.integers(0, 2))
        inner = n + max(n - 1, 0) * interior
        lo = draw(st.integers(-inner, 3))
        hi = draw(st.integers(-(inner + lo) if inner + lo > 0 else 0, 3))
        config.append((lo, hi, interior))
    return shape, tuple(config)


@given(data=st.data(), params=pad_params(), dtype=dtypes_)
def test_pad(data, params, dtype):
    shape, config = params
    h.check_primitive(data, lambda x, v: lax.pad(x, v, config),
                      [Operand(shape, dtype), Operand((), dtype)],
                      lambda x, v: _pad_ref(x, v, config), prim="pad")


def test_pad_reference_matches_numpy_pad():
    """The reference above agrees with numpy.pad where numpy.pad applies (no negative or
    interior padding)."""
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(_pad_ref(x, -1.0, ((1, 2, 0), (0, 1, 0))),
                                  np.pad(x, ((1, 2), (0, 1)), constant_values=-1.0))
    np.testing.assert_array_equal(_pad_ref(np.arange(3.0), -1.0, ((-1, 1, 1),)),
                                  [-1.0, 1.0, -1.0, 2.0, -1.0])


@given(data=st.data(), shape=h.shapes(min_dims=1, max_dims=3), n=st.integers(1, 3), dtype=dtypes_)
def test_concatenate(data, shape, n, dtype):
    dim = data.draw(st.integers(0, len(shape) - 1), label="dimension")
    shapes = [shape[:dim] + (data.draw(sizes(), label="size"),) + shape[dim + 1:] for _ in range(n)]
    h.check_primitive(data, lambda *xs: lax.concatenate(xs, dim), [Operand(s, dtype) for s in shapes],
                      lambda *xs: np.concatenate(xs, dim), prim="concatenate" if n > 1 else None)


# ---------------------------------------------------------------------------------------------
# iota (no operands)


@given(data=st.data(), shape=h.shapes(min_dims=1, max_dims=3),
       dtype=st.sampled_from([np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.float32)]))
def test_iota(data, shape, dtype):
    dim = data.draw(st.integers(0, len(shape) - 1), label="dimension")
    expected = np.indices(shape, dtype=dtype)[dim]
    h.check_primitive(data, lambda: lax.broadcasted_iota(dtype, shape, dim), [],
                      lambda: expected, prim="iota")
    # Inside vmap iota stays unbatched and broadcasts against batched values.
    xs = np.ones((2,) + shape, dtype)
    out = funcgrad.vmap(lambda x: lax.add(x, lax.broadcasted_iota(dtype, shape, dim)))(xs)
    np.testing.assert_array_equal(out, xs + expected)


# ---------------------------------------------------------------------------------------------
# Trace-time errors name the operation and the operand types


@pytest.mark.parametrize("fn, message", [
    (lambda x: lax.reshape(x, (4, 2)), "reshape: cannot reshape to (4, 2) (operands: f64[2,3])"),
    (lambda x: lax.transpose(x, (0, 0)), "transpose"),
    (lambda x: lax.squeeze(x, (0,)), "squeeze"),
    (lambda x: lax.slice(x, (0, 0), (3, 3)), "slice: invalid slice 0:3:1"),
    (lambda x: lax.pad(x, 0.0, ((0, 0, 0),)), "pad"),
    (lambda x: lax.concatenate([x, x.T], 0), "concatenate"),
    (lambda x: lax.broadcast_in_dim(x, (2, 4), (0, 1)), "broadcast_in_dim: operand axis 1"),
])
def test_shape_errors_name_the_operation(fn, message):
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match=re.escape(message)) as info:
        make_jaxpr(fn)(x)
    assert "test_primitives_structural.py" in str(info.value)
