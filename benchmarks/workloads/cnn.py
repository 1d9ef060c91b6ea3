"""Workload 6: one SGD training step of a small CNN on 32x32x3 inputs, batch 64, NCHW:
conv3x3(16, pad 1)-relu-maxpool2-conv3x3(32, pad 1)-relu-maxpool2-dense(10), softmax
cross-entropy. funcgrad and JAX use ``lax.conv_general_dilated`` and ``lax.reduce_window``;
PyTorch ``conv2d``/``max_pool2d``; NumPy by hand and autograd im2col (one BLAS product per
conv, a loop over the 9 kernel offsets only)."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..harness import Case, Workload, require
from .common import (normal, numpy_sgd_update, observe_update, one_hot_labels, sgd_step,
                     torch_sgd_step, torch_xent, xent)

BATCH, CHANNELS, SIZE = 64, 3, 32
PARAMS = ("k1", "c1", "k2", "c2", "w", "b")


def make_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(6)
    flat = 32 * (SIZE // 4) ** 2
    return {
        "k1": normal(rng, (16, CHANNELS, 3, 3), np.sqrt(2.0 / (CHANNELS * 9))),
        "c1": normal(rng, (16,), 0.01),
        "k2": normal(rng, (32, 16, 3, 3), np.sqrt(2.0 / (16 * 9))),
        "c2": normal(rng, (32,), 0.01),
        "w": normal(rng, (flat, 10), np.sqrt(1.0 / flat)),
        "b": normal(rng, (10,), 0.01),
        "x": normal(rng, (BATCH, CHANNELS, SIZE, SIZE)),
        "y": one_hot_labels(rng, BATCH),
    }


def params_of(inputs) -> list[np.ndarray]:
    return [inputs[name] for name in PARAMS]


# --- funcgrad and JAX: the lax API ------------------------------------------------------------

def lax_logits(xp: Any, lax: Any, params, x):
    def conv_relu_pool(h, kernel, bias):
        h = lax.conv_general_dilated(h, kernel, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = xp.maximum(h + xp.reshape(bias, (-1, 1, 1)), 0.0)
        return lax.reduce_window(h, np.array(-np.inf, h.dtype), lax.max, (1, 1, 2, 2),
                                 (1, 1, 2, 2), "VALID")
    k1, c1, k2, c2, w, b = params
    h = conv_relu_pool(conv_relu_pool(x, k1, c1), k2, c2)
    return xp.reshape(h, (h.shape[0], -1)) @ w + b


def lax_loss(xp: Any, lax: Any, params, x, y):
    return xp.mean(xent(xp, lax_logits(xp, lax, params, x), y))


# --- NumPy by hand and autograd: im2col -------------------------------------------------------

def im2col(xp: Any, x):
    """(N, C, H, W) -> (N, C*9, H*W): the 3x3 neighbourhoods (zero padding 1) as columns."""
    n, c, h, w = x.shape
    padded = xp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="constant")
    cols = xp.stack([padded[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=2)
    return xp.reshape(cols, (n, c * 9, h * w))


def conv_im2col(xp: Any, x, kernel, cols=None):
    """3x3 'same' cross-correlation (N, C, H, W) x (O, C, 3, 3) -> (N, O, H, W)."""
    n, _, h, w = x.shape
    cols = im2col(xp, x) if cols is None else cols
    out = xp.tensordot(cols, xp.reshape(kernel, (kernel.shape[0], -1)), axes=([1], [1]))
    return xp.reshape(xp.transpose(out, (0, 2, 1)), (n, kernel.shape[0], h, w))


def pool_2x2(xp: Any, x):
    n, c, h, w = x.shape
    return xp.max(xp.reshape(x, (n, c, h // 2, 2, w // 2, 2)), axis=(3, 5))


def im2col_logits(xp: Any, params, x):
    k1, c1, k2, c2, w, b = params
    h = pool_2x2(xp, xp.maximum(conv_im2col(xp, x, k1) + xp.reshape(c1, (-1, 1, 1)), 0.0))
    h = pool_2x2(xp, xp.maximum(conv_im2col(xp, h, k2) + xp.reshape(c2, (-1, 1, 1)), 0.0))
    return xp.reshape(h, (h.shape[0], -1)) @ w + b


def im2col_loss(xp: Any, params, x, y):
    return xp.mean(xent(xp, im2col_logits(xp, params, x), y))


def _conv_backward(d, cols, kernel, need_input_grad=True):
    """Gradients of :func:`conv_im2col` w.r.t. kernel, bias and (col2im) input."""
    n, o, h, w = d.shape
    c = kernel.shape[1]
    dm = d.reshape(n, o, h * w)
    dkernel = np.tensordot(dm, cols, axes=([0, 2], [0, 2])).reshape(kernel.shape)
    if not need_input_grad:
        return dkernel, d.sum(axis=(0, 2, 3)), None
    dcols = np.tensordot(kernel.reshape(o, -1), dm, axes=([0], [1]))  # (C*9, N, H*W)
    dcols = dcols.reshape(c, 3, 3, n, h, w)
    dpadded = np.zeros((n, c, h + 2, w + 2), d.dtype)
    for i in range(3):
        for j in range(3):
            dpadded[:, :, i:i + h, j:j + w] += dcols[:, i, j].transpose(1, 0, 2, 3)
    return dkernel, d.sum(axis=(0, 2, 3)), dpadded[:, :, 1:-1, 1:-1]


def _pool_backward(x, pooled, dpooled):
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2)
    mask = windows == pooled[:, :, :, None, :, None]
    return (mask * dpooled[:, :, :, None, :, None]).reshape(x.shape)


def numpy_(inputs):
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]
    k1, c1, k2, c2, w, b = params

    def run():
        cols1 = im2col(np, x)
        a1 = conv_im2col(np, x, k1, cols1) + c1[:, None, None]
        r1 = np.maximum(a1, 0)
        p1 = pool_2x2(np, r1)
        cols2 = im2col(np, p1)
        a2 = conv_im2col(np, p1, k2, cols2) + c2[:, None, None]
        r2 = np.maximum(a2, 0)
        p2 = pool_2x2(np, r2)
        flat = p2.reshape(len(x), -1)
        z = flat @ w + b
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=-1, keepdims=True)
        value = np.mean(np.log(s[:, 0]) - np.sum(y * z, axis=-1))
        dz = (e / s - y) / len(x)
        dw, db = flat.T @ dz, dz.sum(axis=0)
        da2 = _pool_backward(r2, p2, (dz @ w.T).reshape(p2.shape)) * (a2 > 0)
        dk2, dc2, dp1 = _conv_backward(da2, cols2, k2)
        da1 = _pool_backward(r1, p1, dp1) * (a1 > 0)
        dk1, dc1, _ = _conv_backward(da1, cols1, k1, need_input_grad=False)
        return value, numpy_sgd_update(params, [dk1, dc1, dk2, dc2, dw, db])
    return run


# --- the variants -----------------------------------------------------------------------------

def _funcgrad_step():
    import funcgrad
    import funcgrad.numpy as fnp
    require(funcgrad, "lax.conv_general_dilated")
    require(funcgrad, "lax.reduce_window")
    return sgd_step(funcgrad.value_and_grad, functools.partial(lax_loss, fnp, funcgrad.lax))


def funcgrad_eager(inputs):
    step, params, x, y = _funcgrad_step(), params_of(inputs), inputs["x"], inputs["y"]
    return lambda: step(params, x, y)


def funcgrad_jit(inputs):
    import funcgrad
    step = require(funcgrad, "jit")(_funcgrad_step())
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]
    return lambda: step(params, x, y)


def autograd_(inputs):
    import autograd
    import autograd.numpy as anp
    step = sgd_step(autograd.value_and_grad, functools.partial(im2col_loss, anp))
    params, x, y = params_of(inputs), inputs["x"], inputs["y"]
    return lambda: step(params, x, y)


def jax_jit(inputs):
    import jax
    import jax.numpy as jnp
    step = jax.jit(sgd_step(jax.value_and_grad, functools.partial(lax_loss, jnp, jax.lax)))
    params = [jnp.asarray(p) for p in params_of(inputs)]
    x, y = jnp.asarray(inputs["x"]), jnp.asarray(inputs["y"])
    return lambda: jax.block_until_ready(step(params, x, y))


def torch_(inputs):
    import torch
    import torch.nn.functional as F

    def loss(params, x, y):
        k1, c1, k2, c2, w, b = params
        h = F.max_pool2d(torch.relu(F.conv2d(x, k1, c1, padding=1)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, k2, c2, padding=1)), 2)
        return torch.mean(torch_xent(torch, h.reshape(h.shape[0], -1) @ w + b, y))
    step = torch_sgd_step(torch, loss)
    params = [torch.from_numpy(p).requires_grad_() for p in params_of(inputs)]
    x, y = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"])
    return lambda: step(params, x, y)


STEP = Case("cnn_step", make_inputs,
            {"funcgrad.jit": funcgrad_jit, "funcgrad": funcgrad_eager, "numpy": numpy_,
             "autograd": autograd_, "jax.jit": jax_jit, "torch": torch_},
            tol=1e-4, observe=observe_update(PARAMS))

WORKLOAD = Workload(
    "cnn_step", "CNN conv3x3(16)-relu-pool-conv3x3(32)-relu-pool-dense(10) SGD step, 32x32x3, "
    "batch 64", (STEP,))
