"""Losses. Each returns the mean over examples unless ``reduction`` says "sum" or "none".

Classification losses take raw scores (logits) of shape ``(N, C)`` and labels as integers
``(N,)`` or one-hot/probabilities ``(N, C)``.
"""
from __future__ import annotations

import funcgrad.numpy as fnp
from funcgrad import nn as fnn
from funcgrad.tree_util import tree_leaves


def _reduce(per_example, reduction: str, weights=None):
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return fnp.sum(per_example)
    if reduction == "mean":
        if weights is None:
            return fnp.mean(per_example)
        return fnp.sum(per_example) / fnp.maximum(fnp.sum(weights), 1)
    raise ValueError(f"unknown reduction {reduction!r}: use 'mean', 'sum' or 'none'")


def _check_logits(name, logits, labels):
    if fnp.ndim(logits) < 1:
        raise ValueError(f"{name}: logits must have a class axis, got shape {fnp.shape(logits)}")
    ls, ys = fnp.shape(logits), fnp.shape(labels)
    if ys != ls and ys != ls[:-1]:
        raise ValueError(f"{name}: labels of shape {ys} do not match logits of shape {ls} "
                         "(expected integer labels of shape logits.shape[:-1] or one-hot of logits.shape)")


def softmax_cross_entropy(logits, labels, *, ignore_index: int | None = None, reduction: str = "mean"):
    """Numerically stable ``-log softmax(logits)[label]`` (log-sum-exp with the max removed).

    Integer labels may use ``ignore_index`` to mask examples out of the mean."""
    _check_logits("softmax_cross_entropy", logits, labels)
    logp = fnn.log_softmax(logits, axis=-1)
    if fnp.shape(labels) == fnp.shape(logits):
        return _reduce(-fnp.sum(labels * logp, axis=-1), reduction)
    labels = fnp.asarray(labels)
    num_classes = fnp.shape(logits)[-1]
    weights = None
    if ignore_index is not None:
        weights = fnp.asarray(labels != ignore_index, logp.dtype)
        labels = fnp.where(labels == ignore_index, 0, labels)
    onehot = fnn.one_hot(labels, num_classes, dtype=logp.dtype)
    per_example = -fnp.sum(onehot * logp, axis=-1)
    if weights is not None:
        per_example = per_example * weights
    return _reduce(per_example, reduction, weights)


def multiclass_svm(scores, labels, *, margin: float = 1.0, reduction: str = "mean"):
    """The course's multiclass SVM (hinge) loss: ``sum_{j != y} max(0, s_j - s_y + margin)``."""
    _check_logits("multiclass_svm", scores, labels)
    labels = fnp.asarray(labels)
    onehot = fnn.one_hot(labels, fnp.shape(scores)[-1], dtype=fnp.asarray(scores).dtype)
    correct = fnp.sum(scores * onehot, axis=-1, keepdims=True)
    margins = fnp.maximum(0, scores - correct + margin) * (1 - onehot)
    return _reduce(fnp.sum(margins, axis=-1), reduction)


def binary_cross_entropy_with_logits(logits, targets, *, reduction: str = "mean"):
    """``-t log sigmoid(x) - (1-t) log(1 - sigmoid(x))``, stable for large |x|."""
    if fnp.shape(logits) != fnp.shape(targets):
        raise ValueError(f"binary_cross_entropy_with_logits: logits {fnp.shape(logits)} and targets "
                         f"{fnp.shape(targets)} must have the same shape")
    per = fnp.maximum(logits, 0) - logits * targets + fnp.log1p(fnp.exp(-fnp.abs(logits)))
    return _reduce(per, reduction)


def mse(predictions, targets, *, reduction: str = "mean"):
    """Mean squared error (mean over all elements)."""
    return _reduce(fnp.square(predictions - targets), reduction)


l2_loss = mse


def l1(predictions, targets, *, reduction: str = "mean"):
    return _reduce(fnp.abs(predictions - targets), reduction)


def huber(predictions, targets, *, delta: float = 1.0, reduction: str = "mean"):
    """Quadratic for |error| <= delta, linear beyond (smooth L1 with delta=1)."""
    err = fnp.abs(predictions - targets)
    quad = fnp.minimum(err, delta)
    return _reduce(0.5 * quad * quad + delta * (err - quad), reduction)


def l2_regularization(params, reg: float):
    """``0.5 * reg * sum(w**2)`` over the parameter leaves (the course's convention; its
    gradient is ``reg * w``). Biases are usually excluded: pass only the weights."""
    return 0.5 * reg * sum(fnp.sum(fnp.square(w)) for w in tree_leaves(params))


def l1_regularization(params, reg: float):
    """``reg * sum(|w|)``."""
    return reg * sum(fnp.sum(fnp.abs(w)) for w in tree_leaves(params))


def accuracy(logits, labels):
    """Fraction of examples whose argmax matches the (integer or one-hot) label."""
    pred = fnp.argmax(logits, axis=-1)
    if fnp.shape(labels) == fnp.shape(logits):
        labels = fnp.argmax(labels, axis=-1)
    return fnp.mean(pred == labels)
