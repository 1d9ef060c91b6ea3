"""Pieces several workloads share: the loss, the SGD step, how a step's result is compared,
and the input generators. The functions taking ``xp`` are written once against the NumPy API
and run unchanged on ``funcgrad.numpy``, ``jax.numpy`` and ``autograd.numpy``, so those
libraries compute identical math; PyTorch gets its own short versions next to them."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

LEARNING_RATE = 0.1


def normal(rng: np.random.Generator, shape: tuple[int, ...], std: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def one_hot_labels(rng: np.random.Generator, batch: int, classes: int = 10) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[rng.integers(0, classes, batch)]


def xent(xp: Any, logits: Any, labels: Any) -> Any:
    """Softmax cross-entropy per example (classes on the last axis), shifted by the max."""
    z = logits - xp.max(logits, axis=-1, keepdims=True)
    return xp.log(xp.sum(xp.exp(z), axis=-1)) - xp.sum(labels * z, axis=-1)


def torch_xent(torch: Any, logits: Any, labels: Any) -> Any:
    """:func:`xent` in PyTorch's spelling."""
    z = logits - torch.amax(logits, dim=-1, keepdim=True)
    return torch.log(torch.sum(torch.exp(z), dim=-1)) - torch.sum(labels * z, dim=-1)


def sgd_step(value_and_grad: Callable, loss: Callable) -> Callable:
    """``step(params, x, y) -> (loss, new params)`` from a library's ``value_and_grad``."""
    loss_and_grads = value_and_grad(loss)

    def step(params, x, y):
        value, grads = loss_and_grads(params, x, y)
        return value, [p - LEARNING_RATE * g for p, g in zip(params, grads)]
    return step


def torch_sgd_step(torch: Any, loss: Callable) -> Callable:
    """:func:`sgd_step` for PyTorch eager: ``torch.autograd.grad``, then a functional update."""
    def step(params, x, y):
        value = loss(params, x, y)
        grads = torch.autograd.grad(value, params)
        with torch.no_grad():
            return value.detach(), [p - LEARNING_RATE * g for p, g in zip(params, grads)]
    return step


def numpy_sgd_update(params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> list:
    return [p - LEARNING_RATE * g for p, g in zip(params, grads)]


def observe_update(param_names: Sequence[str]) -> Callable:
    """Compare a step's loss and each parameter's update (new - old, in float64).

    The new parameters themselves agree to many digits even when the gradients are wrong, so
    the update is what is checked."""
    def observe(inputs, raw):
        loss, *new = raw
        return [loss] + [p.astype(np.float64) - inputs[name] for p, name in zip(new, param_names)]
    return observe
