"""Per-example gradients with ``vmap(grad(loss))``, used for DP-SGD-style training: clip
each example's gradient to a maximum norm, average, add Gaussian noise, step.

``vmap`` maps the single-example gradient over the batch without a Python loop (the
model sees ``x[None]``, a batch of one). The script checks the result against a loop of
``grad`` calls, compares their speed, and trains a small conv net on the bundled digits::

    python -m funcgrad_nn.examples.per_example_gradients [--epochs 8] [--clip 1.0]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import random
from funcgrad.tree_util import tree_flatten, tree_leaves, tree_unflatten
from funcgrad_nn import datasets, losses, optim
from funcgrad_nn.data import minibatches
from funcgrad_nn.layers import Activation, Conv2D, Dense, Flatten, MaxPool2D, Sequential

MODEL = Sequential([Conv2D(8, 3, name="conv"), Activation("relu"), MaxPool2D(2), Flatten(),
                    Dense(10, name="out")])


def example_loss(params, x, y):
    """The loss of one example (``x``: one CHW image, ``y``: its label)."""
    logits, _ = MODEL.apply(params, {}, x[None])
    return losses.softmax_cross_entropy(logits, y[None])


per_example_grads = funcgrad.jit(funcgrad.vmap(funcgrad.grad(example_loss), in_axes=(None, 0, 0)))


def private_gradient(params, x, y, key, clip: float, noise: float):
    """DP-SGD's gradient: per-example gradients clipped to norm ``clip``, averaged, plus
    N(0, (noise * clip / batch)^2) noise on every coordinate."""
    leaves, treedef = tree_flatten(
        funcgrad.vmap(funcgrad.grad(example_loss), in_axes=(None, 0, 0))(params, x, y))
    batch = x.shape[0]
    norms = fnp.sqrt(sum(fnp.sum(fnp.reshape(g * g, (batch, -1)), axis=1) for g in leaves))
    factor = fnp.minimum(1.0, clip / (norms + 1e-12))                         # (batch,)
    noisy = [fnp.mean(g * fnp.reshape(factor, (-1,) + (1,) * (g.ndim - 1)), axis=0)
             + random.normal(k, g.shape[1:], g.dtype) * (noise * clip / batch)
             for g, k in zip(leaves, random.split(key, len(leaves)))]
    return tree_unflatten(treedef, noisy), norms


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--clip", type=float, default=1.0, help="per-example gradient norm bound")
    parser.add_argument("--noise", type=float, default=0.5, help="noise multiplier")
    parser.add_argument("--lr", type=float, default=2.0)
    args = parser.parse_args(argv)
    train, val, test = datasets.digits_splits()
    params, _ = MODEL.init(random.key(0), train[0][:1])

    # 1. vmap(grad) equals a loop of grads, and is faster.
    xb, yb = train[0][:64], train[1][:64]
    batched = per_example_grads(params, xb, yb)
    t0 = time.perf_counter()
    batched = per_example_grads(params, xb, yb)
    t_vmap = time.perf_counter() - t0
    one = funcgrad.jit(funcgrad.grad(example_loss))
    one(params, xb[0], yb[0])
    t0 = time.perf_counter()
    looped = [one(params, xb[i], yb[i]) for i in range(len(xb))]
    t_loop = time.perf_counter() - t0
    err = max(float(np.max(np.abs(b[i] - l))) for i, g in enumerate(looped)
              for b, l in zip(tree_leaves(batched), tree_leaves(g)))
    print(f"64 per-example gradients: vmap {1e3 * t_vmap:.1f} ms, loop {1e3 * t_loop:.1f} ms; "
          f"max difference {err:.2e}")

    # 2. DP-SGD-style training.
    opt = optim.sgd(args.lr)
    opt_state = opt.init(params)

    @funcgrad.jit
    def step(p, s, x, y, key):
        grads, norms = private_gradient(p, x, y, key, args.clip, args.noise)
        updates, s = opt.update(grads, s, p)
        return optim.apply_updates(p, updates), s, norms

    key, clipped = random.key(1), []
    for epoch in range(args.epochs):
        for i, (x, y) in enumerate(minibatches(*train, 64, epoch=epoch, drop_last=True)):
            params, opt_state, norms = step(params, opt_state, x, y, random.fold_in(key, epoch * 1000 + i))
            clipped.append(float(np.mean(np.asarray(norms) > args.clip)))
        acc = float(losses.accuracy(MODEL.apply(params, {}, val[0])[0], val[1]))
        print(f"epoch {epoch + 1}: val accuracy {acc:.4f}, examples clipped {np.mean(clipped[-20:]):.0%}")
    test_acc = float(losses.accuracy(MODEL.apply(params, {}, test[0])[0], test[1]))
    print(f"test accuracy {test_acc:.4f}")
    return {"max_difference": err, "vmap_seconds": t_vmap, "loop_seconds": t_loop,
            "test_accuracy": test_acc}


if __name__ == "__main__":
    main()
