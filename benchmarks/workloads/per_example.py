"""Workload 5: per-example gradients of the MLP of workload 4 (batch 128): the gradient of
each example's own loss with respect to every parameter, stacked (128 x 670k floats). Written
as vmap(grad) where the library has it; NumPy by hand uses batched outer products, autograd a
loop over the examples (and funcgrad.jit_loop a loop of jitted single-example gradients);
numpy.floor writes into reused buffers, the memory-traffic floor of the result."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..harness import Case, Workload, require
from .common import torch_xent, xent
from .mlp import logits, make_inputs, numpy_backprop, params_of, torch_logits


def example_loss(xp: Any, params, x, y):
    """The loss of one example (x: (784,), y: (10,))."""
    return xent(xp, logits(xp, params, x), y)


def _funcgrad_per_example():
    import funcgrad
    import funcgrad.numpy as fnp
    return funcgrad.vmap(funcgrad.grad(functools.partial(example_loss, fnp)), in_axes=(None, 0, 0))


def funcgrad_eager(inputs):
    f, params, x, y = _funcgrad_per_example(), params_of(inputs), inputs["x"], inputs["y"]
    return lambda: f(params, x, y)


def funcgrad_jit(inputs):
    import funcgrad
    f = require(funcgrad, "jit")(_funcgrad_per_example())
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]
    return lambda: f(params, x, y)


def funcgrad_jit_loop(inputs):
    """The baseline vmap replaces: one jit(grad) call per example, stacked."""
    import funcgrad
    import funcgrad.numpy as fnp
    grad = require(funcgrad, "jit")(funcgrad.grad(functools.partial(example_loss, fnp)))
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]

    def run():
        per_example = [grad(params, x[i], y[i]) for i in range(len(x))]
        return [np.stack(g) for g in zip(*per_example)]
    return run


def numpy_(inputs):
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]

    def run():
        _, layers = numpy_backprop(params, x, y)
        grads = []
        for a, d in layers:
            grads += [a[:, :, None] * d[:, None, :], d]
        return grads
    return run


def numpy_floor(inputs):
    """The floor any implementation meets: hand-written NumPy writing the 343 MB result into
    the same preallocated buffers on every call (no allocation, no page faults). Not a fair
    peer (its caller must consume the result before the next call); it bounds how much faster
    than the jit(grad) loop a vectorized version can be."""
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]
    outs = None

    def run():
        nonlocal outs
        _, layers = numpy_backprop(params, x, y)
        if outs is None:
            outs = [np.empty(a.shape + d.shape[1:], np.float32) for a, d in layers]
        grads = []
        for (a, d), out in zip(layers, outs):
            grads += [np.multiply(a[:, :, None], d[:, None, :], out=out), d]
        return grads
    return run


def autograd_loop(inputs):
    import autograd
    import autograd.numpy as anp
    grad = autograd.grad(functools.partial(example_loss, anp))
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]

    def run():
        per_example = [grad(params, x[i], y[i]) for i in range(len(x))]
        return [np.stack(g) for g in zip(*per_example)]
    return run


def jax_jit(inputs):
    import jax
    import jax.numpy as jnp
    f = jax.jit(jax.vmap(jax.grad(functools.partial(example_loss, jnp)), in_axes=(None, 0, 0)))
    params = [jnp.asarray(p) for p in params_of(inputs)]
    x, y = jnp.asarray(inputs["x"]), jnp.asarray(inputs["y"])
    return lambda: jax.block_until_ready(f(params, x, y))


def torch_func(inputs):
    import torch
    import torch.func

    def loss(params, x, y):
        return torch_xent(torch, torch_logits(torch, params, x), y)
    f = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))
    params = [torch.from_numpy(p) for p in params_of(inputs)]
    x, y = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"])
    return lambda: f(params, x, y)


WORKLOAD = Workload(
    "per_example_grads", "per-example gradients of the MLP, batch 128 (vmap(grad))",
    (Case("mlp_vmap_grad", make_inputs,
          {"funcgrad.jit": funcgrad_jit, "funcgrad": funcgrad_eager,
           "funcgrad.jit_loop": funcgrad_jit_loop, "numpy": numpy_, "numpy.floor": numpy_floor,
           "autograd.loop": autograd_loop, "jax.jit": jax_jit, "torch.func": torch_func}),))
