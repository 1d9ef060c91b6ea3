"""Workload 4: one SGD training step of an MLP 784-512-512-10 (ReLU), batch 128, softmax
cross-entropy. The step returns the loss and the new parameters. Also the model of workloads
5 (per-example gradients), 8 (compile time) and 9 (peak memory)."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..harness import Case, Workload, require
from .common import (normal, numpy_sgd_update, observe_update, one_hot_labels, sgd_step,
                     torch_sgd_step, torch_xent, xent)

LAYERS = (784, 512, 512, 10)
BATCH = 128
PARAMS = ("w1", "b1", "w2", "b2", "w3", "b3")


def make_inputs(batch: int = BATCH) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    inputs = {}
    for i, (fan_in, fan_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:]), start=1):
        inputs[f"w{i}"] = normal(rng, (fan_in, fan_out), np.sqrt(2.0 / fan_in))
        inputs[f"b{i}"] = normal(rng, (fan_out,), 0.01)
    inputs["x"] = normal(rng, (batch, LAYERS[0]))
    inputs["y"] = one_hot_labels(rng, batch, LAYERS[-1])
    return inputs


def params_of(inputs) -> list[np.ndarray]:
    return [inputs[name] for name in PARAMS]


def logits(xp: Any, params, x):
    w1, b1, w2, b2, w3, b3 = params
    h = xp.maximum(x @ w1 + b1, 0.0)
    h = xp.maximum(h @ w2 + b2, 0.0)
    return h @ w3 + b3


def loss(xp: Any, params, x, y):
    return xp.mean(xent(xp, logits(xp, params, x), y))


def torch_logits(torch: Any, params, x):
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(x @ w1 + b1)
    h = torch.relu(h @ w2 + b2)
    return h @ w3 + b3


def _torch_loss(torch: Any, params, x, y):
    return torch.mean(torch_xent(torch, torch_logits(torch, params, x), y))


def numpy_backprop(params, x, y):
    """Per-example losses and, per layer, (layer input, delta of the per-example loss)."""
    w1, b1, w2, b2, w3, b3 = params
    a1 = x @ w1 + b1
    h1 = np.maximum(a1, 0)
    a2 = h1 @ w2 + b2
    h2 = np.maximum(a2, 0)
    z = h2 @ w3 + b3
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=-1, keepdims=True)
    losses = np.log(s[..., 0]) - np.sum(y * z, axis=-1)
    d3 = e / s - y
    d2 = (d3 @ w3.T) * (a2 > 0)
    d1 = (d2 @ w2.T) * (a1 > 0)
    return losses, ((x, d1), (h1, d2), (h2, d3))


def _funcgrad_step():
    import funcgrad
    import funcgrad.numpy as fnp
    return sgd_step(funcgrad.value_and_grad, functools.partial(loss, fnp))


def funcgrad_eager(inputs):
    step, params, x, y = _funcgrad_step(), params_of(inputs), inputs["x"], inputs["y"]
    return lambda: step(params, x, y)


def funcgrad_jit(inputs):
    import funcgrad
    step = require(funcgrad, "jit")(_funcgrad_step())
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]
    return lambda: step(params, x, y)


def numpy_loss_and_grads(params, x, y):
    """The mean loss and its gradient, by hand-written backprop."""
    losses, layers = numpy_backprop(params, x, y)
    grads = []
    for a, d in layers:
        d = d / len(x)
        grads += [a.T @ d, d.sum(axis=0)]
    return np.mean(losses), grads


def numpy_(inputs):
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]

    def run():
        value, grads = numpy_loss_and_grads(params, x, y)
        return value, numpy_sgd_update(params, grads)
    return run


def autograd_(inputs):
    import autograd
    import autograd.numpy as anp
    step = sgd_step(autograd.value_and_grad, functools.partial(loss, anp))
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]
    return lambda: step(params, x, y)


def jax_jit(inputs):
    import jax
    import jax.numpy as jnp
    step = jax.jit(sgd_step(jax.value_and_grad, functools.partial(loss, jnp)))
    params = [jnp.asarray(p) for p in params_of(inputs)]
    x, y = jnp.asarray(inputs["x"]), jnp.asarray(inputs["y"])
    return lambda: jax.block_until_ready(step(params, x, y))


def torch_(inputs):
    import torch

    step = torch_sgd_step(torch, functools.partial(_torch_loss, torch))
    params = [torch.from_numpy(p).requires_grad_() for p in params_of(inputs)]
    x, y = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"])
    return lambda: step(params, x, y)


STEP = Case("mlp_step", make_inputs,
            {"funcgrad.jit": funcgrad_jit, "funcgrad": funcgrad_eager, "numpy": numpy_,
             "autograd": autograd_, "jax.jit": jax_jit, "torch": torch_},
            tol=1e-4, observe=observe_update(PARAMS))

WORKLOAD = Workload("mlp_step", "MLP 784-512-512-10 SGD training step, batch 128", (STEP,))


# --- The gradient alone, eagerly (issue 3's comparison with autograd and hand-written backprop)

def funcgrad_grad(inputs):
    import funcgrad
    import funcgrad.numpy as fnp
    grad, params = funcgrad.grad(functools.partial(loss, fnp)), params_of(inputs)
    x, y = inputs["x"], inputs["y"]
    return lambda: grad(params, x, y)


def numpy_grad(inputs):
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]
    return lambda: numpy_loss_and_grads(params, x, y)[1]


def autograd_grad(inputs):
    import autograd
    import autograd.numpy as anp
    grad, params = autograd.grad(functools.partial(loss, anp)), params_of(inputs)
    x, y = inputs["x"], inputs["y"]
    return lambda: grad(params, x, y)


def jax_grad(inputs):
    import jax
    import jax.numpy as jnp
    grad = jax.grad(functools.partial(loss, jnp))       # eager: op by op, no jit
    params = [jnp.asarray(p) for p in params_of(inputs)]
    x, y = jnp.asarray(inputs["x"]), jnp.asarray(inputs["y"])
    return lambda: jax.block_until_ready(grad(params, x, y))


def torch_grad(inputs):
    import torch
    params = [torch.from_numpy(p).requires_grad_() for p in params_of(inputs)]
    x, y = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"])
    return lambda: torch.autograd.grad(_torch_loss(torch, params, x, y), params)


GRAD = Case("mlp_grad", make_inputs,
            {"funcgrad": funcgrad_grad, "numpy": numpy_grad, "autograd": autograd_grad,
             "jax": jax_grad, "torch": torch_grad})

GRAD_WORKLOAD = Workload("mlp_grad", "gradient of the MLP loss, eager (no jit), batch 128",
                         (GRAD,))
