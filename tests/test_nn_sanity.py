"""The course's sanity checks, on the bundled digits: initial losses of linear classifiers
with small weights, regularization raising the loss, and a two-layer net overfitting a tiny
training set."""
import math

import numpy as np
import pytest

import funcgrad
from funcgrad import random
from funcgrad_nn import datasets, losses, models, optim
from funcgrad_nn.train import init_train_state, make_train_step, weight_leaves


@pytest.fixture(scope="module")
def digits():
    x, y = datasets.load_digits()
    return x[:200], y[:200]


def _initial_loss(loss_fn, digits, reg=0.0, weight_scale=1e-3):
    x, y = digits
    model = models.linear_classifier(10, weight_scale=weight_scale)
    params, state = model.init(random.key(0), x)
    scores, _ = model.apply(params, state, x)
    return float(loss_fn(scores, y) + losses.l2_regularization(weight_leaves(params), reg))


def test_softmax_initial_loss_is_log_of_the_number_of_classes(digits):
    assert _initial_loss(losses.softmax_cross_entropy, digits) == pytest.approx(math.log(10), abs=2e-3)


def test_svm_initial_loss_is_number_of_classes_minus_one(digits):
    assert _initial_loss(losses.multiclass_svm, digits) == pytest.approx(9.0, abs=2e-2)


@pytest.mark.parametrize("loss_fn", [losses.softmax_cross_entropy, losses.multiclass_svm])
def test_regularization_raises_the_loss(loss_fn, digits):
    base = _initial_loss(loss_fn, digits, weight_scale=1e-2)
    with_reg = _initial_loss(loss_fn, digits, reg=1e3, weight_scale=1e-2)
    assert with_reg > base + 1.0


def test_two_layer_net_overfits_twenty_examples(digits):
    x, y = digits[0][:20], digits[1][:20]
    model = models.mlp(10, hidden=(100,), dropout=0.0)
    opt = optim.adam(1e-2)
    step = make_train_step(model, losses.softmax_cross_entropy, opt)
    ts = init_train_state(model, opt, random.key(0), x)
    for _ in range(100):
        ts, loss, acc = step(ts, x, y, random.key(1))
    logits, _ = model.apply(ts.params, ts.state, x)
    assert float(losses.accuracy(logits, y)) == 1.0
    assert float(loss) < 0.05


def test_weight_decay_in_the_train_step_adds_the_course_l2_term(digits):
    """The jitted step's loss with weight_decay equals the data loss plus 0.5*reg*sum(w**2)."""
    x, y = digits
    model = models.mlp(10, hidden=(16,), dropout=0.0)
    opt = optim.sgd(0.0)
    ts = init_train_state(model, opt, random.key(0), x)
    logits, _ = model.apply(ts.params, ts.state, x)
    expect = losses.softmax_cross_entropy(logits, y) + 0.5 * 0.1 * sum(
        np.sum(np.square(ts.params[k]["w"])) for k in ("fc1", "out"))
    _, loss, _ = make_train_step(model, losses.softmax_cross_entropy, opt, weight_decay=0.1,
                                 donate=False)(ts, x, y, random.key(0))
    np.testing.assert_allclose(loss, expect, rtol=1e-5)


def test_train_step_is_one_jit_that_compiles_once(digits):
    """value_and_grad and the optimizer update run as one jitted function, compiled once for
    a given batch shape, and the donated train state is updated in place where possible."""
    x, y = digits[0][:32], digits[1][:32]
    model = models.cnn(10)
    opt = optim.momentum(0.01)
    step = make_train_step(model, losses.softmax_cross_entropy, opt)
    ts = init_train_state(model, opt, random.key(0), x)
    lowered = step.lower(ts, x, y, random.key(1))
    prims = {e.primitive.name for e in lowered.jaxpr.jaxpr.eqns}
    assert "conv_general_dilated" in prims and "reduce_window_max" in prims
    losses_seen = []
    for _ in range(3):
        donated = {id(a) for a in funcgrad.tree_util.tree_leaves(ts) if np.ndim(a)}
        ts, loss, _ = step(ts, x, y, random.key(1))
        losses_seen.append(float(loss))
    assert step.cache_info().misses == 1
    assert int(ts.step) == 3
    assert losses_seen[-1] < losses_seen[0]
    reused = sum(id(a) in donated for a in funcgrad.tree_util.tree_leaves(ts) if np.ndim(a))
    assert reused > 0
