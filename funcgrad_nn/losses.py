"""Losses and regularizers.

Losses return the mean over examples unless ``reduction`` is "sum" or "none" (per-example
values). Classification losses take raw scores (logits) ``(..., C)`` and labels as integers
``(...)`` or one-hot / probability rows ``(..., C)``.

Integer labels must be class ids in ``[0, C)``. Concrete labels outside that range raise a
``ValueError``; traced ones (under ``jit``/``vmap``) cannot be checked while tracing, so the
losses pick each example's class score with an integer gather, which funcgrad bounds-checks:
an out-of-range label (a negative one included) raises ``IndexError`` when the compiled
function runs instead of giving a wrong loss. ``accuracy`` counts traced ones as wrong.
"""
from __future__ import annotations

import numpy as np

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import nn as fnn
from funcgrad.core import Tracer
from funcgrad.tree_util import tree_leaves


def _reduce(per_example, reduction: str, count=None):
    """Apply ``reduction``; ``count`` (the number of examples that count) divides the mean."""
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return fnp.sum(per_example)
    if reduction == "mean":
        return fnp.mean(per_example) if count is None else fnp.sum(per_example) / fnp.maximum(count, 1)
    raise ValueError(f"unknown reduction {reduction!r}: use 'mean', 'sum' or 'none'")


def _is_one_hot(name: str, logits, labels, ignore_index: int | None = None) -> bool:
    """Whether ``labels`` are one-hot rows (else integer class ids); checks the shapes, and
    that concrete class ids (other than ``ignore_index``) are in ``[0, C)``."""
    ls, ys = fnp.shape(logits), fnp.shape(labels)
    if len(ls) < 1:
        raise ValueError(f"{name}: logits need a class axis, got shape {ls}")
    if ys == ls:
        return True
    if ys != ls[:-1]:
        raise ValueError(f"{name}: labels of shape {ys} do not match logits of shape {ls} (expected "
                         f"integer labels of shape {ls[:-1]} or one-hot labels of shape {ls})")
    if fnp.asarray(labels).dtype.kind not in "iu":
        raise ValueError(f"{name}: labels of shape {ys} must be integer class ids, got "
                         f"{fnp.asarray(labels).dtype}")
    if not isinstance(labels, Tracer):
        _check_class_ids(name, labels, ls[-1], ignore_index)
    return False


def _check_class_ids(name: str, labels, num_classes: int, ignore_index: int | None):
    labels = np.asarray(funcgrad.device_put(labels, "cpu"))      # from the GPU, or a list
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bad.any():
        raise ValueError(f"{name}: labels must be class ids in [0, {num_classes}) for "
                         f"{num_classes} classes, got {np.unique(labels[bad]).tolist()}")


def _pick(values, labels):
    """``values[..., label]`` per example, by an integer gather that fails at run time for a
    label outside ``[0, C)`` (negative labels are sent past the end rather than wrapping)."""
    labels = fnp.asarray(labels)
    index = fnp.where(labels < 0, fnp.shape(values)[-1], labels)
    return fnp.take_along_axis(values, index[..., None], axis=-1)[..., 0]


def softmax_cross_entropy(logits, labels, *, ignore_index: int | None = None,
                          reduction: str = "mean"):
    """``-log softmax(logits)[label]``, computed stably through ``log_softmax`` (no overflow
    for logits of any size). One-hot / probability labels give ``-sum(labels * log_softmax)``.

    With integer labels, examples whose label is ``ignore_index`` contribute 0 and are left
    out of the mean."""
    logp = fnn.log_softmax(logits, axis=-1)
    if _is_one_hot("softmax_cross_entropy", logits, labels, ignore_index):
        if ignore_index is not None:
            raise ValueError("softmax_cross_entropy: ignore_index needs integer labels")
        return _reduce(-fnp.sum(labels * logp, axis=-1), reduction)
    if ignore_index is None:
        return _reduce(-_pick(logp, labels), reduction)
    keep = labels != ignore_index
    per_example = -_pick(logp, fnp.where(keep, labels, 0)) * keep
    return _reduce(per_example, reduction, count=fnp.sum(keep))


def multiclass_svm(scores, labels, *, margin: float = 1.0, reduction: str = "mean"):
    """The course's multiclass SVM (hinge) loss ``sum_{j != y} max(0, s_j - s_y + margin)``
    for integer labels ``y``."""
    if _is_one_hot("multiclass_svm", scores, labels):
        raise ValueError("multiclass_svm: labels must be integer class ids, not one-hot rows")
    onehot = fnn.one_hot(labels, fnp.shape(scores)[-1], dtype=fnp.asarray(scores).dtype)
    correct = _pick(scores, labels)[..., None]
    margins = fnp.maximum(scores - correct + margin, 0) * (1 - onehot)
    return _reduce(fnp.sum(margins, axis=-1), reduction)


def _same_shape(name: str, a, b):
    if fnp.shape(a) != fnp.shape(b):
        raise ValueError(f"{name}: predictions {fnp.shape(a)} and targets {fnp.shape(b)} must have "
                         "the same shape")


def binary_cross_entropy_with_logits(logits, targets, *, reduction: str = "mean"):
    """``-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))`` per element, computed as
    ``softplus(x) - x t`` (stable for any ``|x|``, with the exact gradient
    ``sigmoid(x) - t`` everywhere, also at ``x = 0``)."""
    _same_shape("binary_cross_entropy_with_logits", logits, targets)
    return _reduce(fnn.softplus(logits) - logits * targets, reduction)


def mse(predictions, targets, *, reduction: str = "mean"):
    """Squared error ``(p - t)**2`` per element (the L2 loss); the mean is over all elements."""
    _same_shape("mse", predictions, targets)
    return _reduce(fnp.square(predictions - targets), reduction)


def l1(predictions, targets, *, reduction: str = "mean"):
    """Absolute error ``|p - t|`` per element."""
    _same_shape("l1", predictions, targets)
    return _reduce(fnp.abs(predictions - targets), reduction)


def huber(predictions, targets, *, delta: float = 1.0, reduction: str = "mean"):
    """``0.5 e**2`` for ``|e| <= delta``, ``delta (|e| - 0.5 delta)`` beyond, per element
    (``delta=1`` is the smooth L1 loss)."""
    _same_shape("huber", predictions, targets)
    err = fnp.abs(predictions - targets)
    quad = fnp.minimum(err, delta)
    return _reduce(0.5 * quad * quad + delta * (err - quad), reduction)


def l2_regularization(params, reg: float):
    """``0.5 * reg * sum(w**2)`` over the leaves of ``params`` (the course's convention, whose
    gradient is ``reg * w``). Usually only weights are regularized: pass those."""
    return 0.5 * reg * sum(fnp.sum(fnp.square(w)) for w in tree_leaves(params))


def l1_regularization(params, reg: float):
    """``reg * sum(|w|)`` over the leaves of ``params``."""
    return reg * sum(fnp.sum(fnp.abs(w)) for w in tree_leaves(params))


def accuracy(logits, labels, *, reduction: str = "mean"):
    """Fraction of examples whose highest score is at the (integer or one-hot) label; with
    ``reduction="sum"`` the number of them, with ``"none"`` a boolean per example."""
    if _is_one_hot("accuracy", logits, labels):
        labels = fnp.argmax(labels, axis=-1)
    return _reduce(fnp.argmax(logits, axis=-1) == labels, reduction)
