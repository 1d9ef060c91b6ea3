"""funcgrad.nn: activation functions and friends, like ``jax.nn``.

Every function is written so that its value *and its derivatives* stay finite wherever the
mathematical ones are: ``softplus``/``log_sigmoid`` for any ``|x|``, ``log_softmax`` of logits
like ±1e4 (a softmax cross-entropy never forms ``inf - inf``), ``logsumexp`` with ``-inf``
entries. Derivatives at kinks follow JAX: ``relu'(0) = 0``, ``|x|'(0) = 1``.

NaN in the branch not taken by ``where``, and the "double where"
----------------------------------------------------------------
``where(c, f(x), g(x))`` computes *both* branches everywhere and picks one. Its value is right
even when the other branch is ``inf`` or ``NaN``, but its derivative is not: reverse mode
sends a zero cotangent into the untaken branch, and ``0 * f'(x)`` is ``NaN`` when ``f'(x)``
is infinite. For example, at ``x = 0``::

    grad(lambda x: where(x > 0, sqrt(x), 0.0))(0.0)   # NaN: 0 * (1 / (2 * sqrt(0)))

The fix is a second ``where`` that keeps the risky operation away from bad inputs in the
first place, so that the untaken branch is evaluated somewhere harmless::

    safe_x = where(x > 0, x, 1.0)                    # any value where sqrt is smooth
    grad(lambda x: where(x > 0, sqrt(safe_x), 0.0))(0.0)   # 0.0

The functions here (and in :mod:`funcgrad.scipy.special`) use this pattern wherever an
untaken branch could overflow: ``elu`` evaluates ``expm1`` only of ``min(x, 0)``.
"""
from __future__ import annotations

import math

import numpy as np

from . import numpy as fnp
from .numpy._array import operand
from .primitives import elementwise as ew
from .scipy.special import _floats, _max_shift, logsumexp  # noqa: F401 (re-exported)

__all__ = ["relu", "relu6", "leaky_relu", "elu", "celu", "selu", "gelu", "silu", "swish",
           "sigmoid", "log_sigmoid", "softplus", "soft_sign", "hard_tanh", "hard_sigmoid",
           "hard_silu", "hard_swish", "mish", "glu", "softmax", "log_softmax", "logsumexp",
           "one_hot", "standardize"]


def relu(x):
    """``max(x, 0)``, with derivative 0 at 0; NaN stays NaN (as in NumPy)."""
    x = operand(x)
    return fnp.where(fnp.less_equal(x, 0), fnp.zeros_like(x), x)


def relu6(x):
    """``min(max(x, 0), 6)``, with derivative 0 at 0 and at 6."""
    x = operand(x)
    return fnp.where(fnp.greater_equal(x, 6), fnp.full_like(x, 6), relu(x))


def leaky_relu(x, negative_slope: float = 1e-2):
    """``x`` for ``x >= 0``, ``negative_slope * x`` below."""
    x = operand(x)
    return fnp.where(fnp.greater_equal(x, 0), x, fnp.multiply(negative_slope, x))


def elu(x, alpha: float = 1.0):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` below (the exponential only ever sees
    ``x <= 0``: double where)."""
    (x,) = _floats(x)
    positive = fnp.greater(x, 0)
    negative_part = fnp.multiply(alpha, fnp.expm1(fnp.where(positive, fnp.zeros_like(x), x)))
    return fnp.where(positive, x, negative_part)


def celu(x, alpha: float = 1.0):
    """``max(x, 0) + alpha * expm1(min(x, 0) / alpha)``: continuously differentiable ELU."""
    (x,) = _floats(x)
    return fnp.add(fnp.maximum(x, 0), fnp.multiply(alpha, fnp.expm1(fnp.true_divide(
        fnp.minimum(x, 0), alpha))))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x):
    """Scaled ELU with the self-normalizing constants (Klambauer et al., 2017)."""
    return fnp.multiply(_SELU_SCALE, elu(x, _SELU_ALPHA))


def gelu(x, approximate: bool = True):
    """Gaussian error linear unit: ``x * Phi(x)``. ``approximate=True`` uses the tanh form;
    the exact form is ``x * erfc(-x / sqrt(2)) / 2`` (accurate for large negative ``x``)."""
    (x,) = _floats(x)
    if approximate:
        inner = fnp.multiply(math.sqrt(2 / math.pi),
                             fnp.add(x, fnp.multiply(0.044715, fnp.power(x, 3))))
        return fnp.multiply(fnp.multiply(0.5, x), fnp.add(1, fnp.tanh(inner)))
    return fnp.multiply(fnp.multiply(0.5, x), ew.erfc(fnp.multiply(-1 / math.sqrt(2), x)))


def sigmoid(x):
    """The logistic function ``1 / (1 + exp(-x))`` (no overflow for large ``|x|``)."""
    (x,) = _floats(x)
    return ew.logistic(x)


def silu(x):
    """``x * sigmoid(x)`` (also called swish)."""
    (x,) = _floats(x)
    return fnp.multiply(x, ew.logistic(x))


swish = silu


def softplus(x):
    """``log(1 + exp(x))`` as ``logaddexp(x, 0)``: exact for large ``|x|``, and its
    derivative is the sigmoid everywhere (1/2 at 0)."""
    (x,) = _floats(x)
    return fnp.logaddexp(x, 0)


def log_sigmoid(x):
    """``log(sigmoid(x)) = -softplus(-x)``, finite with a finite derivative for any ``x``."""
    (x,) = _floats(x)
    return fnp.negative(softplus(fnp.negative(x)))


def soft_sign(x):
    """``x / (|x| + 1)``."""
    (x,) = _floats(x)
    return fnp.true_divide(x, fnp.add(fnp.absolute(x), 1))


def hard_tanh(x):
    """``x`` clipped to ``[-1, 1]`` (derivative 1 inside, 0 outside)."""
    x = operand(x)
    one = fnp.ones_like(x)
    return fnp.where(fnp.greater(x, 1), one, fnp.where(fnp.less(x, -1), fnp.negative(one), x))


def hard_sigmoid(x):
    """``relu6(x + 3) / 6``: a piecewise-linear sigmoid."""
    (x,) = _floats(x)
    return fnp.true_divide(relu6(fnp.add(x, 3)), 6)


def hard_silu(x):
    """``x * hard_sigmoid(x)`` (also called hard swish)."""
    (x,) = _floats(x)
    return fnp.multiply(x, hard_sigmoid(x))


hard_swish = hard_silu


def mish(x):
    """``x * tanh(softplus(x))`` (Misra, 2019)."""
    (x,) = _floats(x)
    return fnp.multiply(x, fnp.tanh(softplus(x)))


def glu(x, axis: int = -1):
    """Gated linear unit: ``a * sigmoid(b)`` for the halves ``a, b`` of ``x`` along ``axis``
    (whose size must be even)."""
    (x,) = _floats(x)
    size = fnp.shape(x)[axis]
    if size % 2:
        raise ValueError(f"glu: axis {axis} of shape {fnp.shape(x)} must have an even size")
    a, b = fnp.split(x, 2, axis=axis)
    return fnp.multiply(a, sigmoid(b))


def _masked(x, where, fill):
    return x if where is None else fnp.where(where, x, fill)


def softmax(x, axis=-1, where=None):
    """``exp(x) / sum(exp(x))`` along ``axis`` (default: the last), shifted by the maximum.
    Entries outside ``where`` are excluded and get 0."""
    (x,) = _floats(x)
    x = _masked(x, where, -np.inf)
    unnormalized = fnp.exp(fnp.subtract(x, _max_shift(x, axis)))
    out = fnp.true_divide(unnormalized, fnp.sum(unnormalized, axis=axis, keepdims=True))
    return _masked(out, where, 0.0)


def log_softmax(x, axis=-1, where=None):
    """``x - logsumexp(x)`` along ``axis`` (default: the last), from shifted values: finite,
    with finite derivatives, for logits of any size. Entries outside ``where`` are excluded
    and get ``-inf``."""
    (x,) = _floats(x)
    x = _masked(x, where, -np.inf)
    shifted = fnp.subtract(x, _max_shift(x, axis))
    out = fnp.subtract(shifted, fnp.log(fnp.sum(fnp.exp(shifted), axis=axis, keepdims=True)))
    return _masked(out, where, -np.inf)


def one_hot(x, num_classes: int, dtype=np.float64, axis=-1):
    """``x[..., None] == arange(num_classes)`` as ``dtype``, the classes along ``axis``.
    Out-of-range entries give all-zero rows."""
    x = operand(x)
    out_ndim = x.ndim + 1
    axis = axis % out_ndim
    classes = np.arange(int(num_classes)).reshape((-1,) + (1,) * (out_ndim - axis - 1))
    return fnp.astype(fnp.equal(fnp.expand_dims(x, axis), classes), dtype)


def standardize(x, axis=-1, mean=None, variance=None, epsilon: float = 1e-5, where=None):
    """``(x - mean) / sqrt(variance + epsilon)`` with the mean and variance over ``axis``
    (computed if not given)."""
    (x,) = _floats(x)
    masked = {} if where is None else {"where": where}
    if mean is None:
        mean = fnp.mean(x, axis=axis, keepdims=True, **masked)
    centered = fnp.subtract(x, mean)
    if variance is None:
        variance = fnp.mean(fnp.square(centered), axis=axis, keepdims=True, **masked)
    return fnp.true_divide(centered, fnp.sqrt(fnp.add(variance, epsilon)))

