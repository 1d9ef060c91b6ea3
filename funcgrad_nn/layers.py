"""Stateless layers: a layer object holds hyperparameters only.

    params, state = model.init(key, example_input)
    y, state = model.apply(params, state, x, train=False, rng=None)

``params`` and ``state`` are nested dicts keyed by layer names (``"dense_0"``, or the
``name=`` you give), so checkpoints are readable and weights can be copied by name. Layers
with nothing to store leave no entry. Layout is NCHW for images, as in the course material.

A custom layer is a subclass with two methods::

    class Scale(Module):
        def init(self, key, x):
            return {"s": fnp.ones(x.shape[-1:], x.dtype)}, {}
        def apply(self, params, state, x, train=False, rng=None):
            return x * params["s"], state
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import lax, random
from funcgrad import nn as fnn

from . import init as initializers

# ---------------------------------------------------------------------------------------------
# Base


class Module:
    """A layer: hyperparameters, plus ``init`` and ``apply``."""

    def __init__(self, *, name: str | None = None):
        self.name = name

    def default_name(self) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower().replace("2_d", "2d")

    def init(self, key, x) -> tuple[dict, dict]:
        """Create ``(params, state)`` for inputs like ``x``."""
        return {}, {}

    def apply(self, params: dict, state: dict, x, train: bool = False, rng=None):
        """Return ``(y, new_state)``."""
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "name" and v is not None)
        return f"{type(self).__name__}({fields})"


def output_like(layer: Module, params, state, x):
    """A zeros array shaped like ``layer``'s output for input ``x`` (traced abstractly)."""
    _, shape = funcgrad.make_jaxpr(lambda p, s, v: layer.apply(p, s, v, train=False)[0],
                                   return_shape=True)(params, state, x)
    return np.zeros(shape.shape, shape.dtype)


class Sequential(Module):
    """Layers applied in order; children are named ``<type>_<index>`` unless named."""

    def __init__(self, layers: Sequence[Module], *, name: str | None = None):
        super().__init__(name=name)
        self.layers = list(layers)
        names = [l.name or f"{l.default_name()}_{i}" for i, l in enumerate(self.layers)]
        if len(set(names)) != len(names):
            raise ValueError(f"Sequential: layer names must be unique, got {names}")
        self.names = names

    def init(self, key, x):
        params, state = {}, {}
        keys = random.split(key, max(len(self.layers), 1))
        for name, layer, k in zip(self.names, self.layers, keys):
            p, s = layer.init(k, x)
            if p:
                params[name] = p
            if s:
                state[name] = s
            x = output_like(layer, p, s, x)
        return params, state

    def apply(self, params, state, x, train=False, rng=None):
        new_state = {}
        rngs = random.split(rng, len(self.layers)) if rng is not None else [None] * len(self.layers)
        for name, layer, r in zip(self.names, self.layers, rngs):
            x, s = layer.apply(params.get(name, {}), state.get(name, {}), x, train=train, rng=r)
            if s:
                new_state[name] = s
        return x, new_state


class Residual(Module):
    """``block(x) + shortcut(x)``; the shortcut is the identity unless given (e.g. a 1x1 conv)."""

    def __init__(self, block: Module, shortcut: Module | None = None, *, name: str | None = None):
        super().__init__(name=name)
        self.block, self.shortcut = block, shortcut

    def init(self, key, x):
        kb, ks = random.split(key)
        pb, sb = self.block.init(kb, x)
        params, state = {"block": pb}, {"block": sb}
        if self.shortcut is not None:
            params["shortcut"], state["shortcut"] = self.shortcut.init(ks, x)
        return _prune(params), _prune(state)

    def apply(self, params, state, x, train=False, rng=None):
        rb, rs = random.split(rng) if rng is not None else (None, None)
        y, sb = self.block.apply(params.get("block", {}), state.get("block", {}), x, train, rb)
        new_state = {"block": sb}
        if self.shortcut is not None:
            x, ss = self.shortcut.apply(params.get("shortcut", {}), state.get("shortcut", {}), x, train, rs)
            new_state["shortcut"] = ss
        if fnp.shape(y) != fnp.shape(x):
            raise ValueError(f"Residual: block output {fnp.shape(y)} and shortcut {fnp.shape(x)} "
                             "differ in shape; give a shortcut layer")
        return y + x, _prune(new_state)


def _prune(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


class Lambda(Module):
    """A parameter-free layer from a function of the input."""

    def __init__(self, fn: Callable, *, name: str | None = None):
        super().__init__(name=name)
        self.fn = fn

    def default_name(self) -> str:
        return getattr(self.fn, "__name__", "lambda").strip("<>")

    def apply(self, params, state, x, train=False, rng=None):
        return self.fn(x), state


def Activation(fn: Callable | str, *, name: str | None = None) -> Lambda:
    """An activation layer: ``Activation("relu")`` or ``Activation(funcgrad.nn.gelu)``."""
    if isinstance(fn, str):
        try:
            fn = ACTIVATIONS[fn]
        except KeyError:
            raise ValueError(f"unknown activation {fn!r}; choose from {sorted(ACTIVATIONS)}") from None
    return Lambda(fn, name=name)


def Relu(*, name=None):
    return Lambda(fnn.relu, name=name)


def Tanh(*, name=None):
    return Lambda(fnp.tanh, name=name)


def Sigmoid(*, name=None):
    return Lambda(fnn.sigmoid, name=name)


class Flatten(Module):
    """``(N, ...) -> (N, prod(...))``."""

    def apply(self, params, state, x, train=False, rng=None):
        return fnp.reshape(x, (fnp.shape(x)[0], -1)), state


# ---------------------------------------------------------------------------------------------
# Dense and embeddings


class Dense(Module):
    """``x @ w + b`` on the last axis; ``w`` is ``(in, features)``."""

    def __init__(self, features: int, *, use_bias: bool = True, w_init="lecun_normal",
                 b_init=initializers.zeros, name: str | None = None):
        super().__init__(name=name)
        if features <= 0:
            raise ValueError(f"Dense: features must be positive, got {features}")
        self.features, self.use_bias = features, use_bias
        self.w_init, self.b_init = initializers.get(w_init), initializers.get(b_init)

    def init(self, key, x):
        kw, kb = random.split(key)
        dtype = _float_dtype(x)
        params = {"w": self.w_init(kw, (fnp.shape(x)[-1], self.features), dtype)}
        if self.use_bias:
            params["b"] = self.b_init(kb, (self.features,), dtype)
        return params, {}

    def apply(self, params, state, x, train=False, rng=None):
        y = fnp.matmul(x, params["w"])
        return (y + params["b"] if self.use_bias else y), state


Linear = Dense


def _float_dtype(x):
    dt = np.dtype(fnp.asarray(x).dtype) if not isinstance(x, funcgrad.core.Tracer) else x.dtype
    return dt if dt.kind == "f" else np.dtype(np.float32)


class Embedding(Module):
    """Integer ids ``(...)`` -> vectors ``(..., features)`` from a ``(num_embeddings, features)`` table."""

    def __init__(self, num_embeddings: int, features: int, *, init=None, name: str | None = None):
        super().__init__(name=name)
        self.num_embeddings, self.features = num_embeddings, features
        self.table_init = initializers.get(init) if init is not None else initializers.normal(1.0)

    def init(self, key, x):
        return {"table": self.table_init(key, (self.num_embeddings, self.features), np.float32)}, {}

    def apply(self, params, state, x, train=False, rng=None):
        return fnp.take(params["table"], x, axis=0), state


# ---------------------------------------------------------------------------------------------
# Convolution and pooling (NCHW activations, OIHW kernels)


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def _padding(padding, kernel, dilation):
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}")
        return padding.upper()
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple(_pair(p, "padding") for p in padding)


class Conv2D(Module):
    """2-D convolution, NCHW input, OIHW kernel ``(features, in // groups, kh, kw)``."""

    def __init__(self, features: int, kernel_size=3, *, stride=1, padding="SAME", dilation=1,
                 groups: int = 1, use_bias: bool = True, w_init="he_normal", b_init=initializers.zeros,
                 name: str | None = None):
        super().__init__(name=name)
        self.features, self.kernel_size = features, _pair(kernel_size, "kernel_size")
        self.stride, self.dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
        self.padding = _padding(padding, self.kernel_size, self.dilation)
        self.groups, self.use_bias = groups, use_bias
        self.w_init, self.b_init = initializers.get(w_init), initializers.get(b_init)
        if features % groups:
            raise ValueError(f"Conv2D: features ({features}) must be divisible by groups ({groups})")

    def init(self, key, x):
        if fnp.ndim(x) != 4:
            raise ValueError(f"Conv2D expects NCHW input of rank 4, got shape {fnp.shape(x)}")
        cin = fnp.shape(x)[1]
        if cin % self.groups:
            raise ValueError(f"Conv2D: input channels ({cin}) must be divisible by groups ({self.groups})")
        kw, kb = random.split(key)
        dtype = _float_dtype(x)
        params = {"w": self.w_init(kw, (self.features, cin // self.groups) + self.kernel_size, dtype)}
        if self.use_bias:
            params["b"] = self.b_init(kb, (self.features,), dtype)
        return params, {}

    def apply(self, params, state, x, train=False, rng=None):
        y = lax.conv_general_dilated(x, params["w"], self.stride, self.padding, rhs_dilation=self.dilation,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                     feature_group_count=self.groups)
        if self.use_bias:
            y = y + fnp.reshape(params["b"], (1, -1, 1, 1))
        return y, state


class ConvTranspose2D(Module):
    """Transposed convolution (the gradient of Conv2D w.r.t. its input), kernel
    ``(in, features, kh, kw)`` as PyTorch; output size ``(H-1)*stride - 2*padding + kh``."""

    def __init__(self, features: int, kernel_size=3, *, stride=1, padding: int = 0, use_bias=True,
                 w_init="he_normal", b_init=initializers.zeros, name: str | None = None):
        super().__init__(name=name)
        self.features, self.kernel_size = features, _pair(kernel_size, "kernel_size")
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        self.use_bias = use_bias
        self.w_init, self.b_init = initializers.get(w_init), initializers.get(b_init)

    def init(self, key, x):
        kw, kb = random.split(key)
        dtype = _float_dtype(x)
        params = {"w": self.w_init(kw, (fnp.shape(x)[1], self.features) + self.kernel_size, dtype)}
        if self.use_bias:
            params["b"] = self.b_init(kb, (self.features,), dtype)
        return params, {}

    def apply(self, params, state, x, train=False, rng=None):
        # A stride-1 conv over the stride-dilated input with the flipped, I/O-swapped kernel.
        w = fnp.flip(fnp.transpose(params["w"], (1, 0, 2, 3)), (2, 3))
        pads = tuple((k - 1 - p, k - 1 - p) for k, p in zip(self.kernel_size, self.padding))
        y = lax.conv_general_dilated(x, w, (1, 1), pads, lhs_dilation=self.stride,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        if self.use_bias:
            y = y + fnp.reshape(params["b"], (1, -1, 1, 1))
        return y, state


class _Pool2D(Module):
    def __init__(self, window=2, stride=None, padding="VALID", *, name: str | None = None):
        super().__init__(name=name)
        self.window = _pair(window, "window")
        self.stride = _pair(stride, "stride") if stride is not None else self.window
        self.padding = _padding(padding, self.window, (1, 1))

    def _pads(self, x):
        if isinstance(self.padding, str):
            return self.padding
        return ((0, 0), (0, 0)) + tuple(self.padding)


class MaxPool2D(_Pool2D):
    """Max over ``window`` patches of an NCHW input (stride defaults to the window)."""

    def apply(self, params, state, x, train=False, rng=None):
        return lax.reduce_window(x, -np.inf, lax.max, (1, 1) + self.window, (1, 1) + self.stride,
                                 self._pads(x)), state


class AvgPool2D(_Pool2D):
    """Mean over ``window`` patches (padding, if any, is excluded from the count)."""

    def apply(self, params, state, x, train=False, rng=None):
        dims, strides, pads = (1, 1) + self.window, (1, 1) + self.stride, self._pads(x)
        total = lax.reduce_window(x, 0.0, lax.add, dims, strides, pads)
        if self.padding == "VALID":
            return total / float(np.prod(self.window)), state
        counts = lax.reduce_window(fnp.ones(fnp.shape(x)[2:], fnp.asarray(x).dtype
                                            if not isinstance(x, funcgrad.core.Tracer) else x.dtype),
                                   0.0, lax.add, self.window, self.stride,
                                   pads if isinstance(pads, str) else pads[2:])
        return total / counts, state


class GlobalAvgPool(Module):
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)``."""

    def apply(self, params, state, x, train=False, rng=None):
        return fnp.mean(x, axis=tuple(range(2, fnp.ndim(x)))), state


# ---------------------------------------------------------------------------------------------
# Normalization and dropout


def _feature_axes(x, axis: int) -> tuple[int, ...]:
    """The axes statistics are taken over: all but the feature axis."""
    nd = fnp.ndim(x)
    axis %= nd
    return tuple(i for i in range(nd) if i != axis)


class BatchNorm(Module):
    """Batch normalization over all axes but ``axis`` (1: channels of NCHW, or features of
    (N, D)). Train: normalize with the batch statistics and update the running averages in
    ``state`` as the course does, ``running = momentum * running + (1 - momentum) * batch``
    (the biased batch variance); eval: normalize with the running statistics."""

    def __init__(self, *, momentum: float = 0.9, eps: float = 1e-5, axis: int = 1,
                 name: str | None = None):
        super().__init__(name=name)
        self.momentum, self.eps, self.axis = momentum, eps, axis

    def init(self, key, x):
        c = fnp.shape(x)[self.axis]
        dtype = _float_dtype(x)
        params = {"gamma": np.ones((c,), dtype), "beta": np.zeros((c,), dtype)}
        state = {"mean": np.zeros((c,), dtype), "var": np.ones((c,), dtype)}
        return params, state

    def _bshape(self, x):
        shape = [1] * fnp.ndim(x)
        shape[self.axis % fnp.ndim(x)] = -1
        return tuple(shape)

    def apply(self, params, state, x, train=False, rng=None):
        axes, bshape = _feature_axes(x, self.axis), self._bshape(x)
        if train:
            mean = fnp.mean(x, axis=axes)
            var = fnp.mean(fnp.square(x - fnp.reshape(mean, bshape)), axis=axes)
            m = self.momentum
            new_state = {"mean": m * state["mean"] + (1 - m) * funcgrad.stop_gradient(mean),
                         "var": m * state["var"] + (1 - m) * funcgrad.stop_gradient(var)}
        else:
            mean, var, new_state = state["mean"], state["var"], state
        xhat = (x - fnp.reshape(mean, bshape)) / fnp.sqrt(fnp.reshape(var, bshape) + self.eps)
        return xhat * fnp.reshape(params["gamma"], bshape) + fnp.reshape(params["beta"], bshape), new_state


class LayerNorm(Module):
    """Normalize each example over ``axes`` (default: the last axis), with a learned scale
    and shift of those axes' shape."""

    def __init__(self, *, axes: int | Sequence[int] = -1, eps: float = 1e-5, name: str | None = None):
        super().__init__(name=name)
        self.axes = (axes,) if isinstance(axes, int) else tuple(axes)
        self.eps = eps

    def _axes(self, x):
        return tuple(sorted(a % fnp.ndim(x) for a in self.axes))

    def init(self, key, x):
        shape = tuple(fnp.shape(x)[a] for a in self._axes(x))
        dtype = _float_dtype(x)
        return {"gamma": np.ones(shape, dtype), "beta": np.zeros(shape, dtype)}, {}

    def apply(self, params, state, x, train=False, rng=None):
        axes = self._axes(x)
        mean = fnp.mean(x, axis=axes, keepdims=True)
        var = fnp.mean(fnp.square(x - mean), axis=axes, keepdims=True)
        xhat = (x - mean) / fnp.sqrt(var + self.eps)
        bshape = tuple(fnp.shape(x)[i] if i in axes else 1 for i in range(fnp.ndim(x)))
        return xhat * fnp.reshape(params["gamma"], bshape) + fnp.reshape(params["beta"], bshape), state


class GroupNorm(Module):
    """Normalize NCHW inputs over groups of channels (and all spatial positions)."""

    def __init__(self, num_groups: int, *, eps: float = 1e-5, name: str | None = None):
        super().__init__(name=name)
        self.num_groups, self.eps = num_groups, eps

    def init(self, key, x):
        c = fnp.shape(x)[1]
        if c % self.num_groups:
            raise ValueError(f"GroupNorm: channels ({c}) must be divisible by num_groups ({self.num_groups})")
        dtype = _float_dtype(x)
        return {"gamma": np.ones((c,), dtype), "beta": np.zeros((c,), dtype)}, {}

    def apply(self, params, state, x, train=False, rng=None):
        shape = fnp.shape(x)
        n, c = shape[:2]
        g = fnp.reshape(x, (n, self.num_groups, -1))
        mean = fnp.mean(g, axis=2, keepdims=True)
        var = fnp.mean(fnp.square(g - mean), axis=2, keepdims=True)
        xhat = fnp.reshape((g - mean) / fnp.sqrt(var + self.eps), shape)
        bshape = (1, c) + (1,) * (len(shape) - 2)
        return xhat * fnp.reshape(params["gamma"], bshape) + fnp.reshape(params["beta"], bshape), state


class Dropout(Module):
    """Inverted dropout with a drop *rate* (as JAX/PyTorch; the course's keep probability is
    ``1 - rate``): in training each unit is zeroed with probability ``rate`` and the rest are
    scaled by ``1 / (1 - rate)``; in evaluation it is the identity. Needs ``rng`` to train."""

    def __init__(self, rate: float, *, name: str | None = None):
        super().__init__(name=name)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = rate

    def apply(self, params, state, x, train=False, rng=None):
        if not train or self.rate == 0:
            return x, state
        if rng is None:
            raise ValueError("Dropout in training mode needs a PRNG key: apply(..., train=True, rng=key)")
        keep = 1.0 - self.rate
        mask = random.bernoulli(rng, keep, fnp.shape(x))
        return fnp.where(mask, x / keep, 0), state


# ---------------------------------------------------------------------------------------------
# Recurrent layers (cells over lax.scan)


class RNNCell(Module):
    """Vanilla RNN step: ``h = tanh(x Wx + h Wh + b)``."""

    def __init__(self, hidden: int, *, nonlinearity: Callable = fnp.tanh, name: str | None = None):
        super().__init__(name=name)
        self.hidden, self.nonlinearity = hidden, nonlinearity

    num_states = 1

    def init(self, key, x):
        kx, kh = random.split(key)
        d, h = fnp.shape(x)[-1], self.hidden
        dtype = _float_dtype(x)
        return {"wx": initializers.lecun_normal()(kx, (d, h), dtype),
                "wh": initializers.orthogonal()(kh, (h, h), dtype),
                "b": np.zeros((h,), dtype)}, {}

    def initial_carry(self, batch_shape, dtype):
        return (fnp.zeros(batch_shape + (self.hidden,), dtype),)

    def step(self, params, carry, x):
        (h,) = carry
        h = self.nonlinearity(x @ params["wx"] + h @ params["wh"] + params["b"])
        return (h,), h


class LSTMCell(Module):
    """LSTM step with gates (i, f, o, g) from one ``(D + H, 4H)``-sized affine map, as in the
    course: ``c = f*c + i*g; h = o*tanh(c)``. The forget-gate bias starts at ``forget_bias``."""

    def __init__(self, hidden: int, *, forget_bias: float = 1.0, name: str | None = None):
        super().__init__(name=name)
        self.hidden, self.forget_bias = hidden, forget_bias

    num_states = 2

    def init(self, key, x):
        kx, kh = random.split(key)
        d, h = fnp.shape(x)[-1], self.hidden
        dtype = _float_dtype(x)
        b = np.zeros((4 * h,), dtype)
        b[h:2 * h] = self.forget_bias
        return {"wx": initializers.lecun_normal()(kx, (d, 4 * h), dtype),
                "wh": initializers.orthogonal()(kh, (h, 4 * h), dtype), "b": b}, {}

    def initial_carry(self, batch_shape, dtype):
        z = fnp.zeros(batch_shape + (self.hidden,), dtype)
        return (z, z)

    def step(self, params, carry, x):
        h, c = carry
        a = x @ params["wx"] + h @ params["wh"] + params["b"]
        i, f, o, g = fnp.split(a, 4, axis=-1)
        c = fnn.sigmoid(f) * c + fnn.sigmoid(i) * fnp.tanh(g)
        h = fnn.sigmoid(o) * fnp.tanh(c)
        return (h, c), h


class GRUCell(Module):
    """GRU step: ``z, r`` gates; ``n = tanh(x Wn + r * (h Un) + b)``; ``h = (1-z)*n + z*h``."""

    def __init__(self, hidden: int, *, name: str | None = None):
        super().__init__(name=name)
        self.hidden = hidden

    num_states = 1

    def init(self, key, x):
        kx, kh = random.split(key)
        d, h = fnp.shape(x)[-1], self.hidden
        dtype = _float_dtype(x)
        return {"wx": initializers.lecun_normal()(kx, (d, 3 * h), dtype),
                "wh": initializers.orthogonal()(kh, (h, 3 * h), dtype),
                "b": np.zeros((3 * h,), dtype)}, {}

    def initial_carry(self, batch_shape, dtype):
        return (fnp.zeros(batch_shape + (self.hidden,), dtype),)

    def step(self, params, carry, x):
        (h,) = carry
        hdim = self.hidden
        ax = x @ params["wx"] + params["b"]
        ah = h @ params["wh"]
        z = fnn.sigmoid(ax[..., :hdim] + ah[..., :hdim])
        r = fnn.sigmoid(ax[..., hdim:2 * hdim] + ah[..., hdim:2 * hdim])
        n = fnp.tanh(ax[..., 2 * hdim:] + r * ah[..., 2 * hdim:])
        h = (1 - z) * n + z * h
        return (h,), h


class RNN(Module):
    """Run a cell over a sequence ``(N, T, D) -> (N, T, H)`` with ``lax.scan`` (one traced
    step, compiled once). ``return_carry=True`` also returns the final carry."""

    def __init__(self, cell: Module, *, return_carry: bool = False, reverse: bool = False,
                 name: str | None = None):
        super().__init__(name=name)
        self.cell, self.return_carry, self.reverse = cell, return_carry, reverse

    def default_name(self) -> str:
        return self.cell.default_name().replace("_cell", "")

    def init(self, key, x):
        if fnp.ndim(x) != 3:
            raise ValueError(f"RNN expects (N, T, D) input, got shape {fnp.shape(x)}")
        return self.cell.init(key, x[:, 0])

    def apply(self, params, state, x, train=False, rng=None, carry=None):
        dtype = x.dtype if isinstance(x, funcgrad.core.Tracer) else fnp.asarray(x).dtype
        if carry is None:
            carry = self.cell.initial_carry((fnp.shape(x)[0],), dtype)
        xs = fnp.swapaxes(x, 0, 1)                       # time-major for scan
        carry, ys = lax.scan(lambda c, xt: self.cell.step(params, c, xt), carry, xs, reverse=self.reverse)
        ys = fnp.swapaxes(ys, 0, 1)
        return ((ys, carry) if self.return_carry else ys), state


def maxout(x, num_pieces: int, axis: int = -1):
    """Max over ``num_pieces`` consecutive groups of units along ``axis``."""
    shape = fnp.shape(x)
    axis %= len(shape)
    if shape[axis] % num_pieces:
        raise ValueError(f"maxout: axis size {shape[axis]} is not divisible by {num_pieces}")
    new_shape = shape[:axis] + (shape[axis] // num_pieces, num_pieces) + shape[axis + 1:]
    return fnp.max(fnp.reshape(x, new_shape), axis=axis + 1)


ACTIVATIONS = {
    "relu": fnn.relu, "leaky_relu": fnn.leaky_relu, "elu": fnn.elu, "gelu": fnn.gelu,
    "selu": fnn.selu, "sigmoid": fnn.sigmoid, "tanh": fnp.tanh, "softplus": fnn.softplus,
    "swish": fnn.silu, "silu": fnn.silu, "softmax": fnn.softmax, "log_softmax": fnn.log_softmax,
}
