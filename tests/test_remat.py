"""funcgrad.checkpoint (remat): same values and derivatives, fewer residuals."""
import numpy as np
import pytest

import funcgrad as fg
import funcgrad.numpy as fnp
from funcgrad import core
from funcgrad.interpreters import ad
from funcgrad.test_util import check_grads


def block(w, x):
    for _ in range(3):
        x = fnp.tanh(x @ w)
    return x


def loss(w, x, wrap=lambda f: f):
    return fnp.sum(wrap(block)(w, x) ** 2)


W = np.random.default_rng(0).standard_normal((4, 4)) * 0.5
X = np.random.default_rng(1).standard_normal((3, 4))


def residual_count(f, *args):
    closed = fg.make_jaxpr(f)(*args)
    _, _, _, num_res = ad.linearize_jaxpr(closed, [True] * len(args))
    return num_res


def test_checkpoint_reduces_residuals():
    plain = residual_count(loss, W, X)
    remat = residual_count(lambda w, x: loss(w, x, fg.checkpoint), W, X)
    assert remat < plain, (remat, plain)
    # What crosses from forward to backward is the block's inputs, not its intermediates.
    assert remat <= 3


def test_checkpoint_values_and_gradients_match():
    g_plain = fg.grad(loss, argnums=(0, 1))(W, X)
    g_remat = fg.grad(lambda w, x: loss(w, x, fg.checkpoint), argnums=(0, 1))(W, X)
    for a, b in zip(g_plain, g_remat):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    check_grads(lambda w, x: loss(w, x, fg.checkpoint), (W, X), order=2)


def test_checkpoint_recomputes_in_the_backward_pass():
    jaxpr = fg.make_jaxpr(fg.grad(lambda w: loss(w, X, fg.remat)))(W)
    names = [e.primitive.name for e in jaxpr.eqns]
    assert names.count("remat") == 2          # the forward call and the recompute+linear call
    assert fg.remat is fg.checkpoint
    core.check_jaxpr(jaxpr)
    recompute = [e for e in jaxpr.eqns if "recompute" in e.params.get("name", "")]
    assert recompute and any(e.primitive.name == "tanh" for e in recompute[0].params["jaxpr"].eqns)


def test_checkpoint_under_jit_vmap_and_forward_mode():
    f = lambda w, x: loss(w, x, fg.checkpoint)
    np.testing.assert_allclose(fg.jit(fg.grad(f))(W, X), fg.grad(loss)(W, X), rtol=1e-12)
    per_ex = fg.vmap(fg.grad(lambda w, x: loss(w, x[None], fg.checkpoint)), in_axes=(None, 0))(W, X)
    loop = np.stack([fg.grad(lambda w: loss(w, x[None]))(W) for x in X])
    np.testing.assert_allclose(per_ex, loop, rtol=1e-12)
    t = np.ones_like(W)
    np.testing.assert_allclose(fg.jvp(lambda w: f(w, X), (W,), (t,))[1], fg.jvp(lambda w: loss(w, X), (W,), (t,))[1])


def test_checkpoint_static_argnums_and_eager():
    def scaled(x, n):
        return fnp.sin(x) * n
    ck = fg.checkpoint(scaled, static_argnums=(1,))
    assert ck(1.0, 3) == pytest.approx(np.sin(1.0) * 3)
    assert fg.grad(ck)(1.0, 3) == pytest.approx(np.cos(1.0) * 3)
