"""Indexing: the gather/scatter/dynamic_slice/dynamic_update_slice/sort primitives (through
the primitive harness), NumPy indexing ``x[idx]`` and ``x.at[idx]`` on traced arrays against
NumPy over hypothesis-drawn index expressions, the funcgrad.numpy indexing functions, and the
vmap(grad) cases ML code relies on (embedding lookups, cross-entropy)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core, grad, jit, lax, make_jaxpr, vmap
from funcgrad.numpy._indexing import IndexUpdateHelper
from funcgrad.test_util import check_grads
from funcgrad.tree_util import tree_structure, tree_unflatten

import primitive_harness as h
from primitive_harness import NUMERIC_DTYPES, Operand

F64, I32, I64 = np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64)
EXAMPLES = settings(max_examples=15)
MODERATE = st.floats(-2, 2).map(lambda v: 0.0 if abs(v) < 1e-3 else v)   # no underflow


def traced_eval(f, *args):
    """Trace ``f`` abstractly, check the jaxpr, and evaluate it."""
    closed, shapes = make_jaxpr(f, return_shape=True)(*args)
    core.check_jaxpr(closed)
    outs = core.eval_jaxpr(closed.jaxpr, closed.consts, *args)
    return tree_unflatten(tree_structure(shapes), outs)


def index_domain(bound: int) -> h.Domain:
    """Integer indices in ``[-bound, bound)``: negative ones, and repeats."""
    return lambda shape, dtype: hnp.arrays(dtype, shape, elements=st.integers(-bound, bound - 1))


def distinct(offset: float) -> h.Domain:
    """Pairwise distinct values ``k + offset`` (no ties: min/max/sort are differentiable)."""
    def domain(shape, dtype):
        if np.dtype(dtype).kind != "f":
            return hnp.arrays(dtype, shape, elements=st.integers(-50, 50), unique=True)
        return hnp.arrays(dtype, shape, elements=st.integers(-50, 50).map(lambda k: k + offset),
                          unique=True)
    return domain


# ---------------------------------------------------------------------------------------------
# Independent references: one index position at a time, with basic indexing


def gather_ref(x, idx, axes):
    s_shape = idx.shape[:-1]
    rest = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    out = np.empty(s_shape + rest, x.dtype)
    for s in np.ndindex(*s_shape):
        out[s] = x[tuple(int(idx[s][axes.index(i)]) if i in axes else slice(None)
                         for i in range(x.ndim))]
    return out


def scatter_ref(x, idx, upd, axes, mode):
    out = x.copy()
    for s in np.ndindex(*idx.shape[:-1]):     # sequentially: the last write wins
        pos = tuple(int(idx[s][axes.index(i)]) if i in axes else slice(None) for i in range(x.ndim))
        new = {"set": lambda a, b: b, "add": np.add, "mul": np.multiply,
               "min": np.minimum, "max": np.maximum}[mode](out[pos], upd[s])
        out[pos] = new
    return out


@st.composite
def gather_case(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    axes = tuple(draw(st.permutations(range(len(shape))))[:draw(st.integers(1, len(shape)))])
    batch = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    return shape, axes, batch


# ---------------------------------------------------------------------------------------------
# Primitives through the harness


@EXAMPLES
@given(data=st.data(), case=gather_case(), dtype=st.sampled_from(NUMERIC_DTYPES))
def test_gather(data, case, dtype):
    shape, axes, batch = case
    bound = min(shape[a] for a in axes)
    operands = [Operand(shape, dtype), Operand(batch + (len(axes),), I64, index_domain(bound))]
    h.check_primitive(data, lambda x, i: lax.gather(x, i, axes), operands,
                      lambda x, i: gather_ref(x, i, axes), prim="gather")


@pytest.mark.parametrize("mode", ["set", "add", "mul", "min", "max"])
@EXAMPLES
@given(data=st.data(), case=gather_case(), dtype=st.sampled_from(NUMERIC_DTYPES))
def test_scatter(mode, data, case, dtype):
    shape, axes, batch = case
    bound = min(shape[a] for a in axes)
    upd_shape = batch + tuple(n for i, n in enumerate(shape) if i not in axes)
    domains = {"mul": (h.reals(-2, 2), with_zeros),
               "min": (distinct(0.25), distinct(0.75)),
               "max": (distinct(0.25), distinct(0.75))}.get(mode, (h.reals(), h.reals()))
    operands = [Operand(shape, dtype, domains[0]),
                Operand(batch + (len(axes),), I64, index_domain(bound)),
                Operand(upd_shape, dtype, domains[1])]
    h.check_primitive(data, lambda x, i, u: lax.scatter(x, i, u, axes, mode), operands,
                      lambda x, i, u: scatter_ref(x, i, u, axes, mode), prim="scatter")


def with_zeros(shape, dtype) -> st.SearchStrategy:
    """Multipliers including zeros (the scatter-mul product rule must stay exact there)."""
    values = [-1.5, 0.0, 0.5, 2.0] if np.dtype(dtype).kind == "f" else [-1, 0, 2, 3]
    return hnp.arrays(dtype, shape, elements=st.sampled_from(values))


@st.composite
def window_case(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    sizes = tuple(draw(st.integers(0, n)) for n in shape)
    return shape, sizes


def clamped_window(starts, shape, sizes):
    return tuple(slice(c, c + k) for c, k in
                 ((min(max(int(s), 0), n - k), k) for s, n, k in zip(starts, shape, sizes)))


@EXAMPLES
@given(data=st.data(), case=window_case(), dtype=st.sampled_from(NUMERIC_DTYPES))
def test_dynamic_slice(data, case, dtype):
    """Starts drawn out of range too: they are clamped (the window stays in bounds)."""
    shape, sizes = case
    starts = [Operand((), I32, index_domain(n + 2)) for n in shape]
    h.check_primitive(data, lambda x, *s: lax.dynamic_slice(x, s, sizes),
                      [Operand(shape, dtype)] + starts,
                      lambda x, *s: x[clamped_window(s, shape, sizes)], prim="dynamic_slice")


@EXAMPLES
@given(data=st.data(), case=window_case(), dtype=st.sampled_from(NUMERIC_DTYPES))
def test_dynamic_update_slice(data, case, dtype):
    shape, sizes = case

    def ref(x, u, *s):
        out = x.copy()
        out[clamped_window(s, shape, sizes)] = u
        return out

    starts = [Operand((), I64, index_domain(n + 2)) for n in shape]
    h.check_primitive(data, lambda x, u, *s: lax.dynamic_update_slice(x, u, s),
                      [Operand(shape, dtype), Operand(sizes, dtype)] + starts, ref,
                      prim="dynamic_update_slice")


@EXAMPLES
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
       dtype=st.sampled_from(NUMERIC_DTYPES))
def test_sort_one_operand(data, shape, dtype):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    h.check_primitive(data, lambda x: lax.sort(x, axis), [Operand(shape, dtype, distinct(0.5))],
                      lambda x: np.sort(x, axis, kind="stable"), prim="sort")


@EXAMPLES
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=5))
def test_sort_by_two_keys(data, shape):
    """An integer key with ties, then a distinct float key; a float payload follows along."""
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")

    def ref(k1, k2, v):
        perm = np.lexsort((k2, k1), axis=axis)
        return [np.take_along_axis(a, perm, axis) for a in (k2, v)]

    # (the sorted integer key is left out: check_grads needs floating outputs)
    operands = [Operand(shape, I32, h.reals(-2, 2)), Operand(shape, F64, distinct(0.5)),
                Operand(shape, F64)]
    h.check_primitive(data, lambda *ops: list(lax.sort(ops, axis, num_keys=2)[1:]), operands, ref,
                      prim="sort")


def test_sort_is_stable_and_puts_nan_last():
    keys = np.array([2, 1, 2, 1, 0, 2], np.int32)
    payload = np.arange(6.0)
    _, out = traced_eval(lambda k, v: list(lax.sort([k, v], 0)), keys, payload)
    np.testing.assert_array_equal(out, [4, 1, 3, 0, 2, 5])
    x = np.array([3.0, np.nan, -1.0, np.nan, 0.0])
    np.testing.assert_array_equal(traced_eval(lambda x: lax.sort(x), x), np.sort(x))


@EXAMPLES
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
def test_take_along_axis_lax(data, shape):
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    m = data.draw(st.integers(0, 3), label="m")
    # indices broadcast against the operand along the other axes
    idx_shape = tuple(m if i == axis else data.draw(st.sampled_from([1, n]), label=f"side{i}")
                      for i, n in enumerate(shape))
    operands = [Operand(shape, F64), Operand(idx_shape, I64, index_domain(shape[axis]))]
    h.check_primitive(data, lambda x, i: lax.take_along_axis(x, i, axis), operands,
                      lambda x, i: np.take_along_axis(x, i, axis))


# ---------------------------------------------------------------------------------------------
# Primitive corner cases


def test_scatter_duplicates_accumulate_and_set_last_wins():
    x = np.zeros(4)
    i = np.array([[1], [1], [3], [1]])
    u = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(lax.scatter_add(x, i, u, (0,)), [0, 7, 0, 3])
    np.testing.assert_array_equal(lax.scatter(x, i, u, (0,)), [0, 4, 0, 3])
    np.testing.assert_array_equal(lax.scatter_mul(x + 1, i, u, (0,)), [1, 8, 1, 3])
    np.testing.assert_array_equal(lax.scatter_max(x, i, -u, (0,)), [0, 0, 0, 0])
    np.testing.assert_array_equal(lax.scatter_min(x, i, -u, (0,)), [0, -4, 0, -3])
    # only the last write to a position receives the set's cotangent
    g = grad(lambda u: (lax.scatter(x, i, u, (0,)) * np.arange(1.0, 5.0)).sum())(u)
    np.testing.assert_array_equal(g, [0, 0, 4, 2])


def test_scatter_mul_gradient_with_zero_updates():
    """The product rule stays exact where some of the multiplied updates are zero."""
    i = np.array([[0], [0], [0], [1], [1]])

    def f(x, u):
        return lax.scatter_mul(x, i, u, (0,))

    for u in [np.array([0.0, 2.0, 3.0, 0.0, 0.0]), np.array([0.0, 2.0, 3.0, 5.0, 7.0]),
              np.array([1.5, 2.0, 3.0, 5.0, 0.0])]:
        check_grads(f, [np.array([1.5, -2.0, 0.5]), u], order=2)


def test_scatter_min_ties_share_the_tangent():
    x = np.array([1.0, 5.0])
    i = np.array([[0], [1]])
    u = np.array([1.0, 2.0])
    _, t = funcgrad.jvp(lambda x, u: lax.scatter_min(x, i, u, (0,)), [x, u],
                        [np.array([1.0, 0.0]), np.array([3.0, 1.0])])
    np.testing.assert_allclose(t, [2.0, 1.0])


def test_gather_out_of_bounds_names_the_operand_axis():
    x = np.zeros((2, 3))
    with pytest.raises(IndexError, match="index 5 is out of bounds for axis 1 with size 3"):
        lax.gather(x, np.array([[5]]), (1,))
    with pytest.raises(IndexError, match="axis 0 with size 2"):
        lax.scatter_add(x, np.array([[0, 0], [-3, 1]]), np.ones(2), (0, 1))
    with pytest.raises(IndexError, match="index 2 is out of bounds for axis 0 with size 2"):
        lax.scatter_add(x, np.array([[1], [2]]), np.ones((2, 3)), (0,))     # whole rows


def test_primitive_shape_errors_name_the_operation():
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="gather: indices must be an integer array"):
        make_jaxpr(lambda x: lax.gather(x, np.zeros((1, 1)), (0,)))(x)
    with pytest.raises(TypeError, match=r"gather: indices must have shape S \+ \(2,\)"):
        make_jaxpr(lambda x: lax.gather(x, np.zeros((4, 1), np.int64), (0, 1)))(x)
    with pytest.raises(TypeError, match="scatter-add: updates must have"):
        make_jaxpr(lambda x: lax.scatter_add(x, np.zeros((4, 1), np.int64), np.ones(4), (0,)))(x)
    with pytest.raises(TypeError, match="dynamic_slice: slice_sizes"):
        make_jaxpr(lambda x: lax.dynamic_slice(x, [0, 0], (3, 1)))(x)
    with pytest.raises(TypeError, match="dynamic_update_slice: start indices must be integer"):
        make_jaxpr(lambda x: lax.dynamic_update_slice(x, x, [0.5, 0]))(x)
    with pytest.raises(TypeError, match="test_indexing.py"):   # the user's line
        make_jaxpr(lambda x: lax.sort([x, x[0]]))(x)


def test_in_dim_helpers():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(lax.dynamic_index_in_dim(x, 5, 0, keepdims=False), x[2])
    np.testing.assert_array_equal(lax.dynamic_slice_in_dim(x, 1, 2, axis=1), x[:, 1:3])
    out = lax.dynamic_update_index_in_dim(x, np.zeros(3), 1, axis=1)
    np.testing.assert_array_equal(out[:, 1], 0)
    np.testing.assert_array_equal(lax.index_take(x, [np.array([0, 2]), np.array([3, 3])], (0, 1)),
                                  [3.0, 11.0])
    keys, vals = lax.sort_key_val(np.array([2, 0, 1]), np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(vals, [1.0, 2.0, 0.0])


# ---------------------------------------------------------------------------------------------
# NumPy indexing: hypothesis-drawn index expressions


@st.composite
def index_expressions(draw, allow_masks=True):
    """(shape, index) with ints, slices (any step), None, Ellipsis, integer arrays and lists
    (broadcasting, repeated and negative entries) and boolean masks."""
    min_side = draw(st.sampled_from([0, 1, 1, 1]))         # empty axes now and then
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=min_side, max_side=4))
    adv_shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    kinds = ["int", "slice", "slice", "array", "list"] + (["mask"] if allow_masks else [])

    def item(n):
        kind = draw(st.sampled_from(kinds if n else [k for k in ("slice", "mask") if k in kinds]))
        if kind == "int":
            return draw(st.integers(-n, n - 1))
        if kind == "slice":
            return draw(st.slices(n))
        if kind == "mask":
            return draw(hnp.arrays(np.bool_, (n,)))
        arr = draw(hnp.arrays(np.int64, draw(hnp.broadcastable_shapes(adv_shape, max_dims=2)),
                              elements=st.integers(-n, n - 1)))
        return arr if kind == "array" else arr.tolist()

    n_front = draw(st.integers(0, len(shape)))
    n_back = draw(st.integers(0, len(shape) - n_front))
    front = [item(n) for n in shape[:n_front]]
    back = [item(n) for n in shape[len(shape) - n_back:]]
    items = front + ([Ellipsis] if n_back or draw(st.booleans()) else []) + back
    for _ in range(draw(st.integers(0, 2))):
        items.insert(draw(st.integers(0, len(items))), None)
    if draw(st.integers(0, 9)) == 0:
        items.insert(draw(st.integers(0, len(items))), draw(st.booleans()))   # 0-d boolean
    idx = tuple(items) if len(items) != 1 or draw(st.booleans()) else items[0]
    return shape, idx


def _numpy_or_error(fn):
    try:
        return fn(), None
    except IndexError as e:
        return None, e


def _split_arrays(idx):
    """The integer arrays/lists of an index (to pass them as traced arguments) and a function
    rebuilding the index from them."""
    items = idx if type(idx) is tuple else (idx,)
    pos = [k for k, it in enumerate(items) if isinstance(it, (np.ndarray, list))
           and np.asarray(it).dtype.kind in "iu" and np.asarray(it).size]
    arrays = [np.asarray(items[k], np.int64) for k in pos]

    def rebuild(*traced):
        out = list(items)
        for k, t in zip(pos, traced):
            out[k] = t
        return tuple(out) if type(idx) is tuple else out[0]

    return arrays, rebuild


@settings(max_examples=60)
@given(case=index_expressions(), data=st.data())
def test_getitem_matches_numpy(case, data):
    shape, idx = case
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-9, 9, width=32)), label="x")
    expected, error = _numpy_or_error(lambda: x[idx])
    if error is not None:
        with pytest.raises(IndexError):
            traced_eval(lambda x: x[idx], x)
        return
    h.assert_same(traced_eval(lambda x: x[idx], x), expected, what="static index")
    # the same with the integer index arrays traced
    arrays, rebuild = _split_arrays(idx)
    if arrays:
        h.assert_same(traced_eval(lambda x, *a: x[rebuild(*a)], x, *arrays), expected,
                      what="traced index arrays")


@settings(max_examples=40)
@given(case=index_expressions(), data=st.data(),
       mode=st.sampled_from(["set", "add", "multiply", "min", "max", "divide", "power"]))
def test_at_updates_match_numpy(case, data, mode):
    shape, idx = case
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(0.5, 2)), label="x")
    expected_shape, error = _numpy_or_error(lambda: x[idx].shape)
    if error is not None:
        with pytest.raises(IndexError):
            traced_eval(lambda x: x.at[idx].set(1.0), x)
        return
    v = data.draw(st.one_of(st.just(np.float64(1.5)),
                            hnp.arrays(np.float64, expected_shape, elements=st.floats(0.5, 2))),
                  label="values")
    ufunc = {"add": np.add, "multiply": np.multiply, "min": np.minimum, "max": np.maximum,
             "divide": np.true_divide, "power": np.power}
    expected = x.copy()
    if mode == "set":
        expected[idx] = v
    else:
        ufunc[mode].at(expected, idx, v)
    update = lambda x, v: getattr(x.at[idx], mode)(v)
    h.assert_same(traced_eval(update, x, v), expected, rtol=1e-12, atol=1e-12, what=mode)
    # eager, on a NumPy array: a new array, the input untouched
    before = x.copy()
    h.assert_same(getattr(IndexUpdateHelper(x)[idx], mode)(v), expected, what="eager")
    np.testing.assert_array_equal(x, before)


@settings(max_examples=15)
@given(case=index_expressions(), data=st.data())
def test_getitem_and_at_gradients(case, data):
    shape, idx = case
    x = data.draw(hnp.arrays(np.float64, shape, elements=MODERATE), label="x")
    out_shape, error = _numpy_or_error(lambda: x[idx].shape)
    if error is not None or not x.size:
        return
    v = data.draw(hnp.arrays(np.float64, out_shape, elements=MODERATE), label="v")
    check_grads(lambda x: x[idx], [x], order=2)
    at = IndexUpdateHelper        # check_grads also calls the function on NumPy arrays
    check_grads(lambda x, v: at(x)[idx].set(v), [x, v], order=2)
    check_grads(lambda x, v: at(x)[idx].add(v * v), [x, v], order=2)
    check_grads(lambda x, v: at(x)[idx].multiply(v), [x, v], order=2)


@settings(max_examples=20)
@given(case=index_expressions(allow_masks=False), data=st.data(), size=st.integers(1, 3))
def test_getitem_vmap_matches_loop(case, data, size):
    """Batched operand (any axis), batched index arrays, or both; the jaxpr does not grow
    with the batch size."""
    shape, idx = case
    if _numpy_or_error(lambda: np.zeros(shape)[idx])[1] is not None:
        return
    arrays, rebuild = _split_arrays(idx)
    x_axis = data.draw(st.one_of(st.none(), st.integers(0, len(shape))) if arrays
                       else st.integers(0, len(shape)), label="x axis")
    a_axes = [data.draw(st.one_of(st.none(), st.integers(0, a.ndim)), label="index axis")
              for a in arrays]
    if x_axis is None and all(a is None for a in a_axes):
        x_axis = 0

    def stack(a, axis):        # rows differ, entries stay valid indices
        if axis is None:
            return a
        return np.stack([np.roll(a.ravel(), k).reshape(a.shape) for k in range(size)], axis)

    x = np.asarray(data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-2, 2))))
    bx = stack(x, x_axis) * np.arange(1.0, size + 1).reshape((-1,) + (1,) * len(shape)).swapaxes(
        0, x_axis) if x_axis is not None else x
    bargs = [stack(a, ax) for a, ax in zip(arrays, a_axes)]
    f = lambda x, *a: x[rebuild(*a)]
    vf = vmap(f, in_axes=(x_axis, *a_axes))
    out = vf(bx, *bargs)
    take = lambda a, ax, k: a if ax is None else np.take(a, k, ax)
    expected = np.stack([f(take(bx, x_axis, k), *[take(a, ax, k) for a, ax in zip(bargs, a_axes)])
                         for k in range(size)])
    h.assert_same(out, expected, what="vmap of getitem")
    small = make_jaxpr(vf)(bx, *bargs)
    core.check_jaxpr(small)
    grow = lambda a, ax: a if ax is None else np.concatenate([a] * 3, ax)
    big = make_jaxpr(vf)(grow(bx, x_axis), *[grow(a, ax) for a, ax in zip(bargs, a_axes)])
    assert h.count_eqns(big) == h.count_eqns(small)


def test_traced_scalar_indices():
    """Traced integer scalars index with one gather: negative ones wrap, out-of-range ones
    raise IndexError when evaluated (not clamped, as a dynamic_slice would be); they batch
    under vmap."""
    x = np.arange(24.0).reshape(4, 6)
    for i in [0, 3, -1, -4]:
        np.testing.assert_array_equal(traced_eval(lambda x, i: x[i], x, np.int64(i)), x[i])
        np.testing.assert_array_equal(traced_eval(lambda x, i: x[1:, i], x, np.int32(i)), x[1:, i])
        np.testing.assert_array_equal(traced_eval(lambda x, i: x[i, ::-2, None], x, np.int64(i)),
                                      x[i, ::-2, None])
        np.testing.assert_array_equal(traced_eval(lambda x, i: x.at[i, 1].set(-1.0), x, np.int64(i)),
                                      np.where((np.arange(4)[:, None] == i % 4) & (np.arange(6) == 1), -1, x))
    np.testing.assert_array_equal(
        traced_eval(lambda x, i, j: x[i, j], x, np.int64(-1), np.int32(2)), x[-1, 2])
    assert "gather" in h.primitives_in(make_jaxpr(lambda x, i: x[i])(x, np.int64(0)))
    for bad in [4, -5, 9]:
        with pytest.raises(IndexError, match=f"index {bad} is out of bounds for axis 0 with size 4"):
            jit(lambda x, i: x[i])(x, np.int64(bad))
        with pytest.raises(IndexError, match=f"index {bad} is out of bounds for axis 0 with size 4"):
            jit(lambda x, i: x.at[i].add(1.0))(x, np.int64(bad))
        with pytest.raises(IndexError, match=f"index {bad} is out of bounds"):
            vmap(lambda i: fnp.asarray(x)[i, 1:])(np.array([0, bad]))
    idx = np.array([2, -1, 0])
    np.testing.assert_array_equal(vmap(lambda i: fnp.take(x, i, axis=1))(idx), x[:, idx].T)
    np.testing.assert_array_equal(vmap(lambda r, i: r[i])(x[:3], idx), x[np.arange(3), idx])
    updated = vmap(lambda r, i: r.at[i].set(-1.0))(x[:3], idx)
    np.testing.assert_array_equal(updated[[0, 1, 2], idx], -1)
    check_grads(lambda x: x[fnp.argmax(x[:, 0])] * x[2, fnp.argmin(x[0]) - 1], [x], order=2)


def test_asarray_of_a_constant_table_takes_traced_indices():
    """As in jax.numpy: under a trace, asarray(table) is a traced constant."""
    table = np.arange(12.0).reshape(3, 4)
    idx = np.array([2, 0, -1])
    np.testing.assert_array_equal(vmap(lambda i: fnp.asarray(table)[i])(idx), table[idx])
    np.testing.assert_array_equal(jit(lambda i: fnp.asarray(table)[i, -1])(np.int64(1)), 7.0)
    assert type(fnp.asarray(table)) is np.ndarray      # nothing traced: NumPy's own array


def test_linspace_style_update_of_the_last_element():
    out = traced_eval(lambda a, b: (fnp.arange(5.0) * a).at[-1].set(b),
                      np.float64(2.0), np.float64(9.0))
    np.testing.assert_array_equal(out, [0.0, 2.0, 4.0, 6.0, 9.0])


# ---------------------------------------------------------------------------------------------
# Errors


def test_static_index_out_of_range_raises_index_error():
    x = np.zeros((2, 3))
    with pytest.raises(IndexError, match=r"index 3 is out of bounds for axis 1 with size 3 "
                                         r".*test_indexing"):
        make_jaxpr(lambda x: x[0, 3])(x)
    with pytest.raises(IndexError, match="index -3 is out of bounds for axis 0 with size 2"):
        make_jaxpr(lambda x: x[[0, -3]])(x)
    with pytest.raises(IndexError, match="too many indices"):
        make_jaxpr(lambda x: x[0, 0, 0])(x)
    with pytest.raises(IndexError, match="only integers, slices"):
        make_jaxpr(lambda x: x[x[0, 0]])(x)
    with pytest.raises(IndexError, match="boolean index did not match"):
        make_jaxpr(lambda x: x[np.ones(3, bool)])(x)
    with pytest.raises(IndexError, match="shape mismatch"):
        make_jaxpr(lambda x: x[[0, 1], [0, 1, 2]])(x)
    with pytest.raises(ValueError, match="could not broadcast"):
        make_jaxpr(lambda x: x.at[0].set(np.ones(2)))(x)


def test_traced_boolean_mask_needs_a_concrete_value():
    x = np.arange(6.0)
    with pytest.raises(funcgrad.ConcretizationError, match="where") as e:
        make_jaxpr(lambda x: x[x > 2])(x)
    assert "test_indexing.py" in str(e.value)
    with pytest.raises(funcgrad.ConcretizationError, match="batched under vmap"):
        vmap(lambda x: x[x > 2].sum())(x.reshape(2, 3))
    with pytest.raises(funcgrad.ConcretizationError, match="dynamic_slice"):
        make_jaxpr(lambda x, i: x[i:i + 2])(x, np.int64(1))
    # Outside jit the mask is concrete: grad works, as in NumPy code.
    np.testing.assert_array_equal(grad(lambda x: x[x > 2].sum())(x), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(grad(lambda x: fnp.compress(x > 2, x).sum())(x),
                                  [0, 0, 0, 1, 1, 1])


# ---------------------------------------------------------------------------------------------
# funcgrad.numpy indexing functions


def eager_and_traced(fn, *args, **kw):
    """fn(*args) with NumPy arrays (NumPy's own result) and traced (from primitives)."""
    return fn(*args, **kw), traced_eval(lambda *a: fn(*a, **kw), *args)


def concretely_traced(fn, *args):
    """fn(*args) traced with concrete values, as grad and vmap (not jit) trace."""
    return funcgrad.vjp(fn, *args)[0]


@pytest.mark.parametrize("mode", [None, "raise", "wrap", "clip"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_take(mode, axis):
    a = np.arange(12.0).reshape(3, 4)
    idx = np.array([[0, -1], [2, 1]]) if mode in (None, "raise") else np.array([[5, -7], [2, 13]])
    for indices in (idx, 1, [2]):
        eager, traced = eager_and_traced(lambda a: fnp.take(a, indices, axis=axis, mode=mode), a)
        h.assert_same(eager, np.take(a, indices, axis, mode=mode or "raise"))
        h.assert_same(traced, eager)
    traced_idx = traced_eval(lambda a, i: fnp.take(a, i, axis=axis, mode=mode), a, idx)
    h.assert_same(traced_idx, np.take(a, idx, axis, mode=mode or "raise"))


def test_take_along_axis_and_choose():
    a = np.array([[10.0, 30.0, 20.0], [60.0, 40.0, 50.0]])
    idx = np.array([[0, -1], [2, 1]])
    for args in [(a, idx, 1), (a, np.array([[1], [0]]), 1), (a, np.array([[1, 0, 1]]), 0),
                 (a, np.array([3, 1]), None)]:
        eager, traced = eager_and_traced(fnp.take_along_axis, *args[:2], axis=args[2])
        h.assert_same(eager, np.take_along_axis(*args[:2], args[2]))
        h.assert_same(traced, eager)
    check_grads(lambda a: fnp.take_along_axis(a, np.argsort(a, 1), 1), [a], order=2)
    choice = np.array([[0, 2, 1], [5, -1, 1]])
    for mode in ["wrap", "clip"]:
        eager, traced = eager_and_traced(lambda c: fnp.choose(c, [a, -a, a * 2], mode=mode), choice)
        h.assert_same(traced, eager)
    eager, traced = eager_and_traced(lambda a: fnp.choose(np.array([0, 1, 0]), [a, -a]), a)
    h.assert_same(traced, eager)


@EXAMPLES
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                    elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0, np.nan])),
       size=st.integers(0, 6))
def test_nonzero_argwhere_flatnonzero(x, size):
    for fn in (fnp.nonzero, fnp.argwhere, fnp.flatnonzero):
        eager = fn(x)
        h.assert_same(eager, getattr(np, fn.__name__)(x))
        h.assert_same(concretely_traced(fn, x), eager)    # concrete values: NumPy's result
        # size= keeps the shape static: abstractly traced, first `size` results, then fill
        fixed = traced_eval(lambda x: fn(x, size=size, fill_value=-1), x)
        h.assert_same(fixed, fn(x, size=size, fill_value=-1))
    expected = np.nonzero(x)
    got = traced_eval(lambda x: fnp.nonzero(x, size=size, fill_value=-1), x)
    for e, g in zip(expected, got):
        n = min(size, e.size)
        np.testing.assert_array_equal(g[:n], e[:n])
        assert (g[n:] == -1).all()
    rows = x.reshape(x.shape[0], -1)
    assert vmap(lambda r: fnp.flatnonzero(r, size=2))(rows).shape == (x.shape[0], 2)


def test_nonzero_of_traced_array_without_size_under_make_jaxpr():
    with pytest.raises(funcgrad.ConcretizationError, match="size="):
        make_jaxpr(fnp.nonzero)(np.ones(3))


@EXAMPLES
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                    elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0, np.nan])),
       data=st.data())
def test_sort_argsort_lexsort(x, data):
    axis = data.draw(st.sampled_from([None, -1, 0]), label="axis")
    eager, traced = eager_and_traced(fnp.sort, x, axis=axis)
    h.assert_same(traced, np.sort(x, axis))
    eager, traced = eager_and_traced(fnp.argsort, x, axis=axis)
    h.assert_same(traced, np.argsort(x, axis, kind="stable"))
    keys = [np.sign(x), np.abs(x)]
    h.assert_same(traced_eval(lambda a, b: fnp.lexsort([a, b], axis=-1), *keys), np.lexsort(keys))
    h.assert_same(traced_eval(lambda x: x.sort(), x), np.sort(x))


def test_sort_gradients():
    x = np.array([[0.3, -1.2, 2.5, 0.1], [1.0, 4.0, -2.0, 3.0]])
    check_grads(lambda x: fnp.sort(x, axis=1), [x], order=2)
    check_grads(lambda x: fnp.sort(x, axis=None), [x], order=2)
    check_grads(lambda x: x[fnp.argsort(x[:, 0])], [x], order=2)
    check_grads(lambda x: fnp.sort(x)[:, 1] * fnp.sort(x, axis=0)[0, :2], [x], order=2)


@EXAMPLES
@given(a=hnp.arrays(np.float64, st.integers(0, 7),
                    elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0, np.nan])),
       v=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
                    elements=st.sampled_from([-2.0, -1.0, 0.0, 0.25, 0.5, 2.0, 3.0, np.nan])),
       side=st.sampled_from(["left", "right"]), use_sorter=st.booleans())
def test_searchsorted(a, v, side, use_sorter):
    sorter = np.argsort(a, kind="stable") if use_sorter else None
    a = a if use_sorter else np.sort(a)
    expected = np.searchsorted(a, v, side, sorter)
    h.assert_same(traced_eval(lambda a, v: fnp.searchsorted(a, v, side, sorter), a, v), expected)
    h.assert_same(fnp.searchsorted(a, v, side, sorter), expected)
    closed = make_jaxpr(lambda a, v: fnp.searchsorted(a, v, side))(a, v)
    assert h.count_eqns(closed) <= 25 * a.size.bit_length() + 10      # O(log n) ops
    if a.size and v.size:
        batched = vmap(lambda v: fnp.searchsorted(np.sort(a), v, side))(np.atleast_1d(v))
        h.assert_same(batched, np.searchsorted(np.sort(a), np.atleast_1d(v), side))


def test_select_compress_extract_unique():
    x = np.array([[-2.0, 0.5, 3.0], [1.0, -1.0, 4.0]])
    conds = lambda x: [x < 0, x > 2]
    eager, traced = eager_and_traced(lambda x: fnp.select(conds(x), [-x, x * 10], 7), x)
    h.assert_same(eager, np.select(conds(x), [-x, x * 10], 7))
    h.assert_same(traced, eager)
    check_grads(lambda x: fnp.select(conds(x), [-x, x * x], 7.0), [x], order=2)
    mask = np.array([True, False, True])
    for axis in [None, 1]:
        eager, traced = eager_and_traced(lambda x: fnp.compress(mask, x, axis=axis), x)
        h.assert_same(traced, np.compress(mask, x, axis))
    h.assert_same(concretely_traced(lambda x: fnp.extract(x > 0, x), x), np.extract(x > 0, x))
    vals, counts = fnp.unique(np.array([3, 1, 3, 2]), return_counts=True)
    np.testing.assert_array_equal(counts, [1, 1, 2])
    assert grad(lambda x: fnp.unique(x).size * x.sum())(x).shape == x.shape


# ---------------------------------------------------------------------------------------------
# The ML cases: embedding lookups and cross-entropy under vmap(grad)


def test_per_example_embedding_gradients():
    rng = np.random.default_rng(0)
    vocab, dim, batch, length = 7, 3, 5, 4
    table = rng.standard_normal((vocab, dim))
    tokens = rng.integers(0, vocab, (batch, length))
    tokens[:, 1] = tokens[:, 0]                  # repeated tokens accumulate
    targets = rng.standard_normal((batch, length, dim))

    def loss(table, tok, y):
        return ((table[tok] - y) ** 2).sum() + (table.at[tok[0]].add(1.0) ** 3).sum()

    per_example = vmap(grad(loss), in_axes=(None, 0, 0))(table, tokens, targets)
    loop = np.stack([grad(loss)(table, tokens[b], targets[b]) for b in range(batch)])
    np.testing.assert_allclose(per_example, loop, rtol=1e-12, atol=1e-12)
    # by hand: d/dE sum((E[t] - y)^2) scatters 2 (E[t] - y) into the looked-up rows
    b = 2
    manual = np.zeros_like(table)
    np.add.at(manual, tokens[b], 2 * (table[tokens[b]] - targets[b]))
    shifted = table.copy()
    shifted[tokens[b, 0]] += 1.0
    manual += 3 * shifted ** 2
    np.testing.assert_allclose(per_example[b], manual, rtol=1e-12)
    closed = make_jaxpr(vmap(grad(loss), in_axes=(None, 0, 0)))(table, tokens, targets)
    core.check_jaxpr(closed)
    bigger = make_jaxpr(vmap(grad(loss), in_axes=(None, 0, 0)))(
        table, np.concatenate([tokens] * 3), np.concatenate([targets] * 3))
    assert h.count_eqns(bigger) == h.count_eqns(closed)


def _log_softmax(z):
    z = z - fnp.max(z, axis=-1, keepdims=True)
    return z - fnp.log(fnp.sum(fnp.exp(z), axis=-1, keepdims=True))


def test_cross_entropy_gradients():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)

    def loss(z, y):
        return -fnp.mean(_log_softmax(z)[fnp.arange(z.shape[0]), y])

    z = logits - logits.max(1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = (probs - np.eye(4)[labels]) / 6
    np.testing.assert_allclose(grad(loss)(logits, labels), expected, rtol=1e-12, atol=1e-14)
    closed = make_jaxpr(funcgrad.value_and_grad(loss))(logits, labels)
    assert {"gather", "scatter"} <= h.primitives_in(closed)

    def example_loss(z, y):              # one example: y is a traced scalar under vmap
        return -_log_softmax(z)[y]

    per_example = vmap(grad(example_loss))(logits, labels)
    np.testing.assert_allclose(per_example, expected * 6, rtol=1e-12, atol=1e-14)
    check_grads(lambda z: loss(z, labels), [logits], order=2)


def test_indices_are_bounds_checked_on_array_modules_that_wrap_them():
    """CuPy wraps out-of-range indices around; gather and scatter check them first."""
    from types import SimpleNamespace
    from funcgrad.primitives import indexing as ix

    class DeviceArray(np.ndarray):          # CuPy-like: .get() copies to the host
        def get(self):
            return np.asarray(self)
    wrapping = SimpleNamespace(asarray=np.asarray)
    ix._check_bounds(wrapping, "gather", (3, 4), np.array([[0, -4], [2, 3]]).view(DeviceArray), (0, 1))
    with pytest.raises(IndexError, match="gather: index 4 is out of bounds for axis 1 with size 4"):
        ix._check_bounds(wrapping, "gather", (3, 4), np.array([[0, 4]]).view(DeviceArray), (0, 1))
    with pytest.raises(IndexError, match="scatter-add: index -4 is out of bounds for axis 0"):
        ix._check_bounds(wrapping, "scatter-add", (3, 4), np.array([[-4]]).view(DeviceArray), (0,))


@pytest.mark.parametrize("axis", [-1, 0, None])
def test_descending_sorts_are_stable_as_in_jax(axis):
    a = np.array([[3.0, 1.0, 3.0, np.nan, 2.0], [0.0, 0.0, 5.0, -1.0, 0.0]])
    want_sorted = np.flip(np.sort(np.flip(a if axis is not None else a.ravel(), -1 if axis is None else axis),
                                  axis=-1 if axis is None else axis), -1 if axis is None else axis)
    for run in (lambda f: f(a), lambda f: funcgrad.jit(f)(a)):
        got = run(lambda a: fnp.sort(a, axis=axis, descending=True))
        np.testing.assert_array_equal(got, want_sorted)
        order = run(lambda a: fnp.argsort(a, axis=axis, descending=True))
        if axis == -1:
            np.testing.assert_array_equal(order, [[3, 0, 2, 4, 1], [2, 0, 1, 4, 3]])   # ties: index order
        taken = np.take_along_axis(a, order, axis) if axis is not None else a.ravel()[order]
        np.testing.assert_array_equal(taken, want_sorted)


def test_bincount_eager_jit_vmap_grad_and_out_of_range_values():
    x, w = np.array([0, 3, 3, 1, 0, 0]), np.arange(6.0)
    np.testing.assert_array_equal(fnp.bincount(x), np.bincount(x))
    np.testing.assert_array_equal(fnp.bincount(x, length=5), [3, 1, 0, 2, 0])
    counts = jit(lambda x: fnp.bincount(x, length=5))(x)
    np.testing.assert_array_equal(counts, [3, 1, 0, 2, 0])
    assert counts.dtype == np.bincount(x).dtype
    summed = jit(lambda x, w: fnp.bincount(x, w, length=4))(x, w.astype(np.float32))
    np.testing.assert_array_equal(summed, np.bincount(x, w))
    assert summed.dtype == np.float64                      # NumPy sums weights as doubles
    np.testing.assert_array_equal(grad(lambda w: fnp.bincount(x, w)[3])(w), x == 3)
    np.testing.assert_array_equal(vmap(lambda x: fnp.bincount(x, length=4))(np.stack([x, x[:1].repeat(6)])),
                                  [np.bincount(x, minlength=4), [6, 0, 0, 0]])
    for bad in ([0, 4], [-1, 0]):
        with pytest.raises(IndexError, match="out of bounds"):
            jit(lambda x: fnp.bincount(x, length=4))(np.array(bad))
    with pytest.raises(IndexError, match="out of bounds for length=2"):
        fnp.bincount(x, length=2)
    with pytest.raises(core.ConcretizationError, match="pass length="):
        jit(lambda x: fnp.bincount(x))(x)


def test_one_argument_where_takes_size_under_jit():
    c = np.array([0, 3, 0, 1, 2])
    (idx,) = jit(lambda c: fnp.where(c > 0, size=4, fill_value=-1))(c)
    np.testing.assert_array_equal(idx, [1, 3, 4, -1])
    with pytest.raises(ValueError, match="one-argument form"):
        fnp.where(c > 0, c, 0, size=3)
