"""Training utilities: one jitted step (value_and_grad + optimizer update, with the
parameter and optimizer buffers donated so updates happen in place), batched evaluation, and
a small ``fit`` loop with per-epoch metrics."""
from __future__ import annotations

import time
from typing import Callable, Iterable, NamedTuple

import numpy as np

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import random

from . import data as data_lib, losses
from .layers import Module
from .optim import GradientTransformation, apply_updates


class TrainState(NamedTuple):
    params: dict
    state: dict
    opt_state: object
    step: int


def make_train_step(model: Module, loss_fn: Callable, optimizer: GradientTransformation,
                    *, weight_decay: float = 0.0, donate: bool = True) -> Callable:
    """``step(params, state, opt_state, x, y, key) -> (params, state, opt_state, loss, acc)``
    as a single ``jit``. ``weight_decay`` adds the course's L2 term ``0.5 * reg * sum(w**2)``
    over weight matrices/kernels (leaves named ``w``)."""

    def objective(params, state, x, y, key):
        logits, new_state = model.apply(params, state, x, train=True, rng=key)
        loss = loss_fn(logits, y)
        if weight_decay:
            loss = loss + losses.l2_regularization(_weights(params), weight_decay)
        return loss, (new_state, logits)

    def step(params, state, opt_state, x, y, key):
        (loss, (new_state, logits)), grads = funcgrad.value_and_grad(objective, has_aux=True)(
            params, state, x, y, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return apply_updates(params, updates), new_state, opt_state, loss, losses.accuracy(logits, y)

    return funcgrad.jit(step, donate_argnums=(0, 1, 2) if donate else ())


def _weights(params):
    """The leaves named ``w`` (weights and kernels; not biases or norm scales)."""
    if isinstance(params, dict):
        return [v if k == "w" else _weights(v) for k, v in params.items() if k == "w" or isinstance(v, dict)]
    return []


def make_eval_step(model: Module, loss_fn: Callable) -> Callable:
    def evaluate(params, state, x, y):
        logits, _ = model.apply(params, state, x, train=False)
        return loss_fn(logits, y, reduction="sum"), fnp.sum(fnp.argmax(logits, axis=-1) == y)
    return funcgrad.jit(evaluate)


def evaluate(eval_step: Callable, params, state, x: np.ndarray, y: np.ndarray, batch_size: int = 512
             ) -> tuple[float, float]:
    """Mean loss and accuracy over a dataset, in batches."""
    total_loss, correct = 0.0, 0
    for xb, yb in data_lib.minibatches(x, y, batch_size, shuffle=False):
        l, c = eval_step(params, state, xb, yb)
        total_loss += float(l)
        correct += int(c)
    return total_loss / len(x), correct / len(x)


class EpochMetrics(NamedTuple):
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


def fit(model: Module, loss_fn: Callable, optimizer: GradientTransformation, train: TrainState,
        x_train, y_train, x_val, y_val, *, epochs: int, batch_size: int, seed: int = 0,
        weight_decay: float = 0.0, progress: Callable[[Iterable, int, str], Iterable] | None = None,
        on_epoch: Callable[[EpochMetrics, TrainState], None] | None = None,
        start_epoch: int = 0) -> tuple[TrainState, list[EpochMetrics]]:
    """Train for ``epochs`` epochs; returns the final state and the metrics history."""
    step_fn = make_train_step(model, loss_fn, optimizer, weight_decay=weight_decay)
    eval_fn = make_eval_step(model, loss_fn)
    key = random.key(seed)
    history = []
    params, state, opt_state, step = train
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        batches = data_lib.minibatches(x_train, y_train, batch_size, seed=seed, epoch=epoch)
        n_batches = data_lib.num_batches(len(x_train), batch_size)
        if progress is not None:
            batches = progress(batches, n_batches, f"epoch {epoch + 1}/{epochs}")
        losses_, accs = [], []
        for xb, yb in batches:
            params, state, opt_state, loss, acc = step_fn(params, state, opt_state, xb, yb,
                                                          random.fold_in(key, step))
            losses_.append(loss)
            accs.append(acc)
            step += 1
        train_loss, train_acc = float(np.mean(losses_)), float(np.mean(accs))
        val_loss, val_acc = evaluate(eval_fn, params, state, x_val, y_val)
        metrics = EpochMetrics(epoch + 1, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - t0)
        history.append(metrics)
        train = TrainState(params, state, opt_state, step)
        if on_epoch is not None:
            on_epoch(metrics, train)
    return TrainState(params, state, opt_state, step), history
