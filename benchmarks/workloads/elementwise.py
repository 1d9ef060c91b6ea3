"""Workload 3: value and gradient of an elementwise chain on 4M float32 values,
f(x) = sum(tanh(x) * sigmoid(x) + 0.5 * x**2). Memory-bound: the floor is one read of x and
one write of the gradient, which only fusion reaches."""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..harness import Case, Workload, require

SIZE = 4 * 1024 * 1024


def f(xp: Any, sigmoid: Callable, x: Any) -> Any:
    return xp.sum(xp.tanh(x) * sigmoid(x) + 0.5 * x ** 2)


def make_inputs() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(3).standard_normal(SIZE, dtype=np.float32)}


def _funcgrad_value_and_grad():
    import funcgrad
    import funcgrad.numpy as fnp
    return funcgrad.value_and_grad(functools.partial(f, fnp, funcgrad.lax.logistic))


def funcgrad_eager(inputs):
    vg, x = _funcgrad_value_and_grad(), inputs["x"]
    return lambda: vg(x)


def funcgrad_jit(inputs):
    import funcgrad
    vg, x = require(funcgrad, "jit")(_funcgrad_value_and_grad()), inputs["x"]
    return lambda: vg(x)


def numpy_(inputs):
    x = inputs["x"]

    def run():
        t = np.tanh(x)
        s = 1 / (1 + np.exp(-x))
        value = np.sum(t * s + 0.5 * x ** 2)
        return value, (1 - t * t) * s + t * s * (1 - s) + x
    return run


def autograd_(inputs):
    import autograd
    import autograd.numpy as anp
    from autograd.scipy.special import expit
    vg, x = autograd.value_and_grad(functools.partial(f, anp, expit)), inputs["x"]
    return lambda: vg(x)


def jax_jit(inputs):
    import jax
    import jax.numpy as jnp
    vg = jax.jit(jax.value_and_grad(functools.partial(f, jnp, jax.nn.sigmoid)))
    x = jnp.asarray(inputs["x"])
    return lambda: jax.block_until_ready(vg(x))


def torch_(inputs):
    import torch
    x = torch.from_numpy(inputs["x"]).requires_grad_()

    def run():
        value = f(torch, torch.sigmoid, x)
        (grad,) = torch.autograd.grad(value, x)
        return value.detach(), grad
    return run


WORKLOAD = Workload(
    "elementwise_grad", "value_and_grad of sum(tanh(x)*sigmoid(x) + 0.5*x**2), 4M float32",
    (Case("tanh_sigmoid_4M", make_inputs,
          {"funcgrad.jit": funcgrad_jit, "funcgrad": funcgrad_eager, "numpy": numpy_,
           "autograd": autograd_, "jax.jit": jax_jit, "torch": torch_}),))
