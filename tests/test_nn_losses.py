"""Losses against NumPy references (the course's naive loops for the SVM), their gradients,
numerical stability, reductions, and shape errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import funcgrad
from funcgrad.test_util import check_grads
from funcgrad_nn import losses


def _logits(n=6, c=4, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.normal(size=(n, c)), rng.integers(0, c, n)


def _softmax_ce_reference(s, y):
    shifted = s - s.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y]


@given(st.integers(1, 8), st.integers(2, 6), st.integers(0, 2 ** 16), st.sampled_from([1.0, 1e3]))
def test_softmax_cross_entropy_values(n, c, seed, scale):
    s, y = _logits(n, c, seed, scale)
    per = losses.softmax_cross_entropy(s, y, reduction="none")
    np.testing.assert_allclose(per, _softmax_ce_reference(s, y), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(losses.softmax_cross_entropy(s, y), per.mean(), rtol=1e-12)
    np.testing.assert_allclose(losses.softmax_cross_entropy(s, y, reduction="sum"), per.sum(), rtol=1e-12)
    np.testing.assert_allclose(losses.softmax_cross_entropy(s, np.eye(c)[y]), per.mean(), rtol=1e-12)


def test_softmax_cross_entropy_is_stable_and_has_the_textbook_gradient():
    s = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    y = np.array([0, 2])
    loss, g = funcgrad.value_and_grad(losses.softmax_cross_entropy)(s, y)
    np.testing.assert_allclose(loss, np.log(2) / 2)
    p = np.array([[1.0, 0, 0], [0, 0.5, 0.5]])
    np.testing.assert_allclose(g, (p - np.eye(3)[y]) / 2, atol=1e-12)      # (softmax - onehot) / N
    s, y = _logits()
    check_grads(lambda v: losses.softmax_cross_entropy(v, y), (s,), order=2)
    check_grads(lambda v, t: losses.softmax_cross_entropy(v, t), (s, np.eye(4)[y] * 0.9 + 0.025), order=2)


def test_softmax_cross_entropy_ignore_index():
    s, y = _logits(6, 4)
    y = y.copy()
    y[[1, 4]] = -100
    keep = y != -100
    per = losses.softmax_cross_entropy(s, y, ignore_index=-100, reduction="none")
    np.testing.assert_allclose(per[keep], _softmax_ce_reference(s[keep], y[keep]), rtol=1e-12)
    assert np.all(per[~keep] == 0)
    mean = losses.softmax_cross_entropy(s, y, ignore_index=-100)
    np.testing.assert_allclose(mean, per[keep].mean(), rtol=1e-12)
    g = funcgrad.grad(lambda v: losses.softmax_cross_entropy(v, y, ignore_index=-100))(s)
    assert np.all(g[~keep] == 0)
    jitted = funcgrad.jit(lambda v, t: losses.softmax_cross_entropy(v, t, ignore_index=-100))(s, y)
    np.testing.assert_allclose(jitted, mean, rtol=1e-12)


def _svm_naive(scores, y, margin=1.0):
    """The course's svm_loss_naive, loop by loop."""
    total = 0.0
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            if j != y[i]:
                total += max(0.0, scores[i, j] - scores[i, y[i]] + margin)
    return total / scores.shape[0]


@given(st.integers(1, 8), st.integers(2, 6), st.integers(0, 2 ** 16))
def test_multiclass_svm_matches_the_naive_loop(n, c, seed):
    s, y = _logits(n, c, seed)
    np.testing.assert_allclose(losses.multiclass_svm(s, y), _svm_naive(s, y), rtol=1e-12)
    np.testing.assert_allclose(losses.multiclass_svm(s, y, margin=0.5), _svm_naive(s, y, 0.5), rtol=1e-12)


def test_multiclass_svm_gradient():
    s, y = _logits(5, 4, seed=3)
    margins = s - s[np.arange(5), y][:, None] + 1
    active = (margins > 0) & (np.arange(4)[None] != y[:, None])
    expect = active.astype(float)
    expect[np.arange(5), y] = -active.sum(1)
    np.testing.assert_allclose(funcgrad.grad(losses.multiclass_svm)(s, y), expect / 5)
    check_grads(lambda v: losses.multiclass_svm(v, y), (s,), order=1)


def test_binary_cross_entropy_with_logits():
    x = np.array([-3.0, -0.5, 0.0, 2.0, 1e4, -1e4])
    t = np.array([0.0, 1.0, 0.3, 1.0, 0.0, 0.0])
    per = losses.binary_cross_entropy_with_logits(x, t, reduction="none")
    sig = 1 / (1 + np.exp(-x[:4]))
    np.testing.assert_allclose(per[:4], -t[:4] * np.log(sig) - (1 - t[:4]) * np.log(1 - sig), rtol=1e-12)
    np.testing.assert_allclose(per[4:], [1e4, 0.0])
    check_grads(lambda v, w: losses.binary_cross_entropy_with_logits(v, w), (x[:4], t[:4]), order=2)
    g = funcgrad.grad(losses.binary_cross_entropy_with_logits)(x, t)
    np.testing.assert_allclose(g, ([0.04742587317756678, 0.3775406687981454, 0.5, 0.8807970779778823, 1.0, 0.0] - t) / 6,
                               atol=1e-15)                             # sigmoid(x) - t, also at x = 0


def test_regression_losses():
    p, t = np.array([0.0, 0.5, -2.0, 3.0]), np.array([1.0, 0.0, 0.0, 3.0])
    np.testing.assert_allclose(losses.mse(p, t), np.mean((p - t) ** 2))
    np.testing.assert_allclose(losses.l1(p, t, reduction="sum"), np.abs(p - t).sum())
    np.testing.assert_allclose(losses.huber(p, t, reduction="none"), [0.5, 0.125, 1.5, 0.0])
    np.testing.assert_allclose(losses.huber(p, t, delta=2.0, reduction="none"), [0.5, 0.125, 2.0, 0.0])
    q = np.array([0.3, -0.7, 1.9])
    for loss in (losses.mse, losses.l1, losses.huber):
        check_grads(lambda v: loss(v, np.zeros(3)), (q,), order=1)


def test_regularizers():
    params = {"a": np.array([1.0, -2.0]), "b": {"c": np.array([[3.0]])}}
    np.testing.assert_allclose(losses.l2_regularization(params, 0.1), 0.5 * 0.1 * 14)
    np.testing.assert_allclose(losses.l1_regularization(params, 0.1), 0.1 * 6)
    g = funcgrad.grad(losses.l2_regularization)(params, 0.1)
    np.testing.assert_allclose(g["a"], 0.1 * params["a"])                 # the course's reg * W


def test_accuracy():
    s = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert losses.accuracy(s, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert losses.accuracy(s, np.eye(2)[[1, 0, 1]]) == 1.0


def test_errors():
    s, y = _logits(3, 4)
    with pytest.raises(ValueError, match=r"labels of shape \(4,\) do not match logits of shape \(3, 4\)"):
        losses.softmax_cross_entropy(s, np.zeros(4, int))
    with pytest.raises(ValueError, match="must be integer class ids, got float64"):
        losses.softmax_cross_entropy(s, y.astype(float))
    with pytest.raises(ValueError, match="ignore_index needs integer labels"):
        losses.softmax_cross_entropy(s, np.eye(4)[y], ignore_index=0)
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        losses.multiclass_svm(s, y, reduction="avg")
    with pytest.raises(ValueError, match=r"mse: predictions \(3,\) and targets \(2,\)"):
        losses.mse(np.zeros(3), np.zeros(2))


CLASS_ID_LOSSES = [losses.softmax_cross_entropy, losses.multiclass_svm, losses.accuracy]


@pytest.mark.parametrize("fn", CLASS_ID_LOSSES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [4, -1])
def test_out_of_range_labels_are_errors(fn, bad):
    """Concrete labels are checked up front (naming the loss, the classes and the labels);
    traced ones make the class-score gather fail when the jitted function runs, not give a
    wrong loss (a -1 does not wrap around to the last class)."""
    s, _ = _logits(3, 4)
    y = np.array([0, bad, 1])
    with pytest.raises(ValueError, match=rf"{fn.__name__}: labels must be class ids in \[0, 4\) "
                                         rf"for 4 classes, got \[{bad}\]"):
        fn(s, y)
    if fn is not losses.accuracy:                     # accuracy counts them as wrong instead
        with pytest.raises(IndexError):
            funcgrad.jit(fn)(s, y)
        with pytest.raises(IndexError):
            funcgrad.jit(funcgrad.grad(fn))(s, y)


def test_ignore_index_is_the_only_label_allowed_out_of_range():
    s, _ = _logits(3, 4)
    ok = losses.softmax_cross_entropy(s, np.array([0, -100, 1]), ignore_index=-100)
    np.testing.assert_allclose(ok, losses.softmax_cross_entropy(s[[0, 2]], np.array([0, 1])))
    jitted = funcgrad.jit(lambda v, y: losses.softmax_cross_entropy(v, y, ignore_index=-100))
    np.testing.assert_allclose(jitted(s, np.array([0, -100, 1])), ok)
    with pytest.raises(ValueError, match=r"got \[-1\]"):
        losses.softmax_cross_entropy(s, np.array([0, -1, -100]), ignore_index=-100)


def test_accuracy_reductions():
    s = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert int(losses.accuracy(s, np.eye(2)[[1, 0, 0]], reduction="sum")) == 2
    assert losses.accuracy(s, np.array([1, 0, 0]), reduction="none").tolist() == [True, True, False]
