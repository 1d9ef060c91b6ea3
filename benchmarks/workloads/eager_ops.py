"""Workload 1: eager per-op overhead. One call of a unary op, a binary op with broadcasting and
a reduction on a 16x16 float32 array: the arithmetic is negligible, so this is the price of
calling the library from Python."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..harness import Case, Workload

SHAPE = (16, 16)


def make_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal(SHAPE, dtype=np.float32),
            "b": rng.standard_normal(SHAPE[-1:], dtype=np.float32)}


OPS: dict[str, Callable[[Any, Any, Any], Any]] = {
    "unary_tanh": lambda xp, x, b: xp.tanh(x),
    "binary_add_broadcast": lambda xp, x, b: xp.add(x, b),
    "reduce_sum_axis0": lambda xp, x, b: xp.sum(x, axis=0),
}


def _case(name: str, op: Callable) -> Case:
    def funcgrad_(inputs):
        import funcgrad.numpy as fnp
        x, b = inputs["x"], inputs["b"]
        return lambda: op(fnp, x, b)

    def numpy_(inputs):
        x, b = inputs["x"], inputs["b"]
        return lambda: op(np, x, b)

    def autograd_(inputs):
        import autograd.numpy as anp
        x, b = inputs["x"], inputs["b"]
        return lambda: op(anp, x, b)

    def jax_(inputs):
        import jax.numpy as jnp
        x, b = jnp.asarray(inputs["x"]), jnp.asarray(inputs["b"])
        return lambda: op(jnp, x, b).block_until_ready()

    def torch_(inputs):
        import torch
        x, b = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["b"])
        return lambda: op(torch, x, b)

    return Case(name, make_inputs, {"funcgrad": funcgrad_, "numpy": numpy_,
                                    "autograd": autograd_, "jax": jax_, "torch": torch_})


WORKLOAD = Workload(
    "eager_ops", "eager per-op overhead on a 16x16 float32 array",
    tuple(_case(name, op) for name, op in OPS.items()))
