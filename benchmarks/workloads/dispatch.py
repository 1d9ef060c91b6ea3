"""Workload 2: dispatch. A function of 50 small elementwise ops on a length-16 float32 array,
called over and over: under ``jit`` this measures the cached-call path (flatten, look up,
run, unflatten); eagerly it measures 50 op dispatches."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..harness import Case, Workload, require

LENGTH = 16


def fifty_ops(xp: Any, x: Any) -> Any:
    """50 elementwise ops (5 per iteration), every one a library call, values kept in (-1, 1)."""
    for _ in range(10):
        x = xp.multiply(xp.sin(x), 0.9)
        x = xp.add(x, 0.1)
        x = xp.subtract(xp.tanh(x), 0.05)
    return x


def make_inputs() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(2).standard_normal(LENGTH, dtype=np.float32)}


def funcgrad_jit(inputs):
    import funcgrad
    import funcgrad.numpy as fnp
    f = require(funcgrad, "jit")(functools.partial(fifty_ops, fnp))
    x = inputs["x"]
    return lambda: f(x)


def funcgrad_eager(inputs):
    import funcgrad.numpy as fnp
    x = inputs["x"]
    return lambda: fifty_ops(fnp, x)


def numpy_(inputs):
    x = inputs["x"]
    return lambda: fifty_ops(np, x)


def autograd_(inputs):
    import autograd.numpy as anp
    x = inputs["x"]
    return lambda: fifty_ops(anp, x)


def jax_jit(inputs):
    import jax
    import jax.numpy as jnp
    f = jax.jit(functools.partial(fifty_ops, jnp))
    x = jnp.asarray(inputs["x"])
    return lambda: f(x).block_until_ready()


def torch_(inputs):
    import torch
    x = torch.from_numpy(inputs["x"])
    return lambda: fifty_ops(torch, x)


WORKLOAD = Workload(
    "dispatch", "50 small elementwise ops on a length-16 float32 array, per call",
    (Case("fifty_ops", make_inputs,
          {"funcgrad.jit": funcgrad_jit, "funcgrad": funcgrad_eager, "numpy": numpy_,
           "autograd": autograd_, "jax.jit": jax_jit, "torch": torch_}, tol=1e-5),))
