"""Optimizers as composable, stateless gradient transformations (optax's shape).

A :class:`GradientTransformation` is a pair of pure functions::

    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = apply_updates(params, updates)

so optimizer state is an explicit pytree that ``jit`` and checkpoints handle like params.
Every optimizer takes a float learning rate or a schedule (``step -> lr``).

The classic update rules follow the course material exactly (``lr`` = learning rate,
``dx`` = gradient); the tests check three hand-computed steps of each:

=========  ==========================================================================
momentum   ``v = mu*v - lr*dx;  x += v``
nesterov   ``v_prev = v;  v = mu*v - lr*dx;  x += -mu*v_prev + (1 + mu)*v``
adagrad    ``cache += dx**2;  x -= lr*dx / (sqrt(cache) + eps)``
rmsprop    ``cache = decay*cache + (1 - decay)*dx**2;  x -= lr*dx / (sqrt(cache) + eps)``
adam       ``m = b1*m + (1-b1)*dx;  v = b2*v + (1-b2)*dx**2;  t += 1``
           ``x -= lr * (m/(1-b1**t)) / (sqrt(v/(1-b2**t)) + eps)``
=========  ==========================================================================

Defaults, and how they compare (``eps`` is always added *after* the square root here):

* momentum / nesterov: ``mu=0.9``.
* adagrad: ``eps=1e-7``, cache starting at 0, as the course (optax: the same eps, but the
  accumulator starts at 0.1).
* rmsprop: ``decay=0.99, eps=1e-8``, as the course and PyTorch (optax: ``decay=0.9`` and
  eps *inside* the square root, ``dx / sqrt(cache + eps)``).
* adam / adamw: ``b1=0.9, b2=0.999, eps=1e-8``, as the paper, the course, optax and
  PyTorch; adamw's ``weight_decay=1e-4`` multiplies the parameters, decoupled from the
  gradient statistics, and is scaled by the learning rate (optax's convention).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

import funcgrad.numpy as fnp
from funcgrad.tree_util import tree_leaves, tree_map

from .schedules import Schedule, as_schedule

Params = Any
Updates = Any
OptState = Any


class GradientTransformation(NamedTuple):
    init: Callable[[Params], OptState]
    update: Callable[..., tuple[Updates, OptState]]


class EmptyState(NamedTuple):
    pass


class CountState(NamedTuple):
    count: Any


def _zeros_like_tree(params):
    return tree_map(fnp.zeros_like, params)


def _count0():
    return np.zeros((), np.int32)


def _state_error(name: str, expected: str, state) -> TypeError:
    return TypeError(f"{name}.update: expected {expected} that {name}'s init returns, got "
                     f"{type(state).__name__} (another optimizer's state?)")


def _check_state(name: str, state, expected: type) -> None:
    """``state`` must be what ``name``'s own ``init`` made (not another optimizer's)."""
    if not isinstance(state, expected):
        raise _state_error(name, f"the {expected.__name__}", state)


def apply_updates(params: Params, updates: Updates) -> Params:
    """``params + updates``, leaf by leaf, keeping each parameter's dtype."""
    return tree_map(lambda p, u: fnp.asarray(p + u, dtype=fnp.asarray(p).dtype) if u is not None else p,
                    params, updates)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply transformations in order; the state is the tuple of their states."""

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        if type(state) is not tuple or len(state) != len(transforms):
            raise _state_error("chain", f"the tuple of {len(transforms)} states", state)
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


# ---------------------------------------------------------------------------------------------
# Building blocks


def scale(step_size: float) -> GradientTransformation:
    """Multiply updates by a constant."""
    return GradientTransformation(lambda p: EmptyState(),
                                  lambda u, s, p=None: (tree_map(lambda g: g * step_size, u), s))


def scale_by_schedule(schedule: Schedule) -> GradientTransformation:
    """Multiply updates by ``schedule(count)``; count starts at 0."""
    schedule = as_schedule(schedule)

    def update(updates, state, params=None):
        _check_state("scale_by_schedule", state, CountState)
        factor = schedule(state.count)
        return tree_map(lambda g: g * fnp.asarray(factor, fnp.asarray(g).dtype), updates), CountState(state.count + 1)

    return GradientTransformation(lambda p: CountState(_count0()), update)


def scale_by_learning_rate(learning_rate: float | Schedule) -> GradientTransformation:
    """``-lr * updates`` (descent)."""
    if callable(learning_rate):
        return scale_by_schedule(lambda count: -learning_rate(count))
    return scale(-learning_rate)


class ScaleByAdamState(NamedTuple):
    count: Any
    mu: Any
    nu: Any


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adam's bias-corrected ``m_hat / (sqrt(v_hat) + eps)``."""

    def init(params):
        return ScaleByAdamState(_count0(), _zeros_like_tree(params), _zeros_like_tree(params))

    def update(updates, state, params=None):
        _check_state("scale_by_adam", state, ScaleByAdamState)
        count = state.count + 1
        mu = tree_map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.mu)
        nu = tree_map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
        t = fnp.asarray(count, np.float64)
        c1, c2 = 1 - fnp.power(b1, t), 1 - fnp.power(b2, t)

        def step(m, v):
            dt = fnp.asarray(m).dtype
            return (m / fnp.asarray(c1, dt)) / (fnp.sqrt(v / fnp.asarray(c2, dt)) + eps)

        return tree_map(step, mu, nu), ScaleByAdamState(count, mu, nu)

    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay: float, mask: Callable[[Params], Any] | None = None
                        ) -> GradientTransformation:
    """``updates + weight_decay * params`` (decoupled weight decay when chained before the
    learning-rate scaling, as AdamW). ``mask(params)`` may select which leaves decay."""

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("add_decayed_weights needs params: call update(grads, state, params)")
        m = mask(params) if mask is not None else tree_map(lambda _: True, params)
        return tree_map(lambda g, p, keep: g + weight_decay * p if keep else g, updates, params, m), state

    return GradientTransformation(lambda p: EmptyState(), update)


def clip(max_delta: float) -> GradientTransformation:
    """Clip every update element to ``[-max_delta, max_delta]``."""
    return GradientTransformation(lambda p: EmptyState(),
                                  lambda u, s, p=None: (tree_map(lambda g: fnp.clip(g, -max_delta, max_delta), u), s))


def global_norm(tree) -> Any:
    """``sqrt(sum of squares)`` over all leaves."""
    return fnp.sqrt(sum(fnp.sum(fnp.square(x)) for x in tree_leaves(tree)))


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scale all updates by ``min(1, max_norm / global_norm)``."""

    def update(updates, state, params=None):
        norm = global_norm(updates)
        factor = fnp.where(norm > max_norm, max_norm / fnp.maximum(norm, 1e-30), 1.0)
        return tree_map(lambda g: g * fnp.asarray(factor, fnp.asarray(g).dtype), updates), state

    return GradientTransformation(lambda p: EmptyState(), update)


# ---------------------------------------------------------------------------------------------
# The classic optimizers (course forms)


class VelocityState(NamedTuple):
    count: Any
    velocity: Any


def _lr(learning_rate, count, like):
    return fnp.asarray(as_schedule(learning_rate)(count), fnp.asarray(like).dtype)


def sgd(learning_rate: float | Schedule) -> GradientTransformation:
    """Vanilla SGD: ``x -= lr * dx``."""
    return chain(scale_by_learning_rate(learning_rate))


def momentum(learning_rate: float | Schedule, mu: float = 0.9) -> GradientTransformation:
    """SGD with momentum: ``v = mu*v - lr*dx; x += v``."""

    def update(grads, state, params=None):
        _check_state("momentum", state, VelocityState)
        v = tree_map(lambda g, v: mu * v - _lr(learning_rate, state.count, g) * g, grads, state.velocity)
        return v, VelocityState(state.count + 1, v)

    return GradientTransformation(lambda p: VelocityState(_count0(), _zeros_like_tree(p)), update)


def nesterov(learning_rate: float | Schedule, mu: float = 0.9) -> GradientTransformation:
    """Nesterov momentum: ``v_prev = v; v = mu*v - lr*dx; x += -mu*v_prev + (1+mu)*v``."""

    def update(grads, state, params=None):
        _check_state("nesterov", state, VelocityState)
        v = tree_map(lambda g, v: mu * v - _lr(learning_rate, state.count, g) * g, grads, state.velocity)
        updates = tree_map(lambda vp, vn: -mu * vp + (1 + mu) * vn, state.velocity, v)
        return updates, VelocityState(state.count + 1, v)

    return GradientTransformation(lambda p: VelocityState(_count0(), _zeros_like_tree(p)), update)


class CacheState(NamedTuple):
    count: Any
    cache: Any


def adagrad(learning_rate: float | Schedule, eps: float = 1e-7) -> GradientTransformation:
    """AdaGrad: ``cache += dx**2; x -= lr*dx/(sqrt(cache) + eps)``."""

    def update(grads, state, params=None):
        _check_state("adagrad", state, CacheState)
        cache = tree_map(lambda g, c: c + g * g, grads, state.cache)
        updates = tree_map(lambda g, c: -_lr(learning_rate, state.count, g) * g / (fnp.sqrt(c) + eps), grads, cache)
        return updates, CacheState(state.count + 1, cache)

    return GradientTransformation(lambda p: CacheState(_count0(), _zeros_like_tree(p)), update)


def rmsprop(learning_rate: float | Schedule, decay: float = 0.99, eps: float = 1e-8) -> GradientTransformation:
    """RMSProp: ``cache = decay*cache + (1-decay)*dx**2; x -= lr*dx/(sqrt(cache) + eps)``."""

    def update(grads, state, params=None):
        _check_state("rmsprop", state, CacheState)
        cache = tree_map(lambda g, c: decay * c + (1 - decay) * g * g, grads, state.cache)
        updates = tree_map(lambda g, c: -_lr(learning_rate, state.count, g) * g / (fnp.sqrt(c) + eps), grads, cache)
        return updates, CacheState(state.count + 1, cache)

    return GradientTransformation(lambda p: CacheState(_count0(), _zeros_like_tree(p)), update)


def adam(learning_rate: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> GradientTransformation:
    """Adam with bias correction."""
    return chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adamw(learning_rate: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 1e-4, mask=None) -> GradientTransformation:
    """Adam with decoupled weight decay: ``x -= lr * (adam_step + weight_decay * x)``."""
    return chain(scale_by_adam(b1, b2, eps), add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))


# ---------------------------------------------------------------------------------------------
# Parameter averaging


class AveragerState(NamedTuple):
    count: Any
    average: Any


class ParamAverager(NamedTuple):
    """``state = avg.init(params)``; after each step ``state = avg.update(params, state)``;
    the averaged parameters are ``state.average``."""
    init: Callable[[Params], AveragerState]
    update: Callable[[Params, AveragerState], AveragerState]


def polyak_averaging() -> ParamAverager:
    """The running arithmetic mean of the parameter iterates (Polyak-Ruppert)."""

    def update(params, state):
        n = state.count + 1
        avg = tree_map(lambda a, p: a + (p - a) / fnp.asarray(n, fnp.asarray(p).dtype), state.average, params)
        return AveragerState(n, avg)

    return ParamAverager(lambda p: AveragerState(_count0(), tree_map(fnp.array, p)), update)


def ema(decay: float = 0.999) -> ParamAverager:
    """Exponential moving average of the parameters: ``avg = decay*avg + (1-decay)*params``."""
    if not 0 <= decay < 1:
        raise ValueError(f"ema: decay must be in [0, 1), got {decay}")

    def update(params, state):
        avg = tree_map(lambda a, p: decay * a + (1 - decay) * p, state.average, params)
        return AveragerState(state.count + 1, avg)

    return ParamAverager(lambda p: AveragerState(_count0(), tree_map(fnp.array, p)), update)


OPTIMIZERS = {"sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adagrad": adagrad,
              "rmsprop": rmsprop, "adam": adam, "adamw": adamw}
