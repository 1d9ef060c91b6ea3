"""funcgrad.nn and funcgrad.scipy.special: values, dtypes, stable gradients, batching."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import nn
from funcgrad.scipy import special
from funcgrad.test_util import check_grads

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name -> (function, float64 reference formula, kinks to keep away from)
ACTIVATIONS = {
    "relu": (nn.relu, lambda x: np.maximum(x, 0), [0.0]),
    "relu6": (nn.relu6, lambda x: np.clip(x, 0, 6), [0.0, 6.0]),
    "leaky_relu": (nn.leaky_relu, lambda x: np.where(x >= 0, x, 0.01 * x), [0.0]),
    "elu": (nn.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))), [0.0]),
    "celu": (lambda x: nn.celu(x, 0.5),
             lambda x: np.maximum(x, 0) + 0.5 * np.expm1(np.minimum(x, 0) / 0.5), [0.0]),
    "selu": (nn.selu,
             lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
             [0.0]),
    "gelu": (nn.gelu,
             lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), []),
    "gelu exact": (lambda x: nn.gelu(x, approximate=False),
                   lambda x: x * 0.5 * _erfc(-x / np.sqrt(2)), []),
    "silu": (nn.silu, lambda x: x * _sigmoid(x), []),
    "swish": (nn.swish, lambda x: x * _sigmoid(x), []),
    "sigmoid": (nn.sigmoid, _sigmoid, []),
    "log_sigmoid": (nn.log_sigmoid, lambda x: -np.log1p(np.exp(-x)), []),
    "softplus": (nn.softplus, lambda x: np.log1p(np.exp(x)), []),
    "soft_sign": (nn.soft_sign, lambda x: x / (np.abs(x) + 1), [0.0]),  # f'' jumps at 0
    "hard_tanh": (nn.hard_tanh, lambda x: np.clip(x, -1, 1), [-1.0, 1.0]),
    "expit": (special.expit, _sigmoid, []),
    "erf": (special.erf, _erf, []),
    "erfc": (special.erfc, _erfc, []),
    "entr": (special.entr, lambda x: -x * np.log(x), []),   # (drawn positive)
}

# Elementwise functions of several variables: (function, reference, domain per argument).
SPECIAL_BINARY = {
    "xlogy": (special.xlogy, lambda x, y: x * np.log(y), (-3, 3), (0.1, 5)),
    "xlog1py": (special.xlog1py, lambda x, y: x * np.log1p(y), (-3, 3), (-0.9, 5)),
}

# Functions along an axis: (function, float64 reference).
ALONG_AXIS = {
    "nn.softmax": (lambda x: nn.softmax(x, axis=-1),
                   lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    "nn.log_softmax": (lambda x: nn.log_softmax(x, axis=0),
                       lambda x: x - np.log(np.exp(x).sum(0, keepdims=True))),
    "nn.logsumexp": (lambda x: nn.logsumexp(x, axis=-1), lambda x: np.log(np.exp(x).sum(-1))),
    "special.softmax": (special.softmax, lambda x: np.exp(x) / np.exp(x).sum()),
    "special.log_softmax": (lambda x: special.log_softmax(x, axis=(0,)),
                            lambda x: x - np.log(np.exp(x).sum(0, keepdims=True))),
    "logsumexp keepdims": (lambda x: special.logsumexp(x, axis=0, keepdims=True),
                           lambda x: np.log(np.exp(x).sum(0, keepdims=True))),
    "logsumexp b": (lambda x: special.logsumexp(x, axis=-1,
                                                b=np.linspace(0.5, 2, x.shape[-1], dtype=x.dtype)),
                    lambda x: np.log((np.linspace(0.5, 2, x.shape[-1]) * np.exp(x)).sum(-1))),
    "standardize": (lambda x: nn.standardize(x, epsilon=0.5),
                    lambda x: (x - x.mean(-1, keepdims=True))
                    / np.sqrt(x.var(-1, keepdims=True) + 0.5)),
}


def _away_from(kinks, x):
    """Move entries within 0.05 of a kink away from it (derivatives are checked there)."""
    for k in kinks:
        near = np.abs(x - k) < 0.05
        x = np.where(near, k + 0.1 * np.where(x >= k, 1, -1), x)
    return x


small_floats = st.floats(-4, 4)
float_shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@settings(max_examples=10)
@given(x=hnp.arrays(np.float64, float_shapes, elements=small_floats))
def test_elementwise_values_and_gradients(name, x):
    fn, ref, kinks = ACTIVATIONS[name]
    if name == "entr":
        x = np.abs(x) + 0.1
    x = _away_from(kinks, x)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(fn(x), ref(x), rtol=1e-12, atol=1e-12)
    check_grads(fn, (x,), order=2)
    # float32 stays float32, integers are computed in float64 (or stay integers for the
    # piecewise-linear ones, as NumPy's maximum does).
    assert np.asarray(fn(x.astype(np.float32))).dtype == np.float32
    ints = np.arange(-2, 3)
    assert np.asarray(fn(ints)).dtype in (np.float64, ints.dtype)


@pytest.mark.parametrize("name", list(SPECIAL_BINARY))
@settings(max_examples=10)
@given(data=st.data())
def test_special_binary_values_and_gradients(name, data):
    fn, ref, (xlo, xhi), (ylo, yhi) = SPECIAL_BINARY[name]
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
    x = data.draw(hnp.arrays(np.float64, shapes.input_shapes[0], elements=st.floats(xlo, xhi)))
    y = data.draw(hnp.arrays(np.float64, shapes.input_shapes[1], elements=st.floats(ylo, yhi)))
    np.testing.assert_allclose(fn(x, y), ref(x, y), rtol=1e-12, atol=1e-12)
    check_grads(fn, (x, y), order=2)


@pytest.mark.parametrize("name", list(ALONG_AXIS))
@settings(max_examples=10)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3),
                    elements=small_floats))
def test_along_axis_values_and_gradients(name, x):
    fn, ref = ALONG_AXIS[name]
    np.testing.assert_allclose(fn(x), ref(x), rtol=1e-12, atol=1e-12)
    check_grads(fn, (x,), order=2)
    assert np.asarray(fn(x.astype(np.float32))).dtype == np.float32


def test_logit_and_erfinv_invert_expit_and_erf():
    p = np.array([1e-12, 0.1, 0.5, 0.9, 1 - 1e-9])
    np.testing.assert_allclose(special.expit(special.logit(p)), p, rtol=1e-9)
    np.testing.assert_allclose(special.logit(p), np.log(p) - np.log1p(-p), rtol=1e-12)
    y = np.array([-0.999, -0.5, 0.0, 0.3, 0.9999])
    np.testing.assert_allclose(_erf(special.erfinv(y)), y, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(special.erfinv(np.array([-1.0, 1.0])), [-np.inf, np.inf])
    check_grads(special.logit, (p[1:4],), order=2)
    check_grads(special.erfinv, (y[1:4],), order=2)
    assert special.expit(np.float32(3)).dtype == np.float32
    assert special.erfinv(np.array([0.5], np.float32)).dtype == np.float32
    assert special.expit(np.arange(3)).dtype == np.float64


def test_special_values_at_the_edges():
    """SciPy's conventions: 0 * log(0) is 0; entr is -inf for negatives; NaN propagates."""
    assert special.xlogy(0.0, 0.0) == 0.0
    assert special.xlogy(0.0, np.inf) == 0.0
    assert np.isnan(special.xlogy(0.0, np.nan))
    assert special.xlogy(2.0, 0.0) == -np.inf
    assert special.xlog1py(0.0, -1.0) == 0.0
    np.testing.assert_array_equal(special.entr(np.array([0.0, -1.0, np.inf])),
                                  [0.0, -np.inf, -np.inf])
    assert np.isnan(special.entr(np.nan))
    # The derivative in y of x * log(y) at x == 0 is 0, also at y == 0 (no 0 * inf).
    gx, gy = funcgrad.grad(special.xlogy, argnums=(0, 1))(0.0, 0.0)
    assert gx == 0.0 and gy == 0.0
    gx, gy = funcgrad.grad(special.xlogy, argnums=(0, 1))(0.0, 2.0)
    np.testing.assert_allclose([gx, gy], [np.log(2.0), 0.0])


def test_softmax_cross_entropy_with_huge_logits_is_finite():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0], [5.0, 5.0, -1e4]])
    labels = np.eye(3)

    def loss(z):
        return -fnp.sum(labels * nn.log_softmax(z)) / 3

    value, grad = funcgrad.value_and_grad(loss)(logits)
    expected_value = (0.0 + 0.0 + (1e4 + 5 + np.log(2))) / 3
    np.testing.assert_allclose(value, expected_value, rtol=1e-12)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(grad, (probs - labels) / 3, atol=1e-15)
    hess_diag = funcgrad.jvp(funcgrad.grad(loss), [logits], [np.ones_like(logits)])[1]
    assert np.all(np.isfinite(hess_diag))
    # float32 too: no inf - inf anywhere.
    g32 = funcgrad.grad(loss)(logits.astype(np.float32))
    assert g32.dtype == np.float32 and np.all(np.isfinite(g32))
    np.testing.assert_allclose(nn.softmax(logits), probs, atol=1e-15)


def test_logsumexp_with_minus_infinity():
    a = np.array([[-np.inf, 0.0, np.log(3.0)], [-np.inf, -np.inf, -np.inf], [np.inf, 1.0, -np.inf]])
    np.testing.assert_allclose(special.logsumexp(a, axis=1), [np.log(4.0), -np.inf, np.inf])
    grad = funcgrad.grad(lambda x: special.logsumexp(x))(a[0])
    np.testing.assert_allclose(grad, [0.0, 0.25, 0.75])
    check_grads(lambda x: special.logsumexp(fnp.concatenate([np.array([-np.inf]), x])),
                (np.array([0.5, -1.0]),), order=2)
    # b == 0 removes an entry, even an infinite one; a negative sum needs return_sign.
    assert special.logsumexp(np.array([np.inf, 0.0]), b=np.array([0.0, 2.0])) == np.log(2.0)
    value, sign = special.logsumexp(np.array([0.0, np.log(3.0)]), b=np.array([1.0, -1.0]),
                                    return_sign=True)
    np.testing.assert_allclose([value, sign], [np.log(2.0), -1.0])
    with np.errstate(invalid="ignore"):
        assert np.isnan(special.logsumexp(np.array([0.0, np.log(3.0)]), b=np.array([1.0, -1.0])))


@pytest.mark.parametrize("fn", [nn.softplus, nn.log_sigmoid, nn.sigmoid, nn.silu, nn.elu, nn.selu,
                                nn.gelu, lambda x: nn.gelu(x, False), nn.celu, special.expit])
def test_large_inputs_have_finite_values_and_derivatives(fn):
    x = np.array([-1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4])
    value = fn(x)
    first = funcgrad.grad(lambda v: fnp.sum(fn(v)))(x)
    second = funcgrad.jvp(funcgrad.grad(lambda v: fnp.sum(fn(v))), [x], [np.ones_like(x)])[1]
    for out in (value, first, second):
        assert np.all(np.isfinite(out)), out


def test_softplus_and_log_sigmoid_are_exact_far_out():
    x = np.array([-1e4, -50.0, 50.0, 1e4])
    np.testing.assert_allclose(nn.softplus(x), [0.0, np.exp(-50.0), 50.0, 1e4], rtol=1e-15)
    np.testing.assert_allclose(nn.log_sigmoid(x), [-1e4, -50.0, -np.exp(-50.0), 0.0], rtol=1e-15)
    np.testing.assert_allclose(funcgrad.grad(lambda v: fnp.sum(nn.log_sigmoid(v)))(x),
                               [1.0, 1.0, np.exp(-50.0), 0.0], rtol=1e-12)


def test_derivatives_at_kinks_follow_jax():
    assert funcgrad.grad(nn.relu)(0.0) == 0.0
    assert funcgrad.grad(nn.relu6)(6.0) == 0.0
    assert funcgrad.grad(nn.softplus)(0.0) == 0.5
    assert funcgrad.grad(lambda x: fnp.abs(x))(0.0) == 1.0
    assert funcgrad.grad(fnp.sqrt)(0.0) == np.inf


def test_double_where():
    """The module docstring's example: a NaN from the untaken branch, and the fix."""
    def naive(x):
        return fnp.where(x > 0, fnp.sqrt(x), 0.0)

    def safe(x):
        safe_x = fnp.where(x > 0, x, 1.0)
        return fnp.where(x > 0, fnp.sqrt(safe_x), 0.0)

    with np.errstate(all="ignore"):
        assert np.isnan(funcgrad.grad(naive)(0.0))
    assert funcgrad.grad(safe)(0.0) == 0.0
    assert funcgrad.grad(safe)(4.0) == funcgrad.grad(naive)(4.0) == 0.25
    assert nn.__doc__ is not None and "double where" in nn.__doc__


def test_masked_softmax():
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    where = np.array([[True, False, True], [False, False, False]])
    out = nn.softmax(x, where=where)
    np.testing.assert_allclose(out[0], [np.exp(1) / (np.exp(1) + np.exp(3)), 0.0,
                                        np.exp(3) / (np.exp(1) + np.exp(3))])
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(nn.log_softmax(x, where=where)[0, 1], -np.inf)
    grad = funcgrad.grad(lambda v: fnp.sum(nn.softmax(v, where=where) * np.arange(3.0)))(x)
    assert np.all(np.isfinite(grad)) and grad[0, 1] == 0.0


def test_one_hot():
    labels = np.array([[0, 2], [1, 5]])
    out = nn.one_hot(labels, 3)
    np.testing.assert_array_equal(out, np.eye(3)[[[0, 2], [1, 0]]] * [[[1], [1]], [[1], [0]]])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(nn.one_hot(labels, 3, dtype=np.int32, axis=0),
                                  np.moveaxis(out, -1, 0).astype(np.int32))
    traced = funcgrad.vmap(lambda l: nn.one_hot(l, 3, dtype=np.float32))(labels)
    np.testing.assert_array_equal(traced, out.astype(np.float32))


@pytest.mark.parametrize("name", ["softplus", "gelu", "elu", "hard_tanh", "log_sigmoid"])
def test_batching_matches_a_loop(name):
    fn = ACTIVATIONS[name][0]
    xs = np.linspace(-3, 3, 12).reshape(3, 4)
    looped = np.stack([fn(xs[:, i]) for i in range(4)])
    np.testing.assert_allclose(funcgrad.vmap(fn, in_axes=1)(xs), looped, rtol=1e-15)
    grad = funcgrad.grad(lambda v: fnp.sum(fn(v)))
    np.testing.assert_allclose(funcgrad.vmap(grad)(xs), np.stack([grad(r) for r in xs]), rtol=1e-15)


def test_standardize_with_given_statistics():
    x = np.arange(6.0).reshape(2, 3)
    out = nn.standardize(x, axis=0, mean=1.0, variance=4.0, epsilon=0.0)
    np.testing.assert_allclose(out, (x - 1) / 2)


def test_relu_and_relu6_keep_nan():
    """``where(x > 0, x, 0)`` turned NaN into 0; NumPy's maximum (and JAX) keep it."""
    x = np.array([np.nan, -1.0, 0.0, 2.0, 7.0])
    for fn, want in [(nn.relu, [np.nan, 0, 0, 2, 7]), (nn.relu6, [np.nan, 0, 0, 2, 6])]:
        np.testing.assert_array_equal(fn(x), want)
        np.testing.assert_array_equal(funcgrad.jit(fn)(x), want)
        assert funcgrad.grad(fn)(0.0) == 0.0 and funcgrad.grad(fn)(1.0) == 1.0
    assert funcgrad.grad(nn.relu6)(6.0) == 0.0


def test_softplus_and_log_sigmoid_derivatives_at_infinity():
    """softplus' = sigmoid(x), log_sigmoid' = sigmoid(-x): finite at +-inf (were NaN)."""
    g = funcgrad.grad
    for transform in (lambda f: f, funcgrad.jit):
        assert transform(g(nn.softplus))(np.inf) == 1.0
        assert transform(g(nn.softplus))(-np.inf) == 0.0
        assert transform(g(nn.log_sigmoid))(-np.inf) == 1.0
        assert transform(g(nn.log_sigmoid))(np.inf) == 0.0
        assert transform(g(g(nn.softplus)))(np.inf) == 0.0
    np.testing.assert_array_equal(nn.softplus(np.array([-np.inf, 0.0, np.inf])),
                                  [0.0, np.log(2), np.inf])
    np.testing.assert_array_equal(nn.log_sigmoid(np.array([-np.inf, np.inf])), [-np.inf, 0.0])


def test_entr_derivative_at_zero_is_infinite():
    """d/dx -x log x = -(log x + 1): +inf at 0 (as JAX), not the safe branch's 0."""
    g = funcgrad.grad
    assert g(special.entr)(0.0) == np.inf
    np.testing.assert_array_equal(funcgrad.jit(funcgrad.vmap(g(special.entr)))(
        np.array([0.0, -1.0, 0.5])), [np.inf, 0.0, -(np.log(0.5) + 1)])
    np.testing.assert_allclose(g(g(special.entr))(0.5), -2.0, rtol=1e-15)
    check_grads(special.entr, (np.array([0.3, 1.7]),), order=2)
    out = special.entr(np.array([0.0, -1.0, 0.5, np.nan]))
    np.testing.assert_array_equal(out, [0.0, -np.inf, -0.5 * np.log(0.5), np.nan])
    assert not np.signbit(out[0])


def _np_hard_sigmoid(x):
    return np.clip(x + 3, 0, 6) / 6


@pytest.mark.parametrize("name,want", [
    ("hard_sigmoid", _np_hard_sigmoid),
    ("hard_silu", lambda x: x * _np_hard_sigmoid(x)),
    ("hard_swish", lambda x: x * _np_hard_sigmoid(x)),
    ("mish", lambda x: x * np.tanh(np.logaddexp(x, 0))),
])
def test_more_activations(name, want):
    fn = getattr(funcgrad.nn, name)
    x = np.linspace(-7.1, 7.1, 29)
    np.testing.assert_allclose(fn(x), want(x), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(funcgrad.jit(fn)(x.astype(np.float32)), want(x), rtol=1e-5, atol=1e-6)
    check_grads(fn, [x + 0.013], order=2)          # away from the kinks at -3 and 3


def test_glu_gates_one_half_with_the_other():
    x = np.arange(12.0).reshape(3, 4) / 5
    np.testing.assert_allclose(funcgrad.nn.glu(x), x[:, :2] / (1 + np.exp(-x[:, 2:])))
    np.testing.assert_allclose(funcgrad.nn.glu(x.T, axis=0), x.T[:2] / (1 + np.exp(-x.T[2:])))
    check_grads(funcgrad.nn.glu, [x], order=2)
    with pytest.raises(ValueError, match="even size"):
        funcgrad.nn.glu(x[:, :3])


def test_ndtr_is_the_normal_cdf():
    x = np.array([-40.0, -10.0, -1.0, 0.0, 0.5, 8.0])
    want = np.array([0.0, 7.61985302416047e-24, 0.15865525393145707, 0.5, 0.6914624612740131, 1.0])
    np.testing.assert_allclose(funcgrad.scipy.special.ndtr(x), want, rtol=1e-13)
    np.testing.assert_allclose(funcgrad.grad(funcgrad.scipy.special.ndtr)(0.5),
                               np.exp(-0.125) / np.sqrt(2 * np.pi), rtol=1e-14)
    check_grads(funcgrad.scipy.special.ndtr, [x[1:5]], order=2)
