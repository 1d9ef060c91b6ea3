"""Softmax and multiclass-SVM linear classifiers on the bundled digits, trained with plain
minibatch SGD and L2 regularization, as in the course's first assignment.

Both models are the same ``scores = x W + b``; only the loss differs. The script checks the
course's sanity values at initialization (softmax loss ~ ln 10, SVM loss ~ 9 with small
weights), picks the regularization strength on the validation split, and reports test
accuracy::

    python -m funcgrad_nn.examples.linear_classifiers [--epochs 40] [--lr 0.5]
"""
from __future__ import annotations

import argparse
import math

import funcgrad
from funcgrad import random
from funcgrad_nn import datasets, losses, models, optim
from funcgrad_nn.data import minibatches
from funcgrad_nn.train import weight_leaves

LOSSES = {"softmax": losses.softmax_cross_entropy, "svm": losses.multiclass_svm}


def train_linear(loss_name: str, train, val, *, reg: float, lr: float, epochs: int,
                 batch_size: int = 64, seed: int = 0):
    """SGD on ``loss + 0.5 * reg * |W|^2``; returns ``(model, params, initial loss, val acc)``."""
    model = models.linear_classifier(10)
    params, _ = model.init(random.key(seed), train[0][:1])
    opt = optim.sgd(lr)
    opt_state = opt.init(params)
    loss_fn = LOSSES[loss_name]

    def objective(p, x, y):
        return loss_fn(model.apply(p, {}, x)[0], y) + losses.l2_regularization(weight_leaves(p), reg)

    @funcgrad.jit
    def step(p, s, x, y):
        loss, grads = funcgrad.value_and_grad(objective)(p, x, y)
        updates, s = opt.update(grads, s, p)
        return optim.apply_updates(p, updates), s, loss

    initial = float(objective(params, *train))
    for epoch in range(epochs):
        for xb, yb in minibatches(*train, batch_size, seed=seed, epoch=epoch, drop_last=True):
            params, opt_state, _ = step(params, opt_state, xb, yb)
    return model, params, initial, accuracy(model, params, *val)


def accuracy(model, params, x, y) -> float:
    return float(losses.accuracy(model.apply(params, {}, x)[0], y))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--regs", type=float, nargs="+", default=[0.0, 1e-3, 1e-2],
                        help="regularization strengths to compare on the validation split")
    args = parser.parse_args(argv)
    train, val, test = datasets.digits_splits()
    results = {}
    for name, expected in (("softmax", math.log(10)), ("svm", 9.0)):
        best = None
        for reg in args.regs:
            model, params, initial, val_acc = train_linear(name, train, val, reg=reg, lr=args.lr,
                                                           epochs=args.epochs)
            print(f"{name:7s} reg {reg:g}: initial loss {initial:.4f} (expect ~{expected:.4f}), "
                  f"val acc {val_acc:.4f}")
            if best is None or val_acc > best[0]:
                best = (val_acc, reg, model, params)
        val_acc, reg, model, params = best
        results[name] = accuracy(model, params, *test)
        print(f"{name:7s} best reg {reg:g}: test accuracy {results[name]:.4f}")
    return results


if __name__ == "__main__":
    main()
