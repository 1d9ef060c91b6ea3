"""Training: one jitted step (value_and_grad + optimizer update, with the training state's
buffers donated so the update happens in place), batched evaluation, and a small ``fit``
loop with per-epoch metrics.

Training is reproducible: minibatch order depends on ``(seed, epoch)`` and each step's
dropout key on ``(seed, step)``, so a run resumed from a checkpoint continues exactly as the
uninterrupted run would have.
"""
from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np

import funcgrad
from funcgrad import random

from . import data as data_lib, losses
from .layers import Module
from .optim import GradientTransformation, apply_updates

Augment = Callable[[Any, Any], Any]
"""``augment(key, x_batch) -> x_batch``: random training-time augmentation (jit-able)."""
Progress = Callable[[Iterable, int, str], Iterable]
"""``progress(iterable, total, description)`` wraps the batches of an epoch (a progress bar)."""


class TrainState(NamedTuple):
    """Everything training updates: a pytree, so it is jitted, donated and checkpointed whole."""
    params: dict
    state: dict
    opt_state: Any
    step: Any           # int32 scalar: optimizer steps taken


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Optimizer steps per epoch in :func:`fit`: full batches only (a last partial batch is
    dropped so every step has the same shapes), or one short batch when the data is smaller."""
    return max(num_examples // batch_size, 1)


def init_train_state(model: Module, optimizer: GradientTransformation, key, x) -> TrainState:
    """Initialize the model for inputs like ``x`` and the optimizer for its params."""
    params, state = model.init(key, x)
    return TrainState(params, state, optimizer.init(params), np.zeros((), np.int32))


def weight_leaves(params) -> list:
    """The leaves named ``w`` (dense and conv kernels; not biases, norm scales, embeddings)."""
    if not isinstance(params, dict):
        return []
    return [v if k == "w" else weight_leaves(v) for k, v in params.items()
            if k == "w" or isinstance(v, dict)]


def make_train_step(model: Module, loss_fn: Callable, optimizer: GradientTransformation, *,
                    weight_decay: float = 0.0, augment: Augment | None = None,
                    donate: bool = True) -> Callable:
    """``step(train_state, x, y, key) -> (train_state, loss, accuracy)`` as one ``jit``.

    The objective is ``loss_fn(logits, y)`` plus, with ``weight_decay``, the course's L2 term
    ``0.5 * weight_decay * sum(w**2)`` over the :func:`weight_leaves`; ``augment(key, x)``
    transforms the batch first. The step's PRNG key (for augmentation and dropout) is
    ``fold_in(key, train_state.step)``. With ``donate``, the incoming train state's arrays
    are reused for the outgoing one: do not read them afterwards."""

    def objective(params, state, x, y, rng):
        logits, new_state = model.apply(params, state, x, train=True, rng=rng)
        loss = loss_fn(logits, y)
        if weight_decay:
            loss = loss + losses.l2_regularization(weight_leaves(params), weight_decay)
        return loss, (new_state, logits)

    def step(ts: TrainState, x, y, key):
        key = random.fold_in(key, ts.step)
        if augment is not None:
            key, augment_key = random.split(key)
            x = augment(augment_key, x)
        (loss, (state, logits)), grads = funcgrad.value_and_grad(objective, has_aux=True)(
            ts.params, ts.state, x, y, key)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        new = TrainState(apply_updates(ts.params, updates), state, opt_state, ts.step + 1)
        return new, loss, losses.accuracy(logits, y)

    return funcgrad.jit(step, donate_argnums=0 if donate else ())


def _check_takes_reduction(loss_fn: Callable) -> None:
    """Evaluation sums losses over batches: ``loss_fn`` must accept ``reduction="sum"``."""
    try:
        params = inspect.signature(loss_fn).parameters.values()
    except (TypeError, ValueError):          # no signature to inspect (some builtins): trust it
        return
    if not any(p.name == "reduction" or p.kind is p.VAR_KEYWORD for p in params):
        raise TypeError(f"make_eval_step: loss function {getattr(loss_fn, '__name__', loss_fn)!r} "
                        "takes no `reduction` keyword, but evaluation calls loss_fn(logits, y, "
                        "reduction='sum'); loss functions take `reduction` as the "
                        "funcgrad_nn.losses do: def loss(logits, y, *, reduction='mean')")


def make_eval_step(model: Module, loss_fn: Callable) -> Callable:
    """``evaluate(params, state, x, y) -> (summed loss, number correct)`` as one ``jit``
    (evaluation mode: running statistics, no dropout). ``loss_fn(logits, y, *, reduction)``
    must take a ``reduction`` keyword as the :mod:`funcgrad_nn.losses` do (it is called with
    ``reduction="sum"``); ``y`` holds integer or one-hot labels."""
    _check_takes_reduction(loss_fn)

    def evaluate_batch(params, state, x, y):
        logits, _ = model.apply(params, state, x, train=False)
        return loss_fn(logits, y, reduction="sum"), losses.accuracy(logits, y, reduction="sum")

    return funcgrad.jit(evaluate_batch)


def evaluate(eval_step: Callable, params, state, x: np.ndarray, y: np.ndarray,
             batch_size: int = 1024) -> tuple[float, float]:
    """Mean loss and accuracy over a dataset, in batches of at most ``batch_size``."""
    if len(x) == 0:
        raise ValueError("evaluate: the dataset is empty")
    total_loss, correct = 0.0, 0
    for xb, yb in data_lib.minibatches(x, y, batch_size, shuffle=False):
        loss, right = eval_step(params, state, xb, yb)
        total_loss += float(loss)
        correct += int(right)
    return total_loss / len(x), correct / len(x)


class EpochMetrics(NamedTuple):
    epoch: int          # 1-based
    train_loss: float   # mean over the epoch's steps (training mode)
    train_acc: float
    val_loss: float     # evaluation mode, after the epoch
    val_acc: float
    seconds: float      # training and validation time of the epoch


def fit(model: Module, loss_fn: Callable, optimizer: GradientTransformation, ts: TrainState,
        train_data: tuple[np.ndarray, np.ndarray], val_data: tuple[np.ndarray, np.ndarray], *,
        epochs: int, batch_size: int, seed: int = 0, weight_decay: float = 0.0,
        augment: Augment | None = None, start_epoch: int = 0, progress: Progress | None = None,
        on_epoch: Callable[[EpochMetrics, TrainState], None] | None = None
        ) -> tuple[TrainState, list[EpochMetrics]]:
    """Train from epoch ``start_epoch`` up to ``epochs``; return the final train state and
    the metrics of the epochs run. Each epoch takes :func:`steps_per_epoch` steps over the
    shuffled training set, then evaluates on ``val_data``; ``on_epoch(metrics, train_state)``
    runs after each epoch. ``loss_fn(logits, y, *, reduction="mean")`` must take the
    ``reduction`` keyword, as the :mod:`funcgrad_nn.losses` do (see :func:`make_eval_step`)."""
    x_train, y_train = train_data
    data_lib.check_lengths(x_train, y_train, "fit: train_data")
    data_lib.check_lengths(*val_data, "fit: val_data")
    step_fn = make_train_step(model, loss_fn, optimizer, weight_decay=weight_decay,
                              augment=augment)
    eval_fn = make_eval_step(model, loss_fn)
    key = random.key(seed)
    history = []
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        batches: Iterator = data_lib.minibatches(x_train, y_train, batch_size, seed=seed, epoch=epoch,
                                                 drop_last=len(x_train) >= batch_size)
        if progress is not None:
            batches = progress(batches, steps_per_epoch(len(x_train), batch_size),
                               f"epoch {epoch + 1}/{epochs}")
        step_losses, step_accs = [], []
        for xb, yb in batches:
            ts, loss, acc = step_fn(ts, xb, yb, key)
            step_losses.append(loss)
            step_accs.append(acc)
        val_loss, val_acc = evaluate(eval_fn, ts.params, ts.state, *val_data)
        metrics = EpochMetrics(epoch + 1, float(np.mean(step_losses)), float(np.mean(step_accs)),
                               val_loss, val_acc, time.perf_counter() - t0)
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics, ts)
    return ts, history
