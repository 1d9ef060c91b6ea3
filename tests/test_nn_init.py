"""Initializers: fans for dense and conv kernels, the variance each scheme promises,
dtypes, orthogonality, and lookup by name."""
import math

import numpy as np
import pytest

from funcgrad import random
from funcgrad_nn import init, layers

KEY = random.key(0)


@pytest.mark.parametrize("shape,fans", [
    ((5, 7), (5, 7)),                      # dense (in, out)
    ((16, 3, 3, 3), (27, 144)),            # conv OIHW: fan_in = I*kh*kw, fan_out = O*kh*kw
    ((8, 2, 5, 1), (10, 40)),
    ((4, 6, 3), (18, 12)),                 # 1-D conv (O, I, k)
    ((9,), (9, 9)),
])
def test_compute_fans(shape, fans):
    assert init.compute_fans(shape) == fans


@pytest.mark.parametrize("name,variance", [
    ("he_normal", lambda fi, fo: 2 / fi), ("he_uniform", lambda fi, fo: 2 / fi),
    ("lecun_normal", lambda fi, fo: 1 / fi), ("lecun_uniform", lambda fi, fo: 1 / fi),
    ("glorot_normal", lambda fi, fo: 2 / (fi + fo)), ("xavier_uniform", lambda fi, fo: 2 / (fi + fo)),
])
@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 3, 3)])
def test_variance_scaling_variances(name, variance, shape):
    w = np.asarray(init.get(name)(KEY, shape, np.float64))
    fan_in, fan_out = init.compute_fans(shape)
    assert w.shape == shape and w.dtype == np.float64
    assert abs(w.mean()) < 0.05 * math.sqrt(variance(fan_in, fan_out))
    np.testing.assert_allclose(w.var(), variance(fan_in, fan_out), rtol=0.05)
    if "uniform" in name:
        assert np.abs(w).max() <= math.sqrt(3 * variance(fan_in, fan_out))


def test_truncated_normal_keeps_the_variance_and_the_bounds():
    w = np.asarray(init.variance_scaling(2.0, "fan_in", "truncated_normal")(KEY, (400, 300), np.float64))
    np.testing.assert_allclose(w.var(), 2 / 400, rtol=0.05)
    assert np.abs(w).max() <= 2 * math.sqrt(2 / 400) / 0.8796256610342398 + 1e-12


def test_conv_layer_uses_the_conv_fan_in():
    """Conv2D's default He-normal init has std sqrt(2 / (in/groups * kh * kw))."""
    x = np.zeros((1, 32, 8, 8), np.float32)
    for groups in (1, 4):
        w = layers.Conv2D(64, 5, groups=groups).init(KEY, x)[0]["w"]
        assert w.shape == (64, 32 // groups, 5, 5) and w.dtype == np.float32
        np.testing.assert_allclose(w.std(), math.sqrt(2 / (32 // groups * 25)), rtol=0.06)


def test_simple_initializers():
    assert np.all(init.zeros(KEY, (2, 3)) == 0) and np.all(init.ones(KEY, (2,)) == 1)
    np.testing.assert_array_equal(init.constant(0.5)(KEY, (2,), np.float64), [0.5, 0.5])
    w = np.asarray(init.normal(0.01)(KEY, (500, 400)))
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.std(), 0.01, rtol=0.02)
    u = np.asarray(init.uniform(0.2)(KEY, (1000,)))
    assert -0.2 <= u.min() and u.max() <= 0.2 and u.max() > 0.19 and u.min() < -0.19


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (8, 2, 3)])
def test_orthogonal(shape):
    w = np.asarray(init.orthogonal(2.0)(KEY, shape, np.float64)).reshape(shape[0], -1)
    small = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(small, 4 * np.eye(len(small)), atol=1e-10)
    with pytest.raises(ValueError, match="rank >= 2"):
        init.orthogonal()(KEY, (3,))


def test_initializers_are_seeded():
    a, b = (np.asarray(init.he_normal()(random.key(s), (3, 3))) for s in (0, 1))
    np.testing.assert_array_equal(a, np.asarray(init.he_normal()(random.key(0), (3, 3))))
    assert np.any(a != b)


def test_get():
    assert init.get("zeros") is init.zeros
    f = lambda key, shape, dtype: np.zeros(shape, dtype)  # noqa: E731
    assert init.get(f) is f
    with pytest.raises(ValueError, match="unknown initializer 'he'; choose from"):
        init.get("he")
    with pytest.raises(ValueError, match="unknown mode"):
        init.variance_scaling(1.0, "fan_max", "normal")
