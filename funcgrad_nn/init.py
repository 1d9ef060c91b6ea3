"""Parameter initializers: functions ``init(key, shape, dtype) -> array``.

``zeros`` and ``ones`` are initializers; the others are factories taking their
hyperparameters (``normal(0.01)``, ``he_normal()``); :func:`get` accepts either by name.
Fans follow the layouts funcgrad_nn uses: a dense kernel is ``(in, out)``; a conv kernel is
``(out_channels, in_channels // groups, *window)`` (OIHW), whose receptive field multiplies
both fans (fan_in = I*kh*kw, fan_out = O*kh*kw), as in PyTorch and the course material.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

import funcgrad.numpy as fnp
from funcgrad import random

Initializer = Callable[..., object]


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a kernel: 2-D shapes are dense ``(in, out)``; higher ranks
    are conv kernels ``(out, in, *window)``; a vector's fans are its length."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def constant(value: float) -> Initializer:
    """Every element ``value``."""
    def init(key, shape, dtype=np.float32):
        return fnp.full(shape, value, dtype)
    return init


def zeros(key, shape, dtype=np.float32):
    """All zeros (the usual bias initializer)."""
    return fnp.zeros(shape, dtype)


def ones(key, shape, dtype=np.float32):
    """All ones."""
    return fnp.ones(shape, dtype)


def normal(stddev: float = 1e-2) -> Initializer:
    """N(0, stddev**2): the course's ``weight_scale * randn``."""
    def init(key, shape, dtype=np.float32):
        return random.normal(key, shape, dtype) * stddev
    return init


def uniform(scale: float = 1e-2) -> Initializer:
    """U(-scale, scale)."""
    def init(key, shape, dtype=np.float32):
        return random.uniform(key, shape, dtype, -scale, scale)
    return init


def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """Zero-mean values of variance ``scale / n``, n = fan_in, fan_out or their average,
    from a normal, a normal truncated at two standard deviations (rescaled to keep the
    variance), or a uniform distribution."""
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"variance_scaling: unknown mode {mode!r}")
    if distribution not in ("normal", "truncated_normal", "uniform"):
        raise ValueError(f"variance_scaling: unknown distribution {distribution!r}")

    def init(key, shape, dtype=np.float32):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        var = scale / max(n, 1)
        if distribution == "uniform":
            limit = math.sqrt(3 * var)
            return random.uniform(key, shape, dtype, -limit, limit)
        if distribution == "truncated_normal":
            std = math.sqrt(var) / 0.87962566103423978  # std of N(0,1) truncated to [-2, 2]
            return random.truncated_normal(key, -2.0, 2.0, shape, dtype) * std
        return random.normal(key, shape, dtype) * math.sqrt(var)
    return init


def glorot_normal() -> Initializer:
    """Xavier/Glorot normal: var = 2 / (fan_in + fan_out)."""
    return variance_scaling(1.0, "fan_avg", "normal")


def glorot_uniform() -> Initializer:
    """Xavier/Glorot uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    return variance_scaling(1.0, "fan_avg", "uniform")


def he_normal() -> Initializer:
    """He/Kaiming normal (for ReLU): var = 2 / fan_in."""
    return variance_scaling(2.0, "fan_in", "normal")


def he_uniform() -> Initializer:
    """He/Kaiming uniform: U(-a, a) with a = sqrt(6 / fan_in)."""
    return variance_scaling(2.0, "fan_in", "uniform")


def lecun_normal() -> Initializer:
    """LeCun normal: var = 1 / fan_in."""
    return variance_scaling(1.0, "fan_in", "normal")


def lecun_uniform() -> Initializer:
    """LeCun uniform: U(-a, a) with a = sqrt(3 / fan_in)."""
    return variance_scaling(1.0, "fan_in", "uniform")


xavier_normal, xavier_uniform = glorot_normal, glorot_uniform
kaiming_normal, kaiming_uniform = he_normal, he_uniform


def orthogonal(scale: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix over the flattened ``(rows, prod(rest))`` view."""
    def init(key, shape, dtype=np.float32):
        if len(shape) < 2:
            raise ValueError(f"orthogonal: needs a shape of rank >= 2, got {tuple(shape)}")
        rows, cols = shape[0], math.prod(shape[1:])
        a = random.normal(key, (max(rows, cols), min(rows, cols)), np.float64)
        q, r = fnp.linalg.qr(a)
        q = q * fnp.sign(fnp.diagonal(r))        # uniform over the orthogonal group
        if rows < cols:
            q = q.T
        return fnp.reshape(q * scale, shape).astype(dtype)
    return init


INITIALIZERS = {"zeros": lambda: zeros, "ones": lambda: ones, "normal": normal, "uniform": uniform,
                "glorot_normal": glorot_normal, "glorot_uniform": glorot_uniform,
                "xavier_normal": glorot_normal, "xavier_uniform": glorot_uniform,
                "he_normal": he_normal, "he_uniform": he_uniform, "kaiming_normal": he_normal,
                "kaiming_uniform": he_uniform, "lecun_normal": lecun_normal,
                "lecun_uniform": lecun_uniform, "orthogonal": orthogonal}


def get(name_or_fn) -> Initializer:
    """An initializer from a name (``"he_normal"``) or pass a callable through."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return INITIALIZERS[name_or_fn]()
    except KeyError:
        raise ValueError(f"unknown initializer {name_or_fn!r}; choose from {sorted(INITIALIZERS)}") from None
