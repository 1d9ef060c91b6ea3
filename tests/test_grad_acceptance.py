"""Reverse mode end to end (issue 3's acceptance): gradients of real losses against finite
differences, the course's worked examples, the shape of the backward jaxpr, higher-order
derivatives, the API's errors, integer inputs and outputs, stop_gradient, and numerically
careful cases. (Per-primitive rules are checked by each primitive's own test file.)"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import dtypes, lax, nn
from funcgrad.tree_util import tree_flatten, tree_map, tree_unflatten

RTOL = 1e-6


def numerical_grad(f, args, h: float = 1e-5):
    """Central differences of scalar ``f(*args)`` for every entry of every leaf (float64)."""
    leaves, tree = tree_flatten(args)
    grads = []
    for i, leaf in enumerate(leaves):
        g = np.zeros(np.shape(leaf))
        for idx in np.ndindex(g.shape):
            def at(delta):
                moved = [np.array(x, np.float64, copy=True) for x in leaves]
                moved[i][idx] += delta
                return float(f(*tree_unflatten(tree, moved)))
            g[idx] = (at(h) - at(-h)) / (2 * h)
        grads.append(g)
    return tree_unflatten(tree, grads)


def assert_tree_close(got, want, rtol=RTOL, atol=1e-9):
    got_leaves, got_tree = tree_flatten(got)
    want_leaves, want_tree = tree_flatten(want)
    assert got_tree == want_tree
    for g, w in zip(got_leaves, want_leaves):
        assert np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def check_against_finite_differences(loss, args, argnums):
    grads = funcgrad.grad(loss, argnums)(*args)
    wrt = tuple(args[n] for n in argnums)

    def of_wrt(*w):
        full = list(args)
        for n, v in zip(argnums, w):
            full[n] = v
        return loss(*full)

    assert_tree_close(grads, numerical_grad(of_wrt, wrt))


def xent(logits, labels):
    return -fnp.mean(fnp.sum(labels * nn.log_softmax(logits), axis=-1))


# ---------------------------------------------------------------------------------------------
# Losses of real models against finite differences (float64, rtol 1e-6)


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def test_softmax_cross_entropy(rng):
    logits = rng.standard_normal((4, 5)) * 3
    labels = np.eye(5)[rng.integers(0, 5, 4)]
    check_against_finite_differences(xent, (logits, labels), (0,))
    g = funcgrad.grad(xent)(logits, labels)
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(g, (softmax - labels) / 4, rtol=1e-12)


def mlp3_loss(params, x, y):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = fnp.tanh(h) if i == 0 else nn.relu(h)
    return xent(h, y)


def mlp3_args(rng, sizes=(6, 8, 8, 3), batch=5):
    params = [(rng.standard_normal((m, n)) / np.sqrt(m), rng.standard_normal(n) * 0.1)
              for m, n in zip(sizes[:-1], sizes[1:])]
    x = rng.standard_normal((batch, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)]
    return params, x, y


def test_three_layer_mlp_loss(rng):
    params, x, y = mlp3_args(rng)
    check_against_finite_differences(mlp3_loss, (params, x, y), (0,))


def conv_bn_pool_loss(params, x, y):
    kernel, gamma, beta, w, b = params
    h = lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    mean = fnp.mean(h, axis=(0, 2, 3), keepdims=True)
    var = fnp.var(h, axis=(0, 2, 3), keepdims=True)
    h = (h - mean) / fnp.sqrt(var + 1e-5) * gamma[:, None, None] + beta[:, None, None]
    h = nn.relu(h)
    h = lax.reduce_window(h, -np.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    return xent(h.reshape(h.shape[0], -1) @ w + b, y)


def test_conv_pool_batchnorm_loss(rng):
    x = rng.standard_normal((3, 2, 4, 4))
    params = [rng.standard_normal((4, 2, 3, 3)) * 0.5, 1 + 0.1 * rng.standard_normal(4),
              0.1 * rng.standard_normal(4), rng.standard_normal((16, 3)) * 0.3,
              0.1 * rng.standard_normal(3)]
    y = np.eye(3)[[0, 2, 1]]
    check_against_finite_differences(conv_bn_pool_loss, (params, x, y), (0, 1))


def lstm_step_loss(params, x, h, c, target):
    wx, wh, b = params
    gates = x @ wx + h @ wh + b
    i, f, g, o = fnp.split(gates, 4, axis=-1)
    c = nn.sigmoid(f) * c + nn.sigmoid(i) * fnp.tanh(g)
    h = nn.sigmoid(o) * fnp.tanh(c)
    return fnp.sum((h - target) ** 2) + 0.1 * fnp.sum(c ** 2)


def test_lstm_step_loss(rng):
    n_in, n_hid, batch = 3, 4, 2
    params = [rng.standard_normal((n_in, 4 * n_hid)) * 0.5,
              rng.standard_normal((n_hid, 4 * n_hid)) * 0.5, rng.standard_normal(4 * n_hid) * 0.1]
    args = (params, rng.standard_normal((batch, n_in)), rng.standard_normal((batch, n_hid)),
            rng.standard_normal((batch, n_hid)), rng.standard_normal((batch, n_hid)))
    check_against_finite_differences(lstm_step_loss, args, (0, 2, 3))


# ---------------------------------------------------------------------------------------------
# The course's worked examples


def test_circuit_example():
    f = lambda x, y, z: (x + y) * z
    dx, dy, dz = funcgrad.grad(f, argnums=(0, 1, 2))(-2.0, 5.0, -4.0)
    assert (dx, dy, dz) == (-4.0, -4.0, 3.0)


def test_sigmoid_neuron_example():
    def f(w, x):
        return 1.0 / (1.0 + fnp.exp(-(w[0] * x[0] + w[1] * x[1] + w[2])))
    w, x = np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0])
    dw, dx = funcgrad.grad(f, argnums=(0, 1))(w, x)
    np.testing.assert_allclose(dw, [-0.20, -0.39, 0.20], atol=0.005)
    np.testing.assert_allclose(dx, [0.39, -0.59], atol=0.005)
    s = 1 / (1 + np.exp(-1.0))             # the neuron's output; the course's exact gradients:
    np.testing.assert_allclose(dw, (1 - s) * s * np.array([-1.0, -2.0, 1.0]), rtol=1e-12)
    np.testing.assert_allclose(dx, (1 - s) * s * w[:2], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# The backward pass as a jaxpr


def _prims(closed) -> Counter:
    return Counter(e.primitive.name for e in closed.jaxpr.eqns)


def test_backward_jaxpr_of_an_mlp_loss_is_clean(rng):
    params, x, y = mlp3_args(rng)
    forward = funcgrad.make_jaxpr(mlp3_loss)(params, x, y)
    backward = funcgrad.make_jaxpr(funcgrad.grad(mlp3_loss))(params, x, y)
    funcgrad.check_jaxpr(backward)
    fwd, bwd = _prims(forward), _prims(backward)
    # The forward runs once: its nonlinear operations are not repeated; grad does not even
    # compute the loss value (the log of the cross-entropy).
    for prim in ("tanh", "exp", "reduce_max"):
        assert bwd[prim] == fwd[prim] == 1, (prim, str(backward))
    assert fwd["log"] == 1 and bwd["log"] == 0
    # Three forward products; in the backward pass one per weight and one per hidden layer's
    # input -- none for the input data x, which is not differentiated.
    assert fwd["dot_general"] == 3 and bwd["dot_general"] == 3 + 3 + 2
    # No zero-filled tangents or cotangents: the only zero arrays are the values a select
    # (relu's derivative) picks where the mask is off. No dead code either, but for the zeros
    # relu's JVP gives its select (a free broadcast view, removed by jit's DCE).
    live = set(funcgrad.core.dce_jaxpr(backward.jaxpr).eqns)
    assert all(_is_zeros(e) for e in backward.jaxpr.eqns if e not in live), str(backward)
    zeros = {e.outvars[0] for e in backward.jaxpr.eqns if _is_zeros(e)}
    for eqn in backward.jaxpr.eqns:
        for pos, v in enumerate(eqn.invars):
            assert v not in zeros or (eqn.primitive.name == "select" and pos > 0), str(backward)
    assert not zeros & set(backward.jaxpr.outvars)
    assert len(backward.jaxpr.eqns) <= 3 * len(forward.jaxpr.eqns), (
        len(forward.jaxpr.eqns), len(backward.jaxpr.eqns))


def _is_zeros(eqn) -> bool:
    src = eqn.invars[0] if eqn.invars else None
    return (eqn.primitive.name == "broadcast_in_dim" and isinstance(src, funcgrad.core.Literal)
            and src.val == 0)


def test_backward_jaxpr_does_no_work_for_unused_or_undifferentiated_inputs():
    def f(w, unused, x):
        return fnp.sum(fnp.sin(w * x))
    jaxpr = funcgrad.make_jaxpr(funcgrad.grad(f, argnums=(0, 1)))(np.ones(3), np.ones(4), np.ones(3))
    # sin, cos, mul (w*x), mul (ct * x) ... and exactly one zero array: the unused input's
    # gradient, which nothing else reads.
    zeros = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "broadcast_in_dim"]
    assert len(zeros) <= 2
    outs = jaxpr.jaxpr.outvars
    assert outs[1].aval.shape == (4,)
    assert _prims(jaxpr)["mul"] <= 3 and _prims(jaxpr)["cos"] == 1
    g_w, g_unused = funcgrad.grad(f, argnums=(0, 1))(np.ones(3), np.ones(4), 2 * np.ones(3))
    np.testing.assert_allclose(g_w, 2 * np.cos(2.0) * np.ones(3))
    np.testing.assert_array_equal(g_unused, np.zeros(4))


# ---------------------------------------------------------------------------------------------
# Higher order


def test_grad_of_grad_of_grad():
    f = lambda x: fnp.sin(x) * x ** 3
    d1 = lambda x: np.cos(x) * x ** 3 + 3 * x ** 2 * np.sin(x)
    d2 = lambda x: -np.sin(x) * x ** 3 + 6 * x ** 2 * np.cos(x) + 6 * x * np.sin(x)
    d3 = lambda x: (-np.cos(x) * x ** 3 - 9 * x ** 2 * np.sin(x) + 18 * x * np.cos(x)
                    + 6 * np.sin(x))
    for x in (-1.3, 0.4, 2.0):
        np.testing.assert_allclose(funcgrad.grad(f)(x), d1(x), rtol=1e-12)
        np.testing.assert_allclose(funcgrad.grad(funcgrad.grad(f))(x), d2(x), rtol=1e-12)
        np.testing.assert_allclose(funcgrad.grad(funcgrad.grad(funcgrad.grad(f)))(x), d3(x),
                                   rtol=1e-12)


def test_jacfwd_of_jacrev_matches_finite_differences(rng):
    def f(x):
        return fnp.stack([fnp.sum(fnp.sin(x) * x[::-1]), fnp.prod(fnp.tanh(x))])
    x = rng.standard_normal(4)
    hess = funcgrad.jacfwd(funcgrad.jacrev(f))(x)
    assert hess.shape == (2, 4, 4)
    for k in range(2):
        fd = np.stack([numerical_grad(lambda v: funcgrad.jacrev(f)(v)[k, j], (x,))[0]
                       for j in range(4)])
        np.testing.assert_allclose(hess[k], fd, rtol=RTOL, atol=1e-9)
        np.testing.assert_allclose(hess[k], hess[k].T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(funcgrad.jacrev(funcgrad.jacfwd(f))(x), hess, rtol=1e-12)


def test_hessian_of_an_mlp_loss_matches_finite_differences(rng):
    params, x, y = mlp3_args(rng, sizes=(3, 4, 2), batch=4)
    (w1, b1), (w2, b2) = params

    def loss_of_w1(w):
        return mlp3_loss([(w, b1), (w2, b2)], x, y)

    hess = funcgrad.hessian(loss_of_w1)(w1)
    assert hess.shape == (3, 4, 3, 4)
    g = funcgrad.grad(loss_of_w1)
    fd = np.zeros((3, 4, 3, 4))
    for i, j in np.ndindex(3, 4):
        fd[i, j] = numerical_grad(lambda w: g(w)[i, j], (w1,))[0]
    np.testing.assert_allclose(hess, fd, rtol=RTOL, atol=1e-9)
    flat = hess.reshape(12, 12)
    np.testing.assert_allclose(flat, flat.T, rtol=1e-10, atol=1e-14)
    # The Hessian-vector product by forward-over-reverse agrees.
    v = rng.standard_normal((3, 4))
    hvp = funcgrad.jvp(g, (w1,), (v,))[1]
    np.testing.assert_allclose(hvp, np.einsum("ijkl,kl->ij", hess, v), rtol=1e-10, atol=1e-14)


def test_derivative_of_a_function_that_calls_grad_on_a_closure():
    def f(x):
        # The inner function closes over the outer argument x.
        inner = funcgrad.grad(lambda y: fnp.sin(x * y) * y)
        return inner(1.3) * x                      # = (x*1.3*cos(1.3x) + sin(1.3x)) * x
    x = 0.8
    want = lambda x: (x * 1.3 * np.cos(1.3 * x) + np.sin(1.3 * x)) * x
    np.testing.assert_allclose(f(x), want(x), rtol=1e-12)
    np.testing.assert_allclose(funcgrad.grad(f)(x), numerical_grad(want, (x,))[0], rtol=RTOL)
    np.testing.assert_allclose(funcgrad.jit(funcgrad.grad(f))(x), funcgrad.grad(f)(x), rtol=1e-12)
    # and a closure over a pytree of outer arguments, differentiated twice
    def g(p):
        return funcgrad.grad(lambda s: fnp.sum(p["a"] * s ** 3))(p["b"])
    p = {"a": np.array([1.0, 2.0]), "b": 0.5}
    dp = funcgrad.grad(lambda p: fnp.sum(g(p)))(p)
    np.testing.assert_allclose(dp["a"], [3 * 0.25, 3 * 0.25])
    np.testing.assert_allclose(dp["b"], 6 * 0.5 * 3.0)


# ---------------------------------------------------------------------------------------------
# API: argnums, has_aux, scalar outputs


def test_argnums_select_and_order_the_gradients():
    f = lambda a, b, c: a * b ** 2 + c
    assert funcgrad.grad(f)(2.0, 3.0, 1.0) == 9.0
    assert funcgrad.grad(f, argnums=(1, 0))(2.0, 3.0, 1.0) == (12.0, 9.0)
    assert funcgrad.grad(f, argnums=-2)(2.0, 3.0, 1.0) == 12.0
    assert funcgrad.grad(f, argnums=(2,))(2.0, 3.0, 1.0) == (1.0,)
    with pytest.raises(ValueError, match=r"argnums=3 is out of range .* 3 positional"):
        funcgrad.grad(f, argnums=3)(2.0, 3.0, 1.0)


def test_keyword_arguments_are_not_differentiated():
    f = lambda x, scale=1.0: fnp.sum(x * scale)
    np.testing.assert_allclose(funcgrad.grad(f)(np.ones(2), scale=3.0), [3.0, 3.0])


def test_has_aux_returns_the_aux_untouched():
    def f(x):
        return fnp.sum(x ** 2), {"norm": fnp.sqrt(fnp.sum(x ** 2)), "n": 3}
    g, aux = funcgrad.grad(f, has_aux=True)(np.array([3.0, 4.0]))
    np.testing.assert_allclose(g, [6.0, 8.0])
    assert aux["n"] == 3 and float(aux["norm"]) == 5.0
    (value, aux2), g2 = funcgrad.value_and_grad(f, has_aux=True)(np.array([3.0, 4.0]))
    assert float(value) == 25.0 and float(aux2["norm"]) == 5.0
    np.testing.assert_allclose(g2, g)
    with pytest.raises(TypeError, match="has_aux=True: the function must return a pair"):
        funcgrad.grad(lambda x: fnp.sum(x), has_aux=True)(np.ones(2))


def test_non_scalar_output_is_an_error_naming_its_shape():
    with pytest.raises(TypeError, match=r"scalar output.*shape \(3,\) \(f64\[3\]\).*jacrev"):
        funcgrad.grad(lambda x: x * 2)(np.ones(3))


def test_value_and_grad_returns_both():
    value, g = funcgrad.value_and_grad(lambda x: fnp.sum(fnp.exp(x)))(np.zeros(3))
    assert float(value) == 3.0
    np.testing.assert_allclose(g, np.ones(3))


# ---------------------------------------------------------------------------------------------
# Integer inputs and outputs


def test_integer_input_is_an_error_unless_allowed():
    f = lambda x, n: fnp.sum(x * n)
    with pytest.raises(TypeError, match=r"argument 1 of <lambda> has dtype int32.*allow_int=True"):
        funcgrad.grad(f, argnums=(0, 1))(np.ones(2), np.array([1, 2], np.int32))
    gx, gn = funcgrad.grad(f, argnums=(0, 1), allow_int=True)(np.ones(2), np.array([1, 2], np.int32))
    np.testing.assert_allclose(gx, [1.0, 2.0])
    assert gn.dtype == dtypes.float0 and gn.shape == (2,)
    # Not differentiated, an integer argument needs nothing.
    np.testing.assert_allclose(funcgrad.grad(f)(np.ones(2), np.array([1, 2], np.int32)), [1.0, 2.0])


def test_vjp_and_jvp_give_float0_for_integer_inputs():
    f = lambda x, n: x * n
    out, pullback = funcgrad.vjp(f, np.ones(2), np.array([2, 3], np.int32))
    ct_x, ct_n = pullback(np.ones(2))
    np.testing.assert_allclose(ct_x, [2.0, 3.0])
    assert ct_n.dtype == dtypes.float0 and ct_n.shape == (2,)
    _, t = funcgrad.jvp(f, (np.ones(2), np.array([2, 3], np.int32)),
                        (np.ones(2), np.zeros(2, dtypes.float0)))
    np.testing.assert_allclose(t, [2.0, 3.0])


def test_integer_output_is_not_differentiable():
    with pytest.raises(TypeError, match=r"floating-point output.*i32\[\].*not differentiable"):
        funcgrad.grad(lambda x: fnp.argmax(x).astype(np.int32))(np.ones(3))
    # Through vjp, an integer output has a float0 cotangent and contributes nothing.
    (out, idx), pullback = funcgrad.vjp(lambda x: (fnp.sum(x), fnp.argmax(x)), np.arange(3.0))
    (ct,) = pullback((1.0, np.zeros((), dtypes.float0)))
    np.testing.assert_allclose(ct, np.ones(3))


# ---------------------------------------------------------------------------------------------
# stop_gradient


def test_stop_gradient():
    f = lambda x: funcgrad.stop_gradient(x) * x
    assert funcgrad.grad(f)(3.0) == 3.0
    assert funcgrad.grad(funcgrad.grad(f))(3.0) == 0.0
    assert funcgrad.jvp(funcgrad.stop_gradient, (2.0,), (1.0,))[1] == 0.0
    tree = funcgrad.stop_gradient({"w": np.ones(2), "n": np.int32(3)})
    assert tree["n"] == 3
    g = funcgrad.grad(lambda p: fnp.sum(funcgrad.stop_gradient(p)["w"] * p["w"]))({"w": np.ones(2) * 2})
    np.testing.assert_allclose(g["w"], [2.0, 2.0])
    # lax.stop_gradient inside a jitted gradient
    h = funcgrad.jit(funcgrad.grad(lambda x: fnp.sum(lax.stop_gradient(x ** 2) * x)))
    np.testing.assert_allclose(h(np.array([1.0, 3.0])), [1.0, 9.0])


# ---------------------------------------------------------------------------------------------
# Numerically careful cases (the nn functions have their own, in test_nn_functions.py)


def test_stable_softmax_cross_entropy_at_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]])
    labels = np.eye(3)[[1, 0]]

    def by_hand(z, y):          # the usual max-shifted form, written with funcgrad.numpy
        z = z - fnp.max(z, axis=-1, keepdims=True)
        return fnp.mean(fnp.log(fnp.sum(fnp.exp(z), axis=-1)) - fnp.sum(y * z, axis=-1))

    for loss in (xent, by_hand):
        g = funcgrad.grad(loss)(logits, labels)
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, (np.eye(3)[[0, 2]] - labels) / 2, atol=1e-12)
        h = funcgrad.hessian(loss)(logits, labels)
        assert np.all(np.isfinite(h))


def test_derivatives_at_the_edges_follow_jax():
    grad = funcgrad.grad
    assert grad(fnp.sqrt)(0.0) == np.inf
    assert grad(fnp.abs)(0.0) == 1.0
    assert grad(lambda x: fnp.maximum(x, 0.0))(0.0) == 0.5
    assert grad(nn.relu)(0.0) == 0.0
    for x in (-1000.0, 1000.0):
        assert grad(lax.logistic)(x) == 0.0 and np.isfinite(grad(grad(lax.logistic))(x))
    tiny = 1e-12
    assert grad(fnp.log1p)(tiny) == 1 / (1 + tiny) and grad(fnp.expm1)(tiny) == np.exp(tiny)
    assert grad(lambda x: fnp.log1p(x) - x)(tiny) == pytest.approx(-tiny, rel=1e-3)


def test_where_with_nan_in_the_untaken_branch_and_the_double_where():
    naive = lambda x: fnp.where(x > 0, fnp.sqrt(x), 0.0)
    assert np.isnan(funcgrad.grad(naive)(0.0))         # 0 * inf in the untaken branch

    def safe(x):
        safe_x = fnp.where(x > 0, x, 1.0)
        return fnp.where(x > 0, fnp.sqrt(safe_x), 0.0)

    assert funcgrad.grad(safe)(0.0) == 0.0
    assert funcgrad.grad(safe)(4.0) == 0.25
    assert "double where" in nn.__doc__
