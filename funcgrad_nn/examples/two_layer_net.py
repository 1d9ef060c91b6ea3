"""The course's two-layer net (affine - ReLU - affine, softmax loss) on the bundled digits.

First the sanity checks: the initial loss with small weights is ~ln 10, regularization
raises it, and the net overfits 20 examples to 100% training accuracy. Then a full run with
SGD + momentum and the course's step decay of the learning rate (Caffe's "step" policy)::

    python -m funcgrad_nn.examples.two_layer_net [--epochs 30] [--hidden 100]
"""
from __future__ import annotations

import argparse
import math

from funcgrad import random
from funcgrad_nn import datasets, init, losses, optim, schedules
from funcgrad_nn.layers import Activation, Dense, Flatten, Sequential
from funcgrad_nn.train import (evaluate, fit, init_train_state, make_eval_step, make_train_step,
                               steps_per_epoch, weight_leaves)


def two_layer_net(hidden: int, weight_scale: float | None = None) -> Sequential:
    """affine - ReLU - affine; ``weight_scale`` gives the course's N(0, scale^2) weights,
    None He-normal ones."""
    w_init = init.normal(weight_scale) if weight_scale else "he_normal"
    return Sequential([Flatten(), Dense(hidden, w_init=w_init, name="fc1"), Activation("relu"),
                       Dense(10, w_init=w_init if weight_scale else "lecun_normal", name="fc2")])


def sanity_checks(x, y, hidden: int) -> dict:
    """The course's checks: initial loss, the effect of regularization, overfitting 20 examples."""
    small = two_layer_net(hidden, weight_scale=1e-3)
    params, _ = small.init(random.key(0), x)
    loss0 = float(losses.softmax_cross_entropy(small.apply(params, {}, x)[0], y))
    with_reg = loss0 + float(losses.l2_regularization(weight_leaves(params), 1e3))
    print(f"initial loss {loss0:.4f} (ln 10 = {math.log(10):.4f}); with reg 1e3: {with_reg:.4f}")

    model, opt = two_layer_net(hidden), optim.adam(1e-2)
    step = make_train_step(model, losses.softmax_cross_entropy, opt)
    ts = init_train_state(model, opt, random.key(0), x[:20])
    for _ in range(100):
        ts, loss, acc = step(ts, x[:20], y[:20], random.key(0))
    print(f"overfitting 20 examples: loss {float(loss):.4f}, train accuracy {float(acc):.2f}")
    return {"initial_loss": loss0, "loss_with_reg": with_reg, "overfit_accuracy": float(acc)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args(argv)
    train, val, test = datasets.digits_splits()
    results = sanity_checks(*train, args.hidden)

    batch_size = 64
    lr = schedules.step_decay(args.lr, gamma=0.5, step_size=10 * steps_per_epoch(len(train[0]), batch_size))
    model, opt = two_layer_net(args.hidden), optim.momentum(lr, mu=0.9)
    ts = init_train_state(model, opt, random.key(0), train[0][:batch_size])
    ts, history = fit(model, losses.softmax_cross_entropy, opt, ts, train, val, epochs=args.epochs,
                      batch_size=batch_size, weight_decay=1e-4)
    for m in history[::max(len(history) // 5, 1)] + history[-1:]:
        print(f"epoch {m.epoch:3d}: train loss {m.train_loss:.4f}, val accuracy {m.val_acc:.4f}")
    _, results["test_accuracy"] = evaluate(make_eval_step(model, losses.softmax_cross_entropy),
                                           ts.params, ts.state, *test)
    results["train_loss"] = [m.train_loss for m in history]
    print(f"test accuracy {results['test_accuracy']:.4f}")
    return results


if __name__ == "__main__":
    main()
