"""Workload 7: an LSTM (hidden 128, input 128, batch 32) over 100 steps, forward and backward:
value and gradient of mean(h_t**2 over all steps) w.r.t. (Wx, Wh, b). funcgrad and JAX use
``lax.scan``; funcgrad is also timed on the same cell in a Python loop (eager, and unrolled
under jit); autograd and PyTorch loop in Python; NumPy backpropagates through time by hand."""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..harness import Case, Workload, require
from .common import normal

STEPS, BATCH, FEATURES, HIDDEN = 100, 32, 128, 128
PARAMS = ("wx", "wh", "b")


def make_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    zeros = np.zeros((BATCH, HIDDEN), np.float32)
    return {"wx": normal(rng, (FEATURES, 4 * HIDDEN), 1 / np.sqrt(FEATURES)),
            "wh": normal(rng, (HIDDEN, 4 * HIDDEN), 1 / np.sqrt(HIDDEN)),
            "b": normal(rng, (4 * HIDDEN,), 0.1),
            "xs": normal(rng, (STEPS, BATCH, FEATURES)),
            "h0": zeros, "c0": zeros.copy()}


def params_of(inputs) -> list[np.ndarray]:
    return [inputs[name] for name in PARAMS]


def cell(xp: Any, sigmoid: Callable, params, carry, x):
    """One LSTM step; gates in the order input, forget, candidate, output."""
    wx, wh, b = params
    h, c = carry
    z = x @ wx + h @ wh + b
    i, f = sigmoid(z[:, :HIDDEN]), sigmoid(z[:, HIDDEN:2 * HIDDEN])
    g, o = xp.tanh(z[:, 2 * HIDDEN:3 * HIDDEN]), sigmoid(z[:, 3 * HIDDEN:])
    c = f * c + i * g
    h = o * xp.tanh(c)
    return (h, c), h


def scan_loss(xp: Any, lax: Any, params, xs, h0, c0):
    _, hs = lax.scan(functools.partial(cell, xp, lax.logistic, params), (h0, c0), xs)
    return xp.mean(hs ** 2)


def loop_loss(xp: Any, sigmoid: Callable, params, xs, h0, c0):
    carry, hs = (h0, c0), []
    for x in xs:
        carry, h = cell(xp, sigmoid, params, carry, x)
        hs.append(h)
    return xp.mean(xp.stack(hs) ** 2)


def numpy_(inputs):
    (wx, wh, b), xs, h0, c0 = params_of(inputs), inputs["xs"], inputs["h0"], inputs["c0"]
    steps, batch, features = xs.shape
    hid = HIDDEN

    def run():
        xw = (xs.reshape(-1, features) @ wx).reshape(steps, batch, 4 * hid)
        hs = np.empty((steps + 1, batch, hid), np.float32)
        cs = np.empty_like(hs)
        tanh_cs = np.empty((steps, batch, hid), np.float32)
        gates = np.empty((steps, batch, 4 * hid), np.float32)
        hs[0], cs[0] = h0, c0
        for t in range(steps):
            z = xw[t] + hs[t] @ wh + b
            gate = gates[t]
            gate[:, :2 * hid] = 1 / (1 + np.exp(-z[:, :2 * hid]))
            gate[:, 2 * hid:3 * hid] = np.tanh(z[:, 2 * hid:3 * hid])
            gate[:, 3 * hid:] = 1 / (1 + np.exp(-z[:, 3 * hid:]))
            i, f, g, o = np.split(gate, 4, axis=1)
            cs[t + 1] = f * cs[t] + i * g
            tanh_cs[t] = np.tanh(cs[t + 1])
            hs[t + 1] = o * tanh_cs[t]
        value = np.mean(hs[1:] ** 2)

        dhs = 2 * hs[1:] / hs[1:].size
        dz = np.empty_like(gates)
        dh = np.zeros((batch, hid), np.float32)
        dc = np.zeros((batch, hid), np.float32)
        for t in reversed(range(steps)):
            i, f, g, o = np.split(gates[t], 4, axis=1)
            dh = dh + dhs[t]
            dc = dc + dh * o * (1 - tanh_cs[t] ** 2)
            dz[t] = np.concatenate([dc * g * i * (1 - i), dc * cs[t] * f * (1 - f),
                                    dc * i * (1 - g * g), dh * tanh_cs[t] * o * (1 - o)], axis=1)
            dc = dc * f
            dh = dz[t] @ wh.T
        dz_flat = dz.reshape(-1, 4 * hid)
        return value, [xs.reshape(-1, features).T @ dz_flat,
                       hs[:-1].reshape(-1, hid).T @ dz_flat, dz_flat.sum(axis=0)]
    return run


def _funcgrad_scan_loss():
    import funcgrad
    import funcgrad.numpy as fnp
    require(funcgrad, "lax.scan")
    return functools.partial(scan_loss, fnp, funcgrad.lax)


def _funcgrad_loop_loss():
    import funcgrad
    import funcgrad.numpy as fnp
    return functools.partial(loop_loss, fnp, funcgrad.lax.logistic)


def _funcgrad_variant(make_loss, jit: bool):
    def build(inputs):
        import funcgrad
        vg = funcgrad.value_and_grad(make_loss())
        if jit:
            vg = require(funcgrad, "jit")(vg)
        args = (params_of(inputs), inputs["xs"], inputs["h0"], inputs["c0"])
        return lambda: vg(*args)
    return build


def autograd_loop(inputs):
    import autograd
    import autograd.numpy as anp
    from autograd.scipy.special import expit
    vg = autograd.value_and_grad(functools.partial(loop_loss, anp, expit))
    args = (params_of(inputs), inputs["xs"], inputs["h0"], inputs["c0"])
    return lambda: vg(*args)


def jax_jit(inputs):
    import jax
    import jax.numpy as jnp
    vg = jax.jit(jax.value_and_grad(functools.partial(scan_loss, jnp, jax.lax)))
    args = jax.device_put((params_of(inputs), inputs["xs"], inputs["h0"], inputs["c0"]))
    return lambda: jax.block_until_ready(vg(*args))


def torch_loop(inputs):
    import torch
    params = [torch.from_numpy(p).requires_grad_() for p in params_of(inputs)]
    xs, h0, c0 = (torch.from_numpy(inputs[k]) for k in ("xs", "h0", "c0"))

    def run():
        value = loop_loss(torch, torch.sigmoid, params, xs, h0, c0)
        return value.detach(), list(torch.autograd.grad(value, params))
    return run


WORKLOAD = Workload(
    "lstm_scan", "LSTM hidden 128, batch 32, 100 steps, forward + backward",
    (Case("lstm_100_steps", make_inputs,
          {"funcgrad.jit": _funcgrad_variant(_funcgrad_scan_loss, jit=True),
           "funcgrad": _funcgrad_variant(_funcgrad_scan_loss, jit=False),
           "funcgrad.jit.loop": _funcgrad_variant(_funcgrad_loop_loss, jit=True),
           "funcgrad.loop": _funcgrad_variant(_funcgrad_loop_loss, jit=False),
           "numpy": numpy_, "autograd.loop": autograd_loop, "jax.jit": jax_jit,
           "torch.loop": torch_loop}, tol=1e-3),))
