"""Training loop: evaluation with integer and one-hot labels, and the up-front checks of
``fit`` (loss functions must take ``reduction``; x and y must have the same length)."""
import numpy as np
import pytest

from funcgrad import random
from funcgrad_nn import data, losses, optim
from funcgrad_nn.layers import Dense, Sequential
from funcgrad_nn.train import evaluate, fit, init_train_state, make_eval_step

KEY = random.key(0)


def _problem(n=50, d=5, c=3):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, c, n)


def _setup(x):
    model, opt = Sequential([Dense(3)]), optim.sgd(0.1)
    return model, opt, init_train_state(model, opt, KEY, x[:8])


def test_one_hot_labels_evaluate_and_fit_like_integer_labels():
    x, y = _problem()
    onehot = np.eye(3, dtype=np.float32)[y]
    model, opt, ts = _setup(x)
    eval_step = make_eval_step(model, losses.softmax_cross_entropy)
    assert evaluate(eval_step, ts.params, ts.state, x, onehot) == \
        pytest.approx(evaluate(eval_step, ts.params, ts.state, x, y))
    logits, _ = model.apply(ts.params, ts.state, x)
    assert evaluate(eval_step, ts.params, ts.state, x, y)[1] == pytest.approx(float(losses.accuracy(logits, y)))
    _, by_int = fit(model, losses.softmax_cross_entropy, opt, ts, (x, y), (x, y), epochs=2, batch_size=10)
    _, by_onehot = fit(model, losses.softmax_cross_entropy, opt, _setup(x)[2], (x, onehot), (x, onehot),
                       epochs=2, batch_size=10)
    for a, b in zip(by_int, by_onehot):
        assert (a.train_loss, a.train_acc, a.val_loss, a.val_acc) == \
            pytest.approx((b.train_loss, b.train_acc, b.val_loss, b.val_acc))


def test_a_loss_without_reduction_is_refused_before_training():
    x, y = _problem()
    model, opt, ts = _setup(x)
    two_args = lambda logits, labels: losses.softmax_cross_entropy(logits, labels)  # noqa: E731
    with pytest.raises(TypeError, match=r"loss function '<lambda>' takes no `reduction` keyword"):
        make_eval_step(model, two_args)
    calls = []
    with pytest.raises(TypeError, match="reduction"):
        fit(model, two_args, opt, ts, (x, y), (x, y), epochs=1, batch_size=10,
            on_epoch=lambda *a: calls.append(a))
    assert calls == []
    make_eval_step(model, lambda logits, labels, **kw: losses.softmax_cross_entropy(logits, labels, **kw))


@pytest.mark.parametrize("which", ["train_data", "val_data"])
def test_fit_checks_lengths_up_front(which):
    x, y = _problem()
    model, opt, ts = _setup(x)
    sets = {"train_data": (x, y), "val_data": (x, y)}
    sets[which] = (x, y[:-1])
    with pytest.raises(ValueError, match=rf"fit: {which}: x has 50 examples but y has 49"):
        fit(model, losses.softmax_cross_entropy, opt, ts, sets["train_data"], sets["val_data"],
            epochs=1, batch_size=10)
    with pytest.raises(ValueError, match=r"minibatches: x has 50 examples but y has 49"):
        next(data.minibatches(x, y[:-1], 10))
