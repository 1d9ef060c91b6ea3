"""Losses and regularizers.

Losses return the mean over examples unless ``reduction`` is "sum" or "none" (per-example
values). Classification losses take raw scores (logits) ``(..., C)`` and labels as integers
``(...)`` or one-hot / probability rows ``(..., C)``.
"""
from __future__ import annotations

import funcgrad.numpy as fnp
from funcgrad import nn as fnn
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


def _is_one_hot(name: str, logits, labels) -> bool:
    """Whether ``labels`` are one-hot rows (else integer class ids); checks the shapes."""
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
    return False


def softmax_cross_entropy(logits, labels, *, ignore_index: int | None = None,
                          reduction: str = "mean"):
    """``-log softmax(logits)[label]``, computed stably through ``log_softmax`` (no overflow
    for logits of any size). One-hot / probability labels give ``-sum(labels * log_softmax)``.

    With integer labels, examples whose label is ``ignore_index`` contribute 0 and are left
    out of the mean."""
    logp = fnn.log_softmax(logits, axis=-1)
    if _is_one_hot("softmax_cross_entropy", logits, labels):
        if ignore_index is not None:
            raise ValueError("softmax_cross_entropy: ignore_index needs integer labels")
        return _reduce(-fnp.sum(labels * logp, axis=-1), reduction)
    num_classes = fnp.shape(logits)[-1]
    if ignore_index is None:
        return _reduce(-fnp.sum(fnn.one_hot(labels, num_classes, dtype=logp.dtype) * logp, axis=-1),
                       reduction)
    keep = labels != ignore_index
    onehot = fnn.one_hot(fnp.where(keep, labels, 0), num_classes, dtype=logp.dtype)
    per_example = -fnp.sum(onehot * logp, axis=-1) * keep
    return _reduce(per_example, reduction, count=fnp.sum(keep))


def multiclass_svm(scores, labels, *, margin: float = 1.0, reduction: str = "mean"):
    """The course's multiclass SVM (hinge) loss ``sum_{j != y} max(0, s_j - s_y + margin)``
    for integer labels ``y``."""
    if _is_one_hot("multiclass_svm", scores, labels):
        raise ValueError("multiclass_svm: labels must be integer class ids, not one-hot rows")
    onehot = fnn.one_hot(labels, fnp.shape(scores)[-1], dtype=fnp.asarray(scores).dtype)
    correct = fnp.sum(scores * onehot, axis=-1, keepdims=True)
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


def accuracy(logits, labels):
    """Fraction of examples whose highest score is at the (integer or one-hot) label."""
    if _is_one_hot("accuracy", logits, labels):
        labels = fnp.argmax(labels, axis=-1)
    return fnp.mean(fnp.argmax(logits, axis=-1) == labels)
