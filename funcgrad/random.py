"""funcgrad.random: a functional, splittable PRNG (JAX-style raw keys).

A key is a uint32 array of shape (2,). Functions never change a key: ``split`` or
``fold_in`` it to get new ones, and pass a different key to every sampler call. All bits
come from the Threefry-2x32 hash of a counter under the key (``primitives/random_bits.py``),
written with uint32 primitives, so sampling works the same eagerly, under ``jit``, under
``vmap`` (a batch of keys gives each row its own stream) and under ``grad`` (the bits carry
no derivative; derivatives flow through ``minval``/``maxval``, ``p``, ``logits``, ...).

Defaults follow JAX: samplers return float32 unless given ``dtype``; integer samplers int32.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Sequence

import numpy as np

from . import core, dtypes
from .interpreters.batching import moveaxis
from .primitives import elementwise as ew, indexing, reduction, structural as st
from .primitives.random_bits import is_key_aval, key_words, threefry2x32, threefry_bits

__all__ = ["key", "PRNGKey", "split", "fold_in", "bits", "uniform", "normal",
           "truncated_normal", "bernoulli", "categorical", "randint", "permutation", "choice",
           "gumbel"]

Array = Any      # a NumPy/CuPy array, or a tracer inside a transform
Shape = Sequence[int]
_DEFAULT_FLOAT = np.dtype(np.float32)
_DEFAULT_INT = np.dtype(np.int32)
_UINT_OF_WIDTH = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16), 32: np.dtype(np.uint32),
                  64: np.dtype(np.uint64)}

# ---------------------------------------------------------------------------------------------
# Keys


def key(seed) -> Array:
    """A key from an integer seed (Python int, or an integer array, possibly traced).

    64-bit seeds use both words: ``[seed >> 32, seed & 0xFFFFFFFF]``."""
    aval = core.get_aval(seed)
    if aval.shape != () or not dtypes.is_integer(aval.dtype):
        raise TypeError(f"random.key: seed must be an integer scalar, got {aval.str_short()}")
    if dtypes.is_python_scalar(seed):
        if not -2 ** 63 <= seed < 2 ** 64:
            raise OverflowError(f"random.key: seed {seed} does not fit in 64 bits")
        seed = np.asarray(seed % 2 ** 64, np.uint64)
    wide = ew.convert_element_type(seed, np.uint64 if aval.dtype.kind == "u" else np.int64)
    hi = ew.convert_element_type(ew.shift_right(wide, 32), np.uint32)
    lo = ew.convert_element_type(ew.bitwise_and(wide, 0xFFFFFFFF), np.uint32)
    return _key_from_words(hi, lo)


PRNGKey = key


def _key_from_words(k0, k1):
    return st.concatenate([st.reshape(k0, (1,)), st.reshape(k1, (1,))], 0)


def _words(k, api: str) -> tuple:
    aval = core.get_aval(k)
    if not is_key_aval(aval):
        hint = (" (a batch of keys: map over it with funcgrad.vmap)"
                if aval.ndim > 1 and aval.shape[-1] == 2 and aval.dtype == np.uint32 else "")
        raise TypeError(f"random.{api}: expected a key, a uint32 array of shape (2,) made by "
                        f"random.key/split/fold_in, got {aval.str_short()}{hint}")
    return key_words(k)


def split(key: Array, num: int | Shape = 2) -> Array:
    """``num`` new independent keys (shape ``(num, 2)``; ``num`` may be a shape)."""
    shape = _shape(num if not isinstance(num, int) else (num,), "split")
    n = math.prod(shape)
    words = threefry_bits(*_words(key, "split"), 2 * n)
    return st.reshape(words, shape + (2,))


def fold_in(key: Array, data) -> Array:
    """A new key determined by ``key`` and the integer ``data`` (e.g. a step number)."""
    k0, k1 = _words(key, "fold_in")
    aval = core.get_aval(data)
    if aval.shape != () or not dtypes.is_integer(aval.dtype):
        raise TypeError(f"random.fold_in: data must be an integer scalar, got {aval.str_short()}")
    if dtypes.is_python_scalar(data):
        data = np.asarray(data % 2 ** 32, np.uint32)
    data = ew.convert_element_type(data, np.uint32)
    return _key_from_words(*threefry2x32((k0, k1), (np.zeros((), np.uint32), data)))


# ---------------------------------------------------------------------------------------------
# Bits


def _shape(shape, api: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"random.{api}: shape must be a sequence of ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"random.{api}: negative dimension in shape {out}")
    return out


def _bits(key, api: str, width: int, shape: tuple[int, ...]):
    """Unsigned random integers of ``width`` bits and ``shape``."""
    n = math.prod(shape)
    k0, k1 = _words(key, api)
    if width == 64:
        words = threefry_bits(k0, k1, 2 * n)
        hi, lo = (ew.convert_element_type(st.slice(words, (s,), (s + n,)), np.uint64) for s in (0, n))
        out = ew.bitwise_or(ew.shift_left(hi, 32), lo)
    else:
        out = threefry_bits(k0, k1, n)
        if width < 32:
            out = ew.convert_element_type(ew.shift_right(out, 32 - width), _UINT_OF_WIDTH[width])
    return st.reshape(out, shape)


def bits(key: Array, shape: Shape = (), dtype=np.uint32) -> Array:
    """Uniformly random unsigned integers (all bits random)."""
    dtype = np.dtype(dtype)
    if dtype not in _UINT_OF_WIDTH.values():
        raise TypeError(f"random.bits: dtype must be an unsigned integer type, got {dtype}")
    return _bits(key, "bits", dtype.itemsize * 8, _shape(shape, "bits"))


# ---------------------------------------------------------------------------------------------
# Continuous distributions


def _float_dtype(dtype, api: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if not dtypes.is_float(dtype):
        raise TypeError(f"random.{api}: dtype must be a floating-point type, got {dtype}")
    return dtype


def _as_float(x, dtype: np.dtype):
    """A parameter (minval, p, ...) as an array of ``dtype`` (differentiable if traced)."""
    if dtypes.is_python_scalar(x) or isinstance(x, (np.generic, list, tuple)):
        return np.asarray(x, dtype)
    return ew.convert_element_type(x, dtype)


def _unit_interval(key, api: str, shape: tuple[int, ...], dtype: np.dtype):
    """Uniform floats in [0, 1): random mantissa bits under the exponent of 1.0, minus 1."""
    width = dtype.itemsize * 8
    uint = _UINT_OF_WIDTH[width]
    mantissa = ew.shift_right(_bits(key, api, width, shape), width - dtypes.finfo(dtype).nmant)
    one = np.ones((), dtype).view(uint)
    return ew.sub(ew.bitcast_convert_type(ew.bitwise_or(mantissa, one), dtype), 1)


def uniform(key: Array, shape: Shape = (), dtype=_DEFAULT_FLOAT, minval=0.0, maxval=1.0) -> Array:
    """Uniform floats in ``[minval, maxval)`` (bounds broadcast against ``shape``)."""
    dtype, shape = _float_dtype(dtype, "uniform"), _shape(shape, "uniform")
    lo, hi = _as_float(minval, dtype), _as_float(maxval, dtype)
    u = _unit_interval(key, "uniform", shape, dtype)
    x = ew.add(ew.mul(u, ew.sub(hi, lo)), lo)
    # Rounding can land on maxval; keep the interval half-open.
    x = ew.max(lo, ew.min(x, ew.nextafter(hi, lo)))
    return st.broadcast_to(x, shape)


def normal(key: Array, shape: Shape = (), dtype=_DEFAULT_FLOAT) -> Array:
    """Standard normal samples (Box-Muller; float16 is computed in float32)."""
    dtype, shape = _float_dtype(dtype, "normal"), _shape(shape, "normal")
    work = np.dtype(np.float32) if dtype.itemsize < 4 else dtype
    n = math.prod(shape)
    half = (n + 1) // 2
    u = _unit_interval(key, "normal", (2, half), work)
    u1, u2 = (st.reshape(st.slice(u, (i, 0), (i + 1, half)), (half,)) for i in range(2))
    radius = ew.sqrt(ew.mul(ew.log1p(ew.neg(u1)), -2))     # 1 - u1 is in (0, 1]
    angle = ew.mul(u2, 2 * math.pi)
    z = st.concatenate([ew.mul(radius, ew.cos(angle)), ew.mul(radius, ew.sin(angle))], 0)
    z = st.slice(z, (0,), (n,)) if n != 2 * half else z
    return ew.convert_element_type(st.reshape(z, shape), dtype)


def truncated_normal(key: Array, lower, upper, shape: Shape | None = None,
                     dtype=_DEFAULT_FLOAT) -> Array:
    """Standard normal samples conditioned on ``lower < x < upper`` (inverse CDF)."""
    dtype = _float_dtype(dtype, "truncated_normal")
    lo, hi = _as_float(lower, dtype), _as_float(upper, dtype)
    shape = _default_shape(shape, "truncated_normal", lo, hi)
    sqrt2 = math.sqrt(2)
    a, b = ew.erf(ew.div(lo, sqrt2)), ew.erf(ew.div(hi, sqrt2))
    u = uniform(key, shape, dtype, minval=a, maxval=b)
    x = ew.mul(ew.erf_inv(u), sqrt2)
    inf = np.asarray(np.inf, dtype)
    return ew.clamp(x, ew.nextafter(lo, inf), ew.nextafter(hi, -inf))


def _default_shape(shape, api: str, *params) -> tuple[int, ...]:
    broadcast = np.broadcast_shapes(*(core.get_aval(p).shape for p in params))
    if shape is None:
        return tuple(broadcast)
    shape = _shape(shape, api)
    if np.broadcast_shapes(shape, broadcast) != shape:
        raise ValueError(f"random.{api}: parameters of shape {broadcast} do not broadcast to "
                         f"shape {shape}")
    return shape


def gumbel(key: Array, shape: Shape = (), dtype=_DEFAULT_FLOAT) -> Array:
    """Standard Gumbel samples, ``-log(-log(u))``."""
    dtype, shape = _float_dtype(dtype, "gumbel"), _shape(shape, "gumbel")
    u = uniform(key, shape, dtype, minval=dtypes.finfo(dtype).tiny, maxval=1.0)
    return ew.neg(ew.log(ew.neg(ew.log(u))))


# ---------------------------------------------------------------------------------------------
# Discrete distributions


def bernoulli(key: Array, p=0.5, shape: Shape | None = None) -> Array:
    """Booleans that are True with probability ``p`` (e.g. a dropout keep mask)."""
    p_aval = core.get_aval(p)
    dtype = p_aval.dtype if dtypes.is_float(p_aval.dtype) and not p_aval.weak_type else _DEFAULT_FLOAT
    p = _as_float(p, dtype)
    shape = _default_shape(shape, "bernoulli", p)
    return ew.lt(uniform(key, shape, dtype), p)


def categorical(key: Array, logits, axis: int = -1, shape: Shape | None = None) -> Array:
    """Indices drawn with probabilities ``softmax(logits, axis)`` (the Gumbel-max trick).

    ``shape`` defaults to the batch shape of ``logits`` (its shape without ``axis``); a given
    ``shape`` must end with a shape the batch shape broadcasts to."""
    aval = core.get_aval(logits)
    if not dtypes.is_float(aval.dtype):
        logits, aval = _as_float(logits, _DEFAULT_FLOAT), aval.update(dtype=_DEFAULT_FLOAT)
    if aval.ndim == 0:
        raise ValueError("random.categorical: logits must have at least one axis")
    axis = axis % aval.ndim
    batch = aval.shape[:axis] + aval.shape[axis + 1:]
    shape = batch if shape is None else _shape(shape, "categorical")
    lead = len(shape) - len(batch)
    if lead < 0 or np.broadcast_shapes(shape[lead:], batch) != shape[lead:]:
        raise ValueError(f"random.categorical: logits with batch shape {batch} do not broadcast "
                         f"to shape {shape}")
    noise_shape = shape[:lead + axis] + (aval.shape[axis],) + shape[lead + axis:]
    scores = ew.add(gumbel(key, noise_shape, aval.dtype), logits)
    return reduction.argmax(scores, lead + axis, _DEFAULT_INT)


def _int_dtype(dtype, api: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if not dtypes.is_integer(dtype):
        raise TypeError(f"random.{api}: dtype must be an integer type, got {dtype}")
    return dtype


def randint(key: Array, shape: Shape, minval, maxval, dtype=_DEFAULT_INT) -> Array:
    """Uniform integers in ``[minval, maxval)`` (bounds clipped to ``dtype``'s range; an
    empty range gives ``minval``). Drawn from 64 random bits, so the modulo bias is at most
    ``(maxval - minval) / 2**64``."""
    dtype, shape = _int_dtype(dtype, "randint"), _shape(shape, "randint")
    info = dtypes.iinfo(dtype)
    wide = np.dtype(np.uint64) if dtype == np.uint64 else np.dtype(np.int64)

    def bound(v, top):
        if dtypes.is_python_scalar(v) or isinstance(v, np.generic):
            return np.asarray(min(max(int(v), info.min), top), wide)
        return ew.clamp(ew.convert_element_type(v, wide), info.min, top)

    # maxval may exceed the dtype by one, so that the dtype's largest value can be drawn.
    lo = bound(minval, info.max)
    hi = bound(maxval, info.max if dtype.itemsize == 8 else info.max + 1)
    lo64, hi64 = (ew.convert_element_type(v, np.uint64) for v in (lo, hi))
    span = ew.select(ew.gt(hi, lo), ew.sub(hi64, lo64), np.ones((), np.uint64))
    offset = ew.rem(_bits(key, "randint", 64, shape), span)
    return st.broadcast_to(ew.convert_element_type(ew.add(lo64, offset), dtype), shape)


def _sort_keys_rounds(n: int) -> int:
    """Shuffle rounds so that ties among 32-bit sort keys bias the result negligibly."""
    return max(1, math.ceil(3 * math.log2(max(n, 2)) / 32))


def _shuffled_indices(key, n: int, api: str):
    """A uniformly random permutation of ``arange(n)`` (int64): sort by random keys."""
    perm = st.iota(indexing.INDEX_DTYPE, n)
    for _ in range(_sort_keys_rounds(n)):
        key, sub = _split2(key, api)
        perm = indexing.sort([_bits(sub, api, 32, (n,)), perm], 0)[1]
    return perm


def _split2(key, api: str):
    words = threefry_bits(*_words(key, api), 4)
    return st.slice(words, (0,), (2,)), st.slice(words, (2,), (4,))


def _take(x, indices, axis: int):
    """``x`` indexed along ``axis`` by the 1-d integer array ``indices``."""
    n = core.get_aval(indices).shape[0]
    return moveaxis(indexing.gather(x, st.reshape(indices, (n, 1)), (axis,)), 0, axis)


def permutation(key: Array, x, axis: int = 0) -> Array:
    """A random permutation of ``arange(x)`` (int ``x``), or of ``x``'s entries along ``axis``."""
    if isinstance(x, (int, np.integer)):
        n = operator.index(x)
        return ew.convert_element_type(_shuffled_indices(key, n, "permutation"), _DEFAULT_INT)
    aval = core.get_aval(x)
    if aval.ndim == 0:
        raise TypeError("random.permutation: x must be an int or an array with at least one axis")
    axis = axis % aval.ndim
    return _take(x, _shuffled_indices(key, aval.shape[axis], "permutation"), axis)


def choice(key: Array, a, shape: Shape = (), replace: bool = True, p=None,
           axis: int = 0) -> Array:
    """Samples from ``arange(a)`` (int ``a``) or from ``a``'s entries along ``axis``, with or
    without replacement, uniformly or with probabilities ``p``."""
    shape = _shape(shape, "choice")
    if isinstance(a, (int, np.integer)):
        n, population = operator.index(a), None
    else:
        aval = core.get_aval(a)
        if aval.ndim == 0:
            raise TypeError("random.choice: a must be an int or an array with at least one axis")
        axis = axis % aval.ndim
        n, population = aval.shape[axis], a
    k = math.prod(shape)
    if n == 0 and k > 0:
        raise ValueError("random.choice: cannot take a non-empty sample from an empty population")
    if not replace and k > n:
        raise ValueError(f"random.choice: cannot take {k} samples without replacement from {n}")
    if p is not None:
        p_aval = core.get_aval(p)
        if p_aval.shape != (n,):
            raise ValueError(f"random.choice: p must have shape ({n},), got {p_aval.shape}")
        p = _as_float(p, p_aval.dtype if dtypes.is_float(p_aval.dtype) else _DEFAULT_FLOAT)
    if replace and p is None:
        idx = randint(key, (k,), 0, n, indexing.INDEX_DTYPE)
    elif replace:
        # Inverse CDF: the number of cumulative weights below r, for r uniform in (0, total].
        cdf = reduction.cumsum(p, 0)
        total = st.slice(cdf, (n - 1,), (n,))
        r = ew.mul(total, ew.sub(1, uniform(key, (k,), core.get_aval(p).dtype)))
        below = ew.lt(st.reshape(cdf, (1, n)), st.reshape(r, (k, 1)))
        idx = reduction.reduce_sum(ew.convert_element_type(below, indexing.INDEX_DTYPE), (1,))
    elif p is None:
        idx = st.slice(_shuffled_indices(key, n, "choice"), (0,), (k,))
    else:
        # Gumbel top-k: the k largest log p + Gumbel noise are a weighted sample without replacement.
        positive = ew.gt(p, 0)
        log_p = ew.select(positive, ew.log(ew.select(positive, p, ew.full_like(p, 1))),
                          ew.full_like(p, -np.inf))
        scores = ew.add(log_p, gumbel(key, (n,), core.get_aval(p).dtype))
        idx = st.slice(indexing.argsort(ew.neg(scores), 0), (0,), (k,))
    if population is None:
        return st.reshape(ew.convert_element_type(idx, _DEFAULT_INT), shape)
    out = _take(population, idx, axis)
    out_shape = core.get_aval(out).shape
    return st.reshape(out, out_shape[:axis] + shape + out_shape[axis + 1:])
