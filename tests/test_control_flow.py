"""cond, switch, while_loop, fori_loop, scan and map: values against Python references,
derivatives (check_grads), vmap against loops, well-typed jaxprs after every transform, the
nested combinations, and the error messages."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import funcgrad
from funcgrad import core, grad, jacfwd, jvp, lax, linearize, make_jaxpr, vjp, vmap
from funcgrad import numpy as fnp
from funcgrad.test_util import check_grads

from primitive_harness import (Operand, check_ad_jaxprs, check_batching, check_jit,
                               check_primitive, check_values, count_eqns, examples,
                               primitives_in, reals)

F64 = np.dtype(np.float64)


def checked_jaxpr(f, *args):
    closed = make_jaxpr(f)(*args)
    core.check_jaxpr(closed)
    return closed


def loop_stack(f, in_axes, *args):
    """The per-example results of ``f`` over the mapped axes, stacked (vmap's reference)."""
    size = next(np.shape(a)[ax] for a, ax in zip(args, in_axes) if ax is not None)
    rows = [f(*[a if ax is None else np.take(a, i, axis=ax) for a, ax in zip(args, in_axes)])
            for i in range(size)]
    if isinstance(rows[0], (tuple, list)):
        return type(rows[0])(np.stack([r[j] for r in rows]) for j in range(len(rows[0])))
    return np.stack(rows)


def assert_tree_close(actual, expected, tol=1e-10):
    a_leaves, e_leaves = funcgrad.tree_util.tree_leaves(actual), funcgrad.tree_util.tree_leaves(expected)
    assert len(a_leaves) == len(e_leaves)
    for a, e in zip(a_leaves, e_leaves):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=tol, atol=tol)


rng = np.random.default_rng(0)
X3 = rng.normal(size=3)
W33 = rng.normal(size=(3, 3)) * 0.5

# ---------------------------------------------------------------------------------------------
# cond and switch


def _branchy(p, x, y):
    return lax.cond(p, lambda a, b: fnp.sin(a) * b, lambda a, b: a * a - b, x, y)


def _branchy_ref(p, x, y):
    return np.sin(x) * y if p else x * x - y


@given(st.data())
@examples(0.3)
def test_cond_harness(data):
    check_primitive(data, _branchy, [Operand((), np.bool_), Operand((3,), F64), Operand((3,), F64)],
                    _branchy_ref, prim="cond")


@given(st.data())
@examples(0.3)
def test_switch_harness(data):
    branches = [lambda x: fnp.sin(x), lambda x: x * x, lambda x: fnp.exp(-x)]
    refs = [np.sin, lambda x: x * x, lambda x: np.exp(-x)]
    check_primitive(data, lambda i, x: lax.switch(i, branches, x),
                    [Operand((), np.int32, reals(-2, 4)), Operand((2,), F64)],
                    lambda i, x: refs[min(max(int(i), 0), 2)](x), prim="cond")


def test_cond_values_and_pytrees():
    ops = {"a": X3, "b": (2.0, np.arange(3))}
    t = lambda o: {"out": o["a"] * o["b"][0], "n": o["b"][1] + 1}
    f = lambda o: {"out": -o["a"], "n": o["b"][1] * 2}
    for pred in (True, False, np.bool_(True), np.array(False), 1, 0.0):
        got = lax.cond(pred, t, f, ops)
        assert_tree_close(got, t(ops) if pred else f(ops))
    assert lax.cond(True, lambda: 1.0, lambda: 2.0) == 1.0     # no operands


def test_switch_clamps_index_and_single_branch():
    branches = [lambda x: x + 1, lambda x: x * 10, lambda x: -x]
    for i, expected in [(-5, X3 + 1), (0, X3 + 1), (1, X3 * 10), (2, -X3), (7, -X3)]:
        np.testing.assert_allclose(lax.switch(i, branches, X3), expected)
        np.testing.assert_allclose(lax.switch(np.int64(i), branches, X3), expected)
    f = lambda i: lax.switch(i, branches, X3)
    closed = checked_jaxpr(f, 0)
    np.testing.assert_allclose(core.eval_jaxpr(closed.jaxpr, closed.consts, np.int64(9))[0], -X3)
    assert lax.switch(3, [lambda x: x * 2], 4.0) == 8.0


def test_cond_closure_consts_are_hoisted_and_differentiated():
    def f(w, x):
        return lax.cond(x.sum() > 0, lambda v: fnp.tanh(w @ v), lambda v: w.T @ v, x).sum()

    closed = checked_jaxpr(f, W33, X3)
    (eqn,) = [e for e in closed.eqns if e.primitive.name == "cond"]
    assert all(not b.consts and not b.jaxpr.constvars for b in eqn.params["branches"])
    check_grads(f, (W33, X3), order=2)
    check_grads(f, (W33, -X3 - 2), order=2)
    check_ad_jaxprs(f, (W33, X3))


def test_cond_weak_branch_output_takes_the_strong_dtype():
    x = np.ones(3, np.float32)
    out = lax.cond(False, lambda v: v * 2, lambda v: v * 0 + 1.5, x)
    assert out.dtype == np.float32
    out = lax.cond(True, lambda: 1, lambda: 2.5)
    assert out.dtype == np.float64 and out == 1.0


def test_cond_type_mismatch_error_names_both_types_and_the_line():
    x = np.ones(3, np.float32)
    with pytest.raises(TypeError) as e:
        lax.cond(True, lambda v: v, lambda v: v.astype(np.float64), x)
    msg = str(e.value)
    assert "f64[3]" in msg and "f32[3]" in msg and "test_control_flow.py" in msg
    with pytest.raises(TypeError, match=r"same pytree structure"):
        lax.cond(True, lambda v: (v, v), lambda v: [v, v], x)
    with pytest.raises(TypeError, match=r"shape|f32\[2\]"):
        lax.cond(True, lambda v: v, lambda v: v[:2], x)
    with pytest.raises(TypeError, match="scalar"):
        lax.cond(np.array([True, False]), lambda v: v, lambda v: v, x)
    with pytest.raises(TypeError, match="integer"):
        lax.switch(1.5, [lambda v: v, lambda v: v], x)


def test_cond_branch_values_are_abstract():
    with pytest.raises(funcgrad.ConcretizationError, match="operands"):
        lax.cond(True, lambda v: v if v.sum() > 0 else -v, lambda v: v, X3)


def test_vmap_cond_batched_predicate_selects_per_row():
    xs = rng.normal(size=(5, 3))
    preds = np.array([True, False, True, False, False])
    for in_axes in [(0, 0, None), (0, 1, None), (0, None, 0), (None, 0, 0)]:
        args = (preds if in_axes[0] == 0 else np.bool_(False), xs if in_axes[1] != 1 else xs.T,
                X3 if in_axes[2] is None else xs)
        got = vmap(_branchy, in_axes)(*args)
        np.testing.assert_allclose(got, loop_stack(_branchy_ref, in_axes, *args))
        closed = checked_jaxpr(vmap(_branchy, in_axes), *args)
        assert ("cond" in primitives_in(closed)) == (in_axes[0] is None)


def test_vmap_switch_batched_index():
    branches = [lambda x: x + 1, lambda x: x * 10, lambda x: -x]
    idx = np.array([-1, 0, 1, 2, 3])
    xs = rng.normal(size=(5, 2))
    got = vmap(lambda i, x: lax.switch(i, branches, x))(idx, xs)
    expected = np.stack([branches[min(max(i, 0), 2)](x) for i, x in zip(idx, xs)])
    np.testing.assert_allclose(got, expected)


# ---------------------------------------------------------------------------------------------
# while_loop


def _doubling(x):
    return lax.while_loop(lambda c: fnp.sum(c * c) < 50.0, lambda c: c * 2 + fnp.sin(c), x)


def _doubling_ref(x):
    while np.sum(x * x) < 50.0:
        x = x * 2 + np.sin(x)
    return x


def test_while_values():
    for x in (X3, X3 * 0.01, X3 * 100):
        np.testing.assert_allclose(_doubling(x), _doubling_ref(x))
    i, acc = lax.while_loop(lambda c: c[0] < 10, lambda c: (c[0] + 1, c[1] + c[0]),
                            (np.int64(0), np.int64(0)))
    assert (i, acc) == (10, 45)
    check_values(_doubling, [X3], _doubling_ref, prim="while")


@given(st.data())
@examples(0.3)
def test_while_batching_harness(data):
    op = Operand((2,), F64, reals(0.5, 3.0))
    x = op.draw(data)
    check_batching(data, _doubling, [op], [x])
    check_jit(_doubling, [x])


def test_while_forward_mode():
    check_grads(_doubling, (X3,), order=2, modes=("fwd",))
    out, f_jvp = linearize(_doubling, X3)          # partial_eval of while, then evaluation
    t = rng.normal(size=3)
    np.testing.assert_allclose(f_jvp(t), jvp(_doubling, (X3,), (t,))[1], rtol=1e-12)
    eps = 1e-6
    numeric = np.stack([(_doubling_ref(X3 + eps * e) - _doubling_ref(X3 - eps * e)) / (2 * eps)
                        for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(jacfwd(_doubling)(X3), numeric, rtol=1e-6, atol=1e-6)
    closed = checked_jaxpr(lambda x: jvp(_doubling, (x,), (t,)), X3)
    assert "while" in primitives_in(closed)


def test_while_reverse_mode_error_points_to_scan_and_the_line():
    with pytest.raises(ValueError) as e:
        grad(lambda x: _doubling(x).sum())(X3)
    msg = str(e.value)
    assert "fori_loop" in msg and "scan" in msg and "test_control_flow.py" in msg


def test_while_known_carries_stay_known_under_linearize():
    def f(x):
        return lax.while_loop(lambda c: c[0] < 4, lambda c: (c[0] + 1, c[1] * fnp.cos(c[1])),
                              (np.int64(0), x))[1]
    closed = checked_jaxpr(f, X3)
    known, linear, _, _ = funcgrad.interpreters.ad.linearize_jaxpr(closed, [True])
    core.check_jaxpr(known)
    core.check_jaxpr(linear)
    check_grads(f, (X3,), order=1, modes=("fwd",))


def test_vmap_while_batched_predicate_masks_finished_rows():
    xs = np.array([[0.1, 0.2, 0.1], [3.0, 4.0, 5.0], [1.0, 0.5, 0.2]])
    np.testing.assert_allclose(vmap(_doubling)(xs), loop_stack(_doubling_ref, (0,), xs))
    # batched limit (a const of cond) with an unbatched carry
    f = lambda lim: lax.while_loop(lambda c: c[0] < lim, lambda c: (c[0] + 1, c[1] * 2.0),
                                   (np.int64(0), 1.0))
    limits = np.array([0, 3, 5])
    got = vmap(f)(limits)
    np.testing.assert_array_equal(got[0], limits)
    np.testing.assert_allclose(got[1], 2.0 ** limits)
    closed = checked_jaxpr(vmap(f), limits)
    assert "while" in primitives_in(closed)


def test_vmap_while_unbatched_predicate():
    f = lambda x: lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * c[1]),
                                 (np.int64(0), x))[1]
    xs = rng.normal(size=(4, 2))
    np.testing.assert_allclose(vmap(f)(xs), xs ** 8)
    closed = checked_jaxpr(vmap(f), xs)
    (eqn,) = [e for e in closed.eqns if e.primitive.name == "while"]
    assert "reduce_or" not in primitives_in(eqn.params["cond_jaxpr"])


def test_while_errors():
    with pytest.raises(TypeError, match="boolean scalar"):
        lax.while_loop(lambda c: c, lambda c: c - 1, 3.0)
    with pytest.raises(TypeError) as e:
        lax.while_loop(lambda c: c.sum() < 3, lambda c: c.astype(np.float32), X3)
    assert "f32[3]" in str(e.value) and "f64[3]" in str(e.value)
    with pytest.raises(TypeError, match="structure"):
        lax.while_loop(lambda c: c[0] < 3, lambda c: [c[0] + 1], (1.0,))


# ---------------------------------------------------------------------------------------------
# fori_loop


def _poly_fori(x):
    return lax.fori_loop(1, 4, lambda i, c: c * fnp.cos(c) + i * c, x)


def _poly_ref(x):
    for i in range(1, 4):
        x = x * np.cos(x) + i * x
    return x


@given(st.data())
@examples(0.3)
def test_fori_loop_harness(data):
    check_primitive(data, _poly_fori, [Operand((3,), F64, reals(-1, 1))], _poly_ref, prim="scan")


def test_fori_loop_static_is_a_scan_dynamic_is_a_while():
    assert "scan" in primitives_in(checked_jaxpr(_poly_fori, X3))
    f = lambda n, x: lax.fori_loop(0, n, lambda i, c: c + i, x)
    closed = checked_jaxpr(f, 4, 0.5)
    assert "while" in primitives_in(closed) and "scan" not in primitives_in(closed)
    assert core.eval_jaxpr(closed.jaxpr, closed.consts, 4, 0.5)[0] == 6.5
    assert lax.fori_loop(5, 2, lambda i, c: c + i, 1.0) == 1.0       # empty range
    assert lax.fori_loop(np.int32(0), 3, lambda i, c: c + i, 0) == 3
    check_grads(lambda x: f(4, x), (X3,), order=2, modes=("fwd",))


def test_fori_loop_with_dynamic_indexing_by_the_loop_index():
    at = lambda a, i: lax.dynamic_index_in_dim(a, i, keepdims=False)

    def f(xs):      # step i rewrites entry i from entry 3 - i of the input
        return lax.fori_loop(0, 4, lambda i, c: lax.dynamic_update_index_in_dim(
            c, at(c, i) * 2 + at(xs, 3 - i), i, 0), xs)

    xs = np.arange(1.0, 5.0)
    np.testing.assert_allclose(f(xs), 2 * xs + xs[::-1])
    check_grads(f, (xs,), order=2)
    np.testing.assert_allclose(vmap(f)(np.stack([xs, -xs])), np.stack([f(xs), f(-xs)]))


# ---------------------------------------------------------------------------------------------
# scan


def _rnn(w, h0, xs):
    def step(h, x):
        h = fnp.tanh(w @ h + x)
        return h, fnp.sum(h * h)
    return lax.scan(step, h0, xs)


def _rnn_ref(w, h0, xs):
    ys = []
    for x in xs:
        h0 = np.tanh(w @ h0 + x)
        ys.append(np.sum(h0 * h0))
    return h0, np.array(ys)


@given(st.data())
@examples(0.3)
def test_scan_harness(data):
    check_primitive(data, _rnn, [Operand((3, 3), F64, reals(-0.6, 0.6)), Operand((3,), F64),
                                 Operand((4, 3), F64)], _rnn_ref, prim="scan")


@given(st.data())
@examples(0.3)
def test_scan_reverse_and_multiple_carries_harness(data):
    def f(a, b, xs):
        def step(c, x):
            s, p = c
            return (s + x * p, p * fnp.cos(x)), {"s": s, "px": p * x}
        return lax.scan(step, (a, b), xs, reverse=True)

    def ref(a, b, xs):
        s, p, ss, pxs = a, b, [], []
        for x in xs[::-1]:
            ss.append(s)
            pxs.append(p * x)
            s, p = s + x * p, p * np.cos(x)
        return (s, p), {"s": np.stack(ss[::-1]), "px": np.stack(pxs[::-1])}

    flat = lambda *a: funcgrad.tree_util.tree_leaves(f(*a))
    flat_ref = lambda *a: funcgrad.tree_util.tree_leaves(ref(*a))
    check_primitive(data, flat, [Operand((2,), F64), Operand((2,), F64), Operand((3, 2), F64)],
                    flat_ref, prim="scan")


@given(st.data(), st.integers(0, 5), hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
       st.booleans())
@examples(0.6)
def test_scan_matches_a_python_loop_for_drawn_shapes(data, length, shape, reverse):
    floats = st.floats(-2, 2)
    xs = data.draw(hnp.arrays(F64, (length,) + shape, elements=floats), label="xs")
    init = data.draw(hnp.arrays(F64, shape, elements=floats), label="init")
    step = lambda c, x: (c * 0.5 + fnp.sin(x), c * x)
    carry, ys = lax.scan(step, init, xs, reverse=reverse)
    c, ref_ys = init, [None] * length
    for i in (reversed(range(length)) if reverse else range(length)):
        ref_ys[i] = c * xs[i]
        c = c * 0.5 + np.sin(xs[i])
    np.testing.assert_allclose(carry, c)
    np.testing.assert_allclose(ys, np.stack(ref_ys) if length else np.zeros((0,) + shape))
    if length and np.size(init):
        check_grads(lambda i, x: lax.scan(step, i, x, reverse=reverse), (init, xs), order=1)


def test_scan_values_pytrees_xs_none_and_map():
    (c, n), ys = lax.scan(lambda c, _: ((c[0] * 2, c[1] + 1), c[0]), (1.0, np.int64(0)), None, length=4)
    assert (c, n) == (16.0, 4)
    np.testing.assert_allclose(ys, [1, 2, 4, 8])
    carry, ys = lax.scan(lambda c, x: (c + x["a"], None), 0.0, {"a": np.arange(4.0)})
    assert carry == 6.0 and ys is None
    xs = rng.normal(size=(4, 2))
    np.testing.assert_allclose(lax.map(lambda x: x @ x, xs), np.einsum("ij,ij->i", xs, xs))
    c, ys = lax.scan(lambda c, x: (c, x), 0.0, np.zeros((0, 2)))
    assert c == 0.0 and ys.shape == (0, 2)


def test_scan_weak_carry_adopts_the_body_dtype():
    xs = np.arange(4, dtype=np.float32)
    c, ys = lax.scan(lambda c, x: (c + x, c * 2), 0.0, xs)
    assert c.dtype == np.float32 and ys.dtype == np.float32 and c == 6.0


def test_scan_backward_is_a_reverse_scan_not_unrolled():
    xs = rng.normal(size=(4, 3))
    loss = lambda w, h, xs: _rnn(w, h, xs)[1].sum()
    g = checked_jaxpr(grad(loss), W33, X3, xs)
    scans = [e for e in g.eqns if e.primitive.name == "scan"]
    assert len(scans) == 2 and scans[1].params["reverse"] and not scans[0].params["reverse"]
    longer = checked_jaxpr(grad(loss), W33, X3, rng.normal(size=(40, 3)))
    assert count_eqns(longer) == count_eqns(g)
    # The weights are passed to the backward scan once, not stacked per step.
    assert (4, 3, 3) not in [v.aval.shape for v in scans[1].invars]


def test_scan_residuals_that_depend_only_on_consts_are_computed_once():
    xs = rng.normal(size=(6, 3))
    loss = lambda w, xs: lax.scan(lambda h, x: (fnp.tanh(h @ w.T + x @ (w * 2).T), None),
                                  np.zeros(3), xs)[0].sum()
    g = checked_jaxpr(grad(loss), W33, xs)
    (fwd, bwd) = [e for e in g.eqns if e.primitive.name == "scan"]
    assert not any(v.aval.shape[:1] == (6,) and v.aval.ndim == 3 and v.aval.shape[1:] == (3, 3)
                   for v in fwd.outvars + bwd.invars)
    check_grads(loss, (W33, xs), order=2)


def test_scan_gradients_match_unrolled_loop():
    xs = rng.normal(size=(5, 3))

    def unrolled(w, h, xs):
        ys = []
        for x in xs:
            h = fnp.tanh(w @ h + x)
            ys.append(fnp.sum(h * h))
        return h, fnp.stack(ys)

    loss = lambda f: (lambda w, h, xs: f(w, h, xs)[0].sum() + f(w, h, xs)[1].sum())
    expected = grad(loss(unrolled), (0, 1, 2))(W33, X3, xs)
    for a, b in zip(grad(loss(_rnn), (0, 1, 2))(W33, X3, xs), expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_vmap_scan_batched_xs_carry_and_consts():
    ws = rng.normal(size=(2, 3, 3)) * 0.5
    hs = rng.normal(size=(2, 3))
    xss = rng.normal(size=(2, 4, 3))
    for in_axes, args in [((None, None, 0), (W33, X3, xss)),
                          ((None, None, 1), (W33, X3, xss.transpose(1, 0, 2))),
                          ((None, 0, None), (W33, hs, xss[0])),
                          ((0, None, None), (ws, X3, xss[0])),
                          ((0, 0, 2), (ws, hs, xss.transpose(1, 2, 0)))]:
        got = vmap(_rnn, in_axes)(*args)
        expected = loop_stack(_rnn_ref, in_axes, *args)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        checked_jaxpr(vmap(_rnn, in_axes), *args)


def test_vmap_scan_carry_becomes_batched_inside_the_loop():
    # The carry starts unbatched but the body mixes in a batched x: fixed point on carries.
    f = lambda xs: lax.scan(lambda c, x: (c * 0.5 + x, c), np.zeros(2), xs)
    xss = rng.normal(size=(3, 4, 2))
    got = vmap(f)(xss)
    expected = loop_stack(f, (0,), xss)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b)


def test_scan_errors():
    with pytest.raises(TypeError) as e:
        lax.scan(lambda c, x: (c.astype(np.float32), x), X3, np.ones((2, 3)))
    msg = str(e.value)
    assert "f32[3]" in msg and "f64[3]" in msg and "test_control_flow.py" in msg
    with pytest.raises(TypeError, match="pair"):
        lax.scan(lambda c, x: c, 0.0, np.ones(3))
    with pytest.raises(TypeError, match="disagree"):
        lax.scan(lambda c, x: (c, x), 0.0, (np.ones(3), np.ones(4)))
    with pytest.raises(TypeError, match="length"):
        lax.scan(lambda c, x: (c, x), 0.0, None)
    with pytest.raises(TypeError, match="disagree"):
        lax.scan(lambda c, x: (c, x), 0.0, np.ones(3), length=4)
    with pytest.raises(TypeError, match="structure"):
        lax.scan(lambda c, x: ((c, c), x), 0.0, np.ones(3))


# ---------------------------------------------------------------------------------------------
# Nested combinations


def test_grad_of_vmap_of_scan():
    xss = rng.normal(size=(2, 4, 3))
    loss = lambda w: vmap(_rnn, (None, None, 0))(w, X3, xss)[1].sum()
    ref = lambda w: sum(_rnn(w, X3, xs)[1].sum() for xs in xss)
    np.testing.assert_allclose(grad(loss)(W33), grad(ref)(W33), rtol=1e-12)
    check_grads(loss, (W33,), order=1)
    checked_jaxpr(grad(loss), W33)


def test_vmap_of_grad_of_cond():
    f = lambda x: lax.cond(x.sum() > 0, lambda v: fnp.sin(v).sum(), lambda v: (v * v).sum(), x)
    xs = np.stack([X3, -X3 - 1, X3 + 2])
    np.testing.assert_allclose(vmap(grad(f))(xs), loop_stack(grad(f), (0,), xs))
    checked_jaxpr(vmap(grad(f)), xs)


def test_grad_of_vmap_of_cond_with_batched_predicate():
    xs = np.stack([X3, -X3 - 1, X3 + 2])
    f = lambda x: lax.cond(x.sum() > 0, lambda v: fnp.sin(v), lambda v: v * v, x)
    loss = lambda xs: vmap(f)(xs).sum()
    np.testing.assert_allclose(grad(loss)(xs), np.stack([grad(lambda x: f(x).sum())(x) for x in xs]))
    check_grads(loss, (xs,), order=2)


def test_scan_inside_scan():
    def f(w, xss):
        def outer(c, xs):
            inner_c, ys = lax.scan(lambda h, x: (fnp.tanh(w * h + x), h), c, xs)
            return inner_c * 0.9, ys.sum()
        return lax.scan(outer, np.zeros(2), xss)

    def ref(w, xss):
        c, outs = np.zeros(2), []
        for xs in xss:
            h, acc = c, 0.0
            for x in xs:
                acc = acc + h.sum()
                h = np.tanh(w * h + x)
            c = h * 0.9
            outs.append(acc)
        return c, np.array(outs)

    w, xss = rng.normal(size=2), rng.normal(size=(3, 4, 2))
    for a, b in zip(f(w, xss), ref(w, xss)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    check_grads(lambda w, xss: f(w, xss), (w, xss), order=2)
    check_ad_jaxprs(lambda w, xss: f(w, xss), (w, xss))
    got = vmap(f, (0, None))(np.stack([w, w * 2]), xss)
    for a, b in zip(got, loop_stack(ref, (0, None), np.stack([w, w * 2]), xss)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_cond_inside_scan():
    def f(xs):
        step = lambda c, x: lax.cond(x > 0, lambda c: (c * x, c), lambda c: (c + x, -c), c)
        return lax.scan(step, 1.0, xs)

    def ref(xs):
        c, ys = 1.0, []
        for x in xs:
            c, y = (c * x, c) if x > 0 else (c + x, -c)
            ys.append(y)
        return c, np.array(ys)

    xs = rng.normal(size=6)
    for a, b in zip(f(xs), ref(xs)):
        np.testing.assert_allclose(a, b)
    check_grads(f, (xs,), order=2)
    check_ad_jaxprs(f, (xs,))
    xss = rng.normal(size=(3, 6))
    for a, b in zip(vmap(f)(xss), loop_stack(ref, (0,), xss)):
        np.testing.assert_allclose(a, b)


def test_scan_inside_cond_and_while_inside_vmap_inside_grad():
    f = lambda p, x: lax.cond(p, lambda x: lax.scan(lambda c, v: (c * v, c), 1.0, x)[1],
                              lambda x: x * 2, x)
    xs = rng.normal(size=4)
    np.testing.assert_allclose(f(True, xs), _cumprod_shifted(xs))
    check_grads(lambda x: f(True, x), (xs,), order=2)
    preds = np.array([True, False])
    np.testing.assert_allclose(vmap(f, (0, None))(preds, xs), np.stack([_cumprod_shifted(xs), xs * 2]))
    # while inside vmap, differentiated forward through jacfwd
    g = lambda x: vmap(_doubling)(x)
    x2 = np.abs(rng.normal(size=(2, 3))) + 0.5
    np.testing.assert_allclose(jacfwd(lambda x: g(x).sum(0))(x2).sum(),
                               sum(jacfwd(_doubling)(r).sum() for r in x2), rtol=1e-10)


def _cumprod_shifted(xs):
    return np.concatenate([[1.0], np.cumprod(xs)[:-1]])


def test_vjp_through_scan_with_integer_carry_and_zero_cotangents():
    def f(x):
        (i, c), ys = lax.scan(lambda c, _: ((c[0] + 1, c[1] * x), c[0]), (np.int64(0), 1.0), None,
                              length=3)
        return c, ys
    out, pullback = vjp(f, 2.0)
    assert out[0] == 8.0
    (g,) = pullback((1.0, np.zeros(3, np.int64)))
    assert g == 12.0


def test_vmap_of_vmap_of_cond_with_batched_predicates_at_both_levels():
    ps = np.array([[True, False], [False, True], [True, True]])
    xs = rng.normal(size=(3, 2, 4))
    f = lambda p, x: lax.cond(p, lambda v: fnp.cos(v), lambda v: v * 3, x)
    expected = np.stack([np.stack([np.cos(x) if p else x * 3 for p, x in zip(pr, xr)])
                         for pr, xr in zip(ps, xs)])
    np.testing.assert_allclose(vmap(vmap(f))(ps, xs), expected)
    np.testing.assert_allclose(vmap(vmap(f), (1, 1))(ps.T, xs.transpose(1, 0, 2)), expected)


def test_vmap_while_with_batched_body_consts_and_non_leading_axes():
    scales = np.array([1.5, 2.0, 3.0])
    x = np.array([[0.5, 0.2, 0.1], [1.0, 0.3, 0.4]])          # batch along axis 1
    f = lambda s, x: lax.while_loop(lambda c: c.sum() < 10.0, lambda c: c * s, x)

    def ref(s, x):
        while x.sum() < 10.0:
            x = x * s
        return x

    np.testing.assert_allclose(vmap(f, (0, 1))(scales, x), loop_stack(ref, (0, 1), scales, x))
    np.testing.assert_allclose(vmap(f, (0, None))(scales, x[:, 0]),
                               loop_stack(ref, (0, None), scales, x[:, 0]))


def test_grad_of_scan_whose_body_runs_a_while_on_known_values():
    def f(w, xs):
        def step(c, x):
            n = lax.while_loop(lambda k: k * k < x, lambda k: k + 1, np.int64(0))   # no tangent
            return c * w + n, c
        return lax.scan(step, 1.0, xs)[0]

    xs = np.array([3, 10, 1, 26])
    w = 0.7
    expected_n = [2, 4, 1, 6]
    c = 1.0
    for n in expected_n:
        c = c * w + n
    assert f(w, xs) == pytest.approx(c)
    check_grads(lambda w: f(w, xs), (w,), order=2)


def test_linearize_scan_and_cond():
    xs = rng.normal(size=(4, 3))
    for f, arg in [(lambda w: _rnn(w, X3, xs)[1], W33), (lambda x: _branchy(True, x, X3), X3),
                   (lambda x: _branchy(False, x, X3), X3)]:
        t = rng.normal(size=np.shape(arg))
        out, f_jvp = linearize(f, arg)
        np.testing.assert_allclose(f_jvp(t), jvp(f, (arg,), (t,))[1], rtol=1e-12, atol=1e-12)


def test_jit_of_vmap_of_scan_and_of_grad_of_cond():
    jit = getattr(funcgrad, "jit", None)
    if jit is None:
        pytest.skip("funcgrad.jit is not available yet")
    xss = rng.normal(size=(2, 4, 3))
    batched = vmap(_rnn, (None, None, 0))
    for a, b in zip(jit(batched)(W33, X3, xss), batched(W33, X3, xss)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    g = lambda x: grad(lambda v: _branchy(v.sum() > 0, v, X3).sum())(x)
    for x in (X3, -X3 - 1):
        np.testing.assert_allclose(jit(g)(x), g(x), rtol=1e-12)


def test_jacrev_and_hessian_through_scan_and_cond_match_unrolled():
    xs = rng.normal(size=(3, 3))

    def unrolled(w):
        h = X3
        for x in xs:
            h = fnp.tanh(w @ h + x)
        return h

    scanned = lambda w: _rnn(w, X3, xs)[0]
    np.testing.assert_allclose(funcgrad.jacrev(scanned)(W33), funcgrad.jacrev(unrolled)(W33), rtol=1e-10)
    np.testing.assert_allclose(funcgrad.hessian(lambda w: scanned(w).sum())(W33),
                               funcgrad.hessian(lambda w: unrolled(w).sum())(W33), rtol=1e-9, atol=1e-12)
    f = lambda x: _branchy(x.sum() > 0, x, X3).sum()
    taken = {True: lambda v: (fnp.sin(v) * X3).sum(), False: lambda v: (v * v - X3).sum()}
    for x in (X3, -X3 - 1):
        np.testing.assert_allclose(funcgrad.hessian(f)(x), funcgrad.hessian(taken[x.sum() > 0])(x),
                                   rtol=1e-10, atol=1e-12)
