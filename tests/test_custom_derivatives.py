"""custom_jvp (custom_jvp_call) and custom_vjp (custom_vjp_call, custom_lin): rules are used,
compose with vmap/jit/higher order, and misuse gives clear errors."""
import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import core
from funcgrad.test_util import check_grads


@fg.custom_jvp
def log1pexp(x):
    return fnp.log1p(fnp.exp(x))


@log1pexp.defjvp
def _log1pexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp(x), t * fg.nn.sigmoid(x)


def test_custom_jvp_rule_is_used_and_stable():
    # The naive derivative exp(x)/(1+exp(x)) is nan at x=1000; the rule is exact.
    assert fg.grad(log1pexp)(1000.0) == 1.0
    np.testing.assert_allclose(fg.grad(log1pexp)(0.3), 1 / (1 + np.exp(-0.3)))
    jaxpr = fg.make_jaxpr(log1pexp)(1.0)
    assert [e.primitive.name for e in jaxpr.eqns] == ["custom_jvp_call"]
    core.check_jaxpr(jaxpr)


def test_custom_jvp_grads_vmap_jit_and_higher_order():
    x = np.array([-1.2, 0.3, 2.0])
    check_grads(log1pexp, (x,), order=2)
    per_row = fg.vmap(fg.grad(log1pexp))(x)
    np.testing.assert_allclose(per_row, 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(fg.grad(lambda v: fnp.sum(fg.vmap(log1pexp)(v)))(x), per_row)
    np.testing.assert_allclose(fg.jit(fg.grad(lambda v: fnp.sum(log1pexp(v))))(x), per_row)
    s = 1 / (1 + np.exp(-0.5))
    np.testing.assert_allclose(fg.grad(fg.grad(log1pexp))(0.5), s * (1 - s))


def test_defjvps_and_nondiff_argnums():
    @fg.custom_jvp
    def scale(x, y):
        return x * y

    scale.defjvps(lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x * 10)   # deliberately odd
    gx, gy = fg.grad(scale, argnums=(0, 1))(2.0, 3.0)
    assert (gx, gy) == (3.0, 20.0)

    from functools import partial

    @partial(fg.custom_jvp, nondiff_argnums=(0,))
    def apply_n(n, x):
        return x ** n

    @apply_n.defjvp
    def _(n, primals, tangents):
        (x,), (t,) = primals, tangents
        return x ** n, n * x ** (n - 1) * t

    assert fg.grad(apply_n, argnums=1)(3, 2.0) == 12.0


def test_custom_jvp_closing_over_a_differentiated_value_is_an_error():
    def outer(y):
        @fg.custom_jvp
        def f(x):
            return x * y

        f.defjvp(lambda p, t: (f(*p), t[0] * y))
        return f(2.0)

    with pytest.raises(TypeError, match="closes over a value that is being differentiated"):
        fg.grad(outer)(3.0)


@fg.custom_vjp
def clip_gradient(lo, hi, x):
    return x


def _clip_fwd(lo, hi, x):
    return x, (lo, hi)


def _clip_bwd(res, g):
    lo, hi = res
    return None, None, fnp.clip(g, lo, hi)


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


def test_custom_vjp_bwd_is_used():
    g = fg.grad(lambda x: fnp.sum(clip_gradient(-0.5, 0.5, x) * 3.0))(np.ones(3))
    np.testing.assert_allclose(g, [0.5, 0.5, 0.5])
    jaxpr = fg.make_jaxpr(lambda x: clip_gradient(-0.5, 0.5, x))(np.ones(2))
    assert jaxpr.eqns[0].primitive.name == "custom_vjp_call"
    core.check_jaxpr(jaxpr)


def test_custom_vjp_under_vmap_and_jit():
    x = np.ones(3)
    np.testing.assert_allclose(fg.vmap(fg.grad(lambda v: clip_gradient(-0.5, 0.5, v) * 3.0))(x), [0.5] * 3)
    np.testing.assert_allclose(
        fg.grad(lambda v: fnp.sum(fg.vmap(lambda r: clip_gradient(-0.5, 0.5, r) * 3.0)(v)))(x), [0.5] * 3)
    np.testing.assert_allclose(fg.jit(fg.grad(lambda v: fnp.sum(clip_gradient(-0.5, 0.5, v) * 3.0)))(x),
                               [0.5] * 3)


@fg.custom_vjp
def sin_mul(x, y):
    return fnp.sin(x) * y


sin_mul.defvjp(lambda x, y: (sin_mul(x, y), (fnp.cos(x), fnp.sin(x), y)),
               lambda res, g: (res[0] * g * res[2], res[1] * g))


def test_custom_vjp_matches_numerics_to_second_order():
    check_grads(sin_mul, (np.array([0.3, 1.0]), np.array([2.0, -1.0])), order=2, modes=("rev",))


def test_custom_vjp_forward_mode_is_a_clear_error():
    with pytest.raises(TypeError, match="forward-mode"):
        fg.jvp(lambda x: clip_gradient(-0.5, 0.5, x), (1.0,), (1.0,))


def test_custom_vjp_bad_bwd_output():
    @fg.custom_vjp
    def f(x):
        return x

    f.defvjp(lambda x: (x, None), lambda res, g: g)   # not a tuple
    with pytest.raises(TypeError, match="one cotangent per differentiable argument"):
        fg.grad(f)(1.0)


def test_custom_lin_batches_under_vmap_of_a_pullback():
    out, pullback = fg.vjp(lambda x: sin_mul(x, x), np.array([0.2, 0.4]))
    cts = fg.vmap(pullback)(np.eye(2))[0]
    x = np.array([0.2, 0.4])
    expected = np.diag(np.cos(x) * x + np.sin(x))
    np.testing.assert_allclose(cts, expected)


def test_custom_vjp_linearizes_to_custom_lin():
    from funcgrad.interpreters import ad
    closed = fg.make_jaxpr(lambda x: sin_mul(x, x))(np.array([0.2, 0.4]))
    _, linear, _, _ = ad.linearize_jaxpr(closed, [True])
    assert [e.primitive.name for e in linear.eqns] == ["custom_lin"]
    core.check_jaxpr(linear)
