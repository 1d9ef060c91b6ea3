"""A convolutional net with batch normalization and dropout on the bundled digits (8x8
images, NCHW), trained with Adam through the jitted ``fit`` loop.

It shows the two modes of a model with state: ``train=True`` normalizes with batch
statistics, updates the running averages in ``state`` and drops units (needs ``rng``);
``train=False`` uses the running averages and keeps every unit, so evaluation is
deterministic::

    python -m funcgrad_nn.examples.cnn [--epochs 8] [--channels 16 32]
"""
from __future__ import annotations

import argparse

import numpy as np

from funcgrad import random
from funcgrad_nn import datasets, losses, optim
from funcgrad_nn.layers import (Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D,
                                Sequential)
from funcgrad_nn.train import evaluate, fit, init_train_state, make_eval_step


def conv_net(channels: tuple[int, int], hidden: int = 64, dropout: float = 0.3) -> Sequential:
    """[conv3x3 - BN - ReLU - maxpool2] x 2 - affine - ReLU - dropout - affine."""
    c1, c2 = channels
    return Sequential([
        Conv2D(c1, 3, name="conv1"), BatchNorm(name="bn1"), Activation("relu"), MaxPool2D(2),
        Conv2D(c2, 3, name="conv2"), BatchNorm(name="bn2"), Activation("relu"), MaxPool2D(2),
        Flatten(), Dense(hidden, w_init="he_normal", name="fc"), Activation("relu"),
        Dropout(dropout), Dense(10, name="out"),
    ])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--channels", type=int, nargs=2, default=[16, 32])
    args = parser.parse_args(argv)
    train, val, test = datasets.digits_splits()
    model, opt = conv_net(tuple(args.channels)), optim.adam(3e-3)
    ts = init_train_state(model, opt, random.key(0), train[0][:64])
    print("parameters:", {name: {k: v.shape for k, v in p.items()} for name, p in ts.params.items()})
    print("state (running averages):", {name: sorted(s) for name, s in ts.state.items()})

    ts, history = fit(model, losses.softmax_cross_entropy, opt, ts, train, val, epochs=args.epochs,
                      batch_size=64)
    for m in history:
        print(f"epoch {m.epoch}: train loss {m.train_loss:.4f} acc {m.train_acc:.4f}, "
              f"val acc {m.val_acc:.4f} ({m.seconds:.2f} s)")

    x = test[0][:8]
    eval_a, _ = model.apply(ts.params, ts.state, x)
    eval_b, _ = model.apply(ts.params, ts.state, x)
    train_a, _ = model.apply(ts.params, ts.state, x, train=True, rng=random.key(1))
    train_b, _ = model.apply(ts.params, ts.state, x, train=True, rng=random.key(2))
    print("eval mode is deterministic:", bool(np.array_equal(eval_a, eval_b)),
          "| train mode differs per dropout key:", not np.array_equal(train_a, train_b))
    print("bn1 running mean (first channels):", np.round(ts.state["bn1"]["mean"][:4], 3))
    _, test_acc = evaluate(make_eval_step(model, losses.softmax_cross_entropy), ts.params, ts.state, *test)
    print(f"test accuracy {test_acc:.4f}")
    return {"test_accuracy": test_acc, "val_accuracy": history[-1].val_acc,
            "train_loss": [m.train_loss for m in history]}


if __name__ == "__main__":
    main()
