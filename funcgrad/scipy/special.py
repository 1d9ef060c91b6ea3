"""funcgrad.scipy.special: special functions with stable values and gradients.

Like ``scipy.special`` (and ``jax.scipy.special``), with NumPy dtype rules: floating inputs
keep their dtype; integer and boolean inputs are computed in float64. Each function works
eagerly (returning NumPy arrays) and under every transform.

Where a formula has a branch whose value is infinite or NaN where it is not selected
(``x * log(y)`` at ``x == 0, y == 0``), the operand is made safe *before* the risky
operation, not only after: the "double where" rule explained in :mod:`funcgrad.nn`.
"""
from __future__ import annotations

import numpy as np

from .. import numpy as fnp
from ..custom_derivatives import custom_jvp
from ..numpy._array import cast_all, result_dtype, weak_operand
from ..primitives import elementwise as ew

__all__ = ["logsumexp", "expit", "logit", "erf", "erfc", "erfinv", "ndtr", "xlogy", "xlog1py",
           "entr", "softmax", "log_softmax"]


def _floats(*xs):
    """The operands in their common dtype, made inexact (integers and bools: float64)."""
    xs = [weak_operand(x) for x in xs]
    dtype = result_dtype(*xs)
    if dtype.kind not in "fc":
        dtype = np.dtype(np.float64)
    return cast_all(xs, [dtype] * len(xs), False)


def _unary(name: str, prim_fn, doc: str):
    def fn(x):
        (x,) = _floats(x)
        return prim_fn(x)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


expit = _unary("expit", ew.logistic, "The logistic sigmoid ``1 / (1 + exp(-x))``, computed "
               "without overflow for large ``|x|``.")
erf = _unary("erf", ew.erf, "The error function.")
erfc = _unary("erfc", ew.erfc, "The complementary error function ``1 - erf(x)``, accurate "
              "where ``erf(x)`` is close to 1.")
ndtr = _unary("ndtr", lambda x: ew.mul(ew.erfc(ew.mul(x, np.asarray(-np.sqrt(0.5), x.dtype))),
                                       np.asarray(0.5, x.dtype)),
              "The standard normal CDF, ``erfc(-x / sqrt(2)) / 2`` (accurate in the lower tail).")
erfinv = _unary("erfinv", ew.erf_inv, "The inverse of :func:`erf` on ``(-1, 1)`` (``±inf`` at "
                "``±1``).")


def logit(p):
    """``log(p / (1 - p))``, as ``log(p) - log1p(-p)`` (accurate near 0 and 1)."""
    (p,) = _floats(p)
    return ew.sub(ew.log(p), ew.log1p(ew.neg(p)))


def _x_times_log(x, y, log_fn, valid):
    """``x * log_fn(y)``, exactly 0 where ``x == 0`` (unless ``y`` is NaN). Where ``log_fn(y)``
    would be infinite or NaN at ``x == 0``, ``y`` is replaced by a safe value first, so
    neither the value nor any derivative sees ``0 * inf``."""
    x, y = _floats(x, y)
    zero_x = ew.eq(x, ew.zeros_like(x))
    unsafe = fnp.logical_and(zero_x, fnp.logical_not(fnp.logical_or(valid(y), fnp.isnan(y))))
    safe_y = ew.select(unsafe, ew.full_like(y, 0.0 if log_fn is ew.log1p else 1.0), y)
    return fnp.multiply(x, log_fn(safe_y))


def xlogy(x, y):
    """``x * log(y)``, 0 where ``x == 0`` (also at ``y == 0``)."""
    return _x_times_log(x, y, ew.log, lambda y: fnp.logical_and(fnp.greater(y, 0), fnp.isfinite(y)))


def xlog1py(x, y):
    """``x * log1p(y)``, 0 where ``x == 0`` (also at ``y == -1``)."""
    return _x_times_log(x, y, ew.log1p,
                        lambda y: fnp.logical_and(fnp.greater(y, -1), fnp.isfinite(y)))


def entr(x):
    """Elementwise entropy ``-x log(x)``: 0 at 0 with derivative ``+inf`` there (as JAX),
    ``-inf`` for ``x < 0``."""
    (x,) = _floats(x)
    inside_domain = ew.ge(x, ew.zeros_like(x))
    safe = ew.select(inside_domain, x, ew.ones_like(x))
    outside = ew.select(ew.ne(x, x), x, ew.full_like(x, -np.inf))
    return ew.select(inside_domain, ew.sub(ew.zeros_like(x), _xlogx(safe)), outside)   # +0 at 0


@custom_jvp
def _xlogx(x):
    """``x log(x)`` for ``x >= 0`` (0 at 0), with derivative ``log(x) + 1`` (``-inf`` at 0)."""
    return xlogy(x, x)


_xlogx.defjvps(lambda g, ans, x: ew.mul(g, ew.add(ew.log(x), 1)))


def _max_shift(x, axis):
    """The maximum along ``axis`` (keepdims), as a constant to subtract before ``exp``: the
    results below do not depend on it, so it is under ``stop_gradient``; 0 where the maximum
    is infinite (a slice of only ``-inf`` must not become ``-inf - -inf``)."""
    amax = fnp.max(x, axis=axis, keepdims=True)
    return ew.stop_gradient(fnp.where(fnp.isfinite(amax), amax, fnp.zeros_like(amax)))


def logsumexp(a, axis=None, b=None, keepdims: bool = False, return_sign: bool = False):
    """``log(sum(b * exp(a), axis))`` without overflow or underflow.

    The largest entry is subtracted first, so the derivative (the softmax) is computed with
    no ``inf - inf``. Entries equal to ``-inf``, or with ``b == 0``, contribute nothing; a
    slice of only such entries gives ``-inf``. With ``return_sign``, returns
    ``(log|s|, sign(s))`` for the sum ``s``, which may be negative when ``b`` is.
    """
    if b is None:
        (a,) = _floats(a)
    else:
        a, b = _floats(a, b)
        a = fnp.where(fnp.equal(b, 0), -np.inf, a)   # b == 0 removes the entry, even a = inf
    shift = _max_shift(a, axis)
    terms = fnp.exp(fnp.subtract(a, shift))
    if b is not None:
        terms = fnp.multiply(b, terms)
    total = fnp.sum(terms, axis=axis, keepdims=keepdims)
    if not keepdims:
        shift = fnp.squeeze(shift, axis=axis)
    if return_sign:
        return fnp.add(fnp.log(fnp.abs(total)), shift), fnp.sign(total)
    return fnp.add(fnp.log(total), shift)


def softmax(x, axis=None):
    """``exp(x) / sum(exp(x), axis)``, shifted by the maximum (no overflow). Like SciPy, the
    default ``axis=None`` normalizes over the whole array."""
    (x,) = _floats(x)
    unnormalized = fnp.exp(fnp.subtract(x, _max_shift(x, axis)))
    return fnp.true_divide(unnormalized, fnp.sum(unnormalized, axis=axis, keepdims=True))


def log_softmax(x, axis=None):
    """``x - logsumexp(x, axis)``, computed from the shifted values so that the result and
    its derivative stay finite for logits of any size."""
    (x,) = _floats(x)
    shifted = fnp.subtract(x, _max_shift(x, axis))
    return fnp.subtract(shifted, fnp.log(fnp.sum(fnp.exp(shifted), axis=axis, keepdims=True)))
