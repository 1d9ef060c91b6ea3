"""Learning-rate schedules: functions ``step -> value`` that work on Python ints and on
traced step counters (inside ``jit``); optimizers accept them as learning rates.

Caffe's names are noted where the rule is Caffe's: "fixed" (constant), "step", "exp",
"inv", "multistep" (piecewise_constant).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping

import funcgrad.numpy as fnp

Schedule = Callable[[object], object]


def constant(value: float) -> Schedule:
    """Caffe "fixed"."""
    return lambda step: value


def step_decay(base_lr: float, gamma: float, step_size: int) -> Schedule:
    """Caffe "step": ``base_lr * gamma ** floor(step / step_size)``."""
    if step_size <= 0:
        raise ValueError(f"step_decay: step_size must be positive, got {step_size}")
    return lambda step: base_lr * fnp.power(gamma, fnp.floor_divide(step, step_size))


def exponential_decay(init_value: float, decay_rate: float, transition_steps: int = 1,
                      staircase: bool = False) -> Schedule:
    """``init * decay_rate ** (step / transition_steps)`` (floored with ``staircase``).
    Caffe "exp" is ``transition_steps=1``."""
    if transition_steps <= 0:
        raise ValueError("exponential_decay: transition_steps must be positive")

    def schedule(step):
        p = fnp.true_divide(step, transition_steps)
        return init_value * fnp.power(decay_rate, fnp.floor(p) if staircase else p)
    return schedule


def inverse_time_decay(init_value: float, gamma: float, power: float = 1.0) -> Schedule:
    """Caffe "inv": ``init * (1 + gamma * step) ** -power``; ``power=1`` is the 1/t decay."""
    return lambda step: init_value * fnp.power(1.0 + gamma * fnp.asarray(step, float), -power)


def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """Cosine from ``init_value`` to ``alpha * init_value`` over ``decay_steps``, then flat."""
    if decay_steps <= 0:
        raise ValueError("cosine_decay: decay_steps must be positive")

    def schedule(step):
        t = fnp.minimum(fnp.asarray(step, float), decay_steps) / decay_steps
        return init_value * ((1 - alpha) * 0.5 * (1 + fnp.cos(math.pi * t)) + alpha)
    return schedule


def linear_warmup(schedule: Schedule, warmup_steps: int, init_value: float = 0.0) -> Schedule:
    """Ramp linearly from ``init_value`` to ``schedule(warmup_steps)``, then follow
    ``schedule(step)``."""
    if warmup_steps <= 0:
        return schedule

    def warm(step):
        s = fnp.asarray(step, float)
        peak = schedule(warmup_steps)
        ramp = init_value + (peak - init_value) * s / warmup_steps
        return fnp.where(s < warmup_steps, ramp, schedule(step))
    return warm


def piecewise_constant(init_value: float, boundaries_and_scales: Mapping[int, float]) -> Schedule:
    """Caffe "multistep": multiply by ``scale`` once ``step >= boundary``, for each pair."""
    pairs = sorted(boundaries_and_scales.items())

    def schedule(step):
        value = init_value
        for boundary, scale in pairs:
            value = value * fnp.where(fnp.asarray(step) >= boundary, scale, 1.0)
        return value
    return schedule


def linear(init_value: float, end_value: float, transition_steps: int) -> Schedule:
    """From ``init_value`` to ``end_value`` linearly over ``transition_steps``, then flat."""
    if transition_steps <= 0:
        raise ValueError("linear: transition_steps must be positive")

    def schedule(step):
        frac = fnp.minimum(fnp.asarray(step, float), transition_steps) / transition_steps
        return init_value + (end_value - init_value) * frac
    return schedule


class ReduceLROnPlateau:
    """Host-side helper: call ``update(metric)`` once per epoch; ``scale`` drops by
    ``factor`` after more than ``patience`` epochs without improvement (relative
    ``threshold``), then waits ``cooldown`` epochs. Feed the scale to the jitted step as an
    argument and multiply the updates by it (a traced value: no recompilation)."""

    def __init__(self, factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 mode: str = "min", min_scale: float = 0.0, cooldown: int = 0):
        if mode not in ("min", "max"):
            raise ValueError("ReduceLROnPlateau: mode must be 'min' or 'max'")
        if not 0 < factor < 1:
            raise ValueError("ReduceLROnPlateau: factor must be in (0, 1)")
        self.factor, self.patience, self.threshold = factor, patience, threshold
        self.mode, self.min_scale, self.cooldown = mode, min_scale, cooldown
        self.scale = 1.0
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self._cooldown_left = 0

    def _improved(self, metric: float) -> bool:
        if self.mode == "min":
            return metric < self.best - self.threshold * abs(self.best) if math.isfinite(self.best) else True
        return metric > self.best + self.threshold * abs(self.best) if math.isfinite(self.best) else True

    def update(self, metric: float) -> float:
        metric = float(metric)
        if self._improved(metric):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        if self._cooldown_left > 0:
            self._cooldown_left -= 1
            self.bad_epochs = 0
        elif self.bad_epochs > self.patience:
            self.scale = max(self.scale * self.factor, self.min_scale)
            self._cooldown_left = self.cooldown
            self.bad_epochs = 0
        return self.scale


def as_schedule(value: float | Schedule) -> Schedule:
    """A schedule from a schedule or a constant."""
    return value if callable(value) else constant(value)


__all__ = ["constant", "step_decay", "exponential_decay", "inverse_time_decay", "cosine_decay",
           "linear_warmup", "piecewise_constant", "linear", "ReduceLROnPlateau", "as_schedule",
           "Schedule"]
