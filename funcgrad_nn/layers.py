"""Stateless layers: a layer object holds hyperparameters only.

    params, state = model.init(key, example_input)
    y, state = model.apply(params, state, x, train=False, rng=None)

``params`` and ``state`` (batch-norm running statistics) are nested dicts keyed by layer
names: a :class:`Sequential` names its children ``<kind>_<index>`` (``"conv2d_0"``,
``"relu_1"``) unless they were given ``name=``, so checkpoints are readable and weights can be
copied by name. Layers with nothing to store leave no entry. Images are NCHW, conv kernels
OIHW, as in the course material. ``init`` only looks at the example input's shape and dtype.

Every ``apply`` is a pure function of its arguments, so models work eagerly and under
``jit``, ``grad`` and ``vmap``. Under ``vmap`` each mapped call is its own batch: for
per-example gradients call the model on ``x[None]`` inside the mapped function; batch
statistics (``BatchNorm`` with ``train=True``) are then one example's, so use
``train=False`` or ``LayerNorm``/``GroupNorm`` there; ``Dropout`` draws one mask per key, so
map over ``random.split(key, n)`` to give each example its own.

A custom layer is a subclass with ``init`` (when it has parameters) and ``apply``::

    class Scale(Module):
        def init(self, key, x):
            return {"s": np.ones(x.shape[-1:], x.dtype)}, {}

        def apply(self, params, state, x, *, train=False, rng=None):
            return x * params["s"], state

and a parameter-free one is ``Lambda(fn)`` (or ``Activation("gelu")``).
"""
from __future__ import annotations

import math
import re
from typing import Callable, Sequence

import numpy as np

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import lax, random
from funcgrad import nn as fnn

from . import init as initializers

Params = dict
State = dict


# ---------------------------------------------------------------------------------------------
# Base class and containers


class Module:
    """A layer: hyperparameters, plus the pure functions ``init`` and ``apply``."""

    def __init__(self, *, name: str | None = None):
        self.name = name

    def default_name(self) -> str:
        """The name a container gives this layer when none was given: the class name in
        snake case (``BatchNorm`` -> ``batch_norm``, ``Conv2D`` -> ``conv2d``)."""
        return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", type(self).__name__).lower()

    def init(self, key, x) -> tuple[Params, State]:
        """``(params, state)`` for inputs shaped like ``x``; none by default."""
        return {}, {}

    def apply(self, params: Params, state: State, x, *, train: bool = False, rng=None):
        """``(y, new_state)``. ``train`` selects training behaviour (batch statistics,
        dropout); ``rng`` is a PRNG key for layers that draw random numbers."""
        raise NotImplementedError(f"{type(self).__name__} must define apply")

    def _error(self, message: str) -> ValueError:
        label = type(self).__name__ + (f" {self.name!r}" if self.name else "")
        return ValueError(f"{label}: {message}")

    def _check_rank(self, x, rank: int, layout: str, exact: bool = True):
        """Inputs must have rank ``rank`` (at least ``rank`` with ``exact=False``)."""
        if fnp.ndim(x) < rank or exact and fnp.ndim(x) != rank:
            raise self._error(f"expects {layout} inputs, got shape {fnp.shape(x)}")

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if v is not None)
        return f"{type(self).__name__}({fields})"


def _dtype(x) -> np.dtype:
    return np.dtype(fnp.asarray(x).dtype)


def _param_dtype(x) -> np.dtype:
    """Parameters take the input's float dtype (float32 for integer inputs)."""
    dt = _dtype(x)
    return dt if dt.kind == "f" else np.dtype(np.float32)


def _output_like(layer: Module, params: Params, state: State, x) -> np.ndarray:
    """Zeros shaped like ``layer``'s output for ``x``, found by tracing (nothing is computed)."""
    _, out = funcgrad.make_jaxpr(lambda p, s, v: layer.apply(p, s, v)[0], return_shape=True)(
        params, state, x)
    return np.zeros(out.shape, out.dtype)


def _split(rng, n: int) -> list:
    return list(random.split(rng, n)) if rng is not None else [None] * n


def _as_layer(layer: Module | Callable) -> Module:
    """A layer, or a plain function ``x -> y`` as a parameter-free :class:`Lambda` layer."""
    if isinstance(layer, Module):
        return layer
    if isinstance(layer, type) and issubclass(layer, Module):
        raise TypeError(f"Sequential: got the class {layer.__name__}, not a layer; instantiate "
                        f"it: {layer.__name__}(...)")
    if not callable(layer):
        raise TypeError(f"Sequential: expected layers (Modules) or functions x -> y, got "
                        f"{type(layer).__name__}")
    return Lambda(layer)


class Sequential(Module):
    """Layers applied in order; each child's params/state live under its name. A plain
    function ``x -> y`` among them is a parameter-free layer (:class:`Lambda`)."""

    def __init__(self, layers: Sequence[Module | Callable], *, name: str | None = None):
        super().__init__(name=name)
        self.layers = [_as_layer(layer) for layer in layers]
        self.names = [l.name or f"{l.default_name()}_{i}" for i, l in enumerate(self.layers)]
        duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Sequential: layer names must be unique, {duplicates} repeat")

    def init(self, key, x):
        params, state = {}, {}
        for name, layer, k in zip(self.names, self.layers, _split(key, len(self.layers))):
            p, s = layer.init(k, x)
            if p:
                params[name] = p
            if s:
                state[name] = s
            x = _output_like(layer, p, s, x)
        return params, state

    def apply(self, params, state, x, *, train=False, rng=None):
        new_state = {}
        for name, layer, r in zip(self.names, self.layers, _split(rng, len(self.layers))):
            x, s = layer.apply(params.get(name, {}), state.get(name, {}), x, train=train, rng=r)
            if s:
                new_state[name] = s
        return x, new_state


class Residual(Module):
    """``block(x) + shortcut(x)``: a skip connection. The shortcut is the identity unless
    given (e.g. a strided 1x1 ``Conv2D`` when the block changes the shape). Params and state
    live under ``"block"`` and ``"shortcut"``."""

    def __init__(self, block: Module, shortcut: Module | None = None, *, name: str | None = None):
        super().__init__(name=name)
        self.block, self.shortcut = block, shortcut

    def _parts(self):
        return [("block", self.block)] + ([("shortcut", self.shortcut)] if self.shortcut else [])

    def init(self, key, x):
        params, state = {}, {}
        for (part, layer), k in zip(self._parts(), random.split(key)):
            p, s = layer.init(k, x)
            if p:
                params[part] = p
            if s:
                state[part] = s
        return params, state

    def apply(self, params, state, x, *, train=False, rng=None):
        outs, new_state = {"shortcut": x}, {}
        for (part, layer), r in zip(self._parts(), _split(rng, 2)):
            outs[part], s = layer.apply(params.get(part, {}), state.get(part, {}), x,
                                        train=train, rng=r)
            if s:
                new_state[part] = s
        y, skip = outs["block"], outs["shortcut"]
        if fnp.shape(y) != fnp.shape(skip):
            raise self._error(f"block output {fnp.shape(y)} and shortcut {fnp.shape(skip)} differ "
                              "in shape; give a shortcut layer that matches them")
        return y + skip, new_state


class Lambda(Module):
    """A parameter-free layer ``x -> fn(x)``; named after ``fn``."""

    def __init__(self, fn: Callable, *, name: str | None = None):
        super().__init__(name=name)
        self.fn = fn

    def default_name(self) -> str:
        name = getattr(self.fn, "__name__", "")
        return name if name.isidentifier() else "lambda"

    def apply(self, params, state, x, *, train=False, rng=None):
        return self.fn(x), state


def Activation(fn: Callable | str, *, name: str | None = None) -> Lambda:
    """An activation layer by name (``Activation("relu")``, see :data:`ACTIVATIONS`) or
    function (``Activation(funcgrad.nn.gelu)``)."""
    if isinstance(fn, str):
        if fn not in ACTIVATIONS:
            raise ValueError(f"unknown activation {fn!r}; choose from {sorted(ACTIVATIONS)}")
        fn = ACTIVATIONS[fn]
    return Lambda(fn, name=name)


class Flatten(Module):
    """``(N, ...) -> (N, prod(...))``."""

    def apply(self, params, state, x, *, train=False, rng=None):
        self._check_rank(x, 1, "(N, ...)", exact=False)
        return fnp.reshape(x, (fnp.shape(x)[0], -1)), state


# ---------------------------------------------------------------------------------------------
# Dense and embeddings


class Dense(Module):
    """``x @ w + b`` over the last axis; ``w`` is ``(in_features, features)``.
    Default init: LeCun normal weights (He normal suits ReLU nets), zero bias."""

    def __init__(self, features: int, *, use_bias: bool = True, w_init="lecun_normal",
                 b_init="zeros", name: str | None = None):
        super().__init__(name=name)
        if features <= 0:
            raise ValueError(f"Dense: features must be positive, got {features}")
        self.features, self.use_bias = features, use_bias
        self.w_init, self.b_init = initializers.get(w_init), initializers.get(b_init)

    def init(self, key, x):
        self._check_rank(x, 1, "(..., features)", exact=False)
        kw, kb = random.split(key)
        dtype = _param_dtype(x)
        params = {"w": self.w_init(kw, (fnp.shape(x)[-1], self.features), dtype)}
        if self.use_bias:
            params["b"] = self.b_init(kb, (self.features,), dtype)
        return params, {}

    def apply(self, params, state, x, *, train=False, rng=None):
        d_in = fnp.shape(params["w"])[0]
        if fnp.ndim(x) < 1 or fnp.shape(x)[-1] != d_in:
            raise self._error(f"expects {d_in} features on the last axis, got shape {fnp.shape(x)}")
        y = fnp.matmul(x, params["w"])
        return (y + params["b"] if self.use_bias else y), state


Linear = Dense


class Embedding(Module):
    """Integer ids ``(...)`` -> rows of a ``(num_embeddings, features)`` table, shape
    ``(..., features)``. Default init: N(0, 1), in ``dtype``."""

    def __init__(self, num_embeddings: int, features: int, *, init="normal", dtype=np.float32,
                 name: str | None = None):
        super().__init__(name=name)
        self.num_embeddings, self.features, self.dtype = num_embeddings, features, np.dtype(dtype)
        self.table_init = initializers.normal(1.0) if init == "normal" else initializers.get(init)

    def init(self, key, x):
        return {"table": self.table_init(key, (self.num_embeddings, self.features), self.dtype)}, {}

    def apply(self, params, state, x, *, train=False, rng=None):
        if _dtype(x).kind not in "iu":
            raise self._error(f"expects integer ids, got {_dtype(x)}")
        return fnp.take(params["table"], x, axis=0), state


# ---------------------------------------------------------------------------------------------
# Convolution and pooling (NCHW activations, OIHW kernels)

_NCHW = ("NCHW", "OIHW", "NCHW")


def _pair(v, what: str, minimum: int = 1) -> tuple[int, int]:
    """``v`` or ``(v, v)`` as a pair of ints, each at least ``minimum``."""
    pair = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (tuple, list)) else None
    if pair is None or not all(isinstance(i, int) for i in pair):
        raise TypeError(f"{what} must be an int or a pair of ints, got {v!r}")
    if len(pair) != 2:
        raise ValueError(f"{what} must be an int or a pair of ints, got {v!r}")
    if min(pair) < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {v!r}")
    return pair


def _padding(padding, what: str):
    """"SAME"/"VALID", an int, ``(ph, pw)``, or ``((top, bottom), (left, right))``; not negative."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"{what} must be 'SAME', 'VALID', an int or pairs, got {padding!r}")
        return padding.upper()
    if isinstance(padding, int):
        padding = (padding, padding)
    if not isinstance(padding, (tuple, list)) or len(padding) != 2:
        raise ValueError(f"{what} must be 'SAME', 'VALID', an int or one entry per spatial axis, "
                         f"got {padding!r}")
    return tuple(_pair(p, what, minimum=0) for p in padding)


def _conv(x, w, b, strides, padding, **dilations):
    """NCHW/OIHW ``lax.conv_general_dilated`` plus bias ``b`` (or None), with ``x`` and ``w``
    promoted to one dtype as ``matmul`` promotes them in :class:`Dense` (so integer images
    meet float kernels)."""
    dtype = np.result_type(_dtype(x), _dtype(w))
    y = lax.conv_general_dilated(fnp.asarray(x, dtype), fnp.asarray(w, dtype), strides, padding,
                                 dimension_numbers=_NCHW, **dilations)
    return y if b is None else y + fnp.reshape(b, (1, -1, 1, 1))


class Conv2D(Module):
    """2-D convolution of NCHW inputs with an OIHW kernel ``(features, in // groups, kh, kw)``.

    ``padding``: "SAME" (default), "VALID", an int, ``(ph, pw)`` or ``((top, bottom), (left,
    right))``; ``dilation`` spaces the kernel taps; ``groups`` splits the channels into
    independent convolutions (``groups == in_channels`` is depthwise). Default init: He
    normal with fan_in = in/groups * kh * kw, zero bias."""

    def __init__(self, features: int, kernel_size=3, *, stride=1, padding="SAME", dilation=1,
                 groups: int = 1, use_bias: bool = True, w_init="he_normal", b_init="zeros",
                 name: str | None = None):
        super().__init__(name=name)
        if features <= 0 or groups <= 0 or features % groups:
            raise ValueError(f"Conv2D: features ({features}) must be a positive multiple of "
                             f"groups ({groups})")
        self.features, self.kernel_size = features, _pair(kernel_size, "Conv2D: kernel_size")
        self.stride = _pair(stride, "Conv2D: stride")
        self.dilation = _pair(dilation, "Conv2D: dilation")
        self.padding, self.groups = _padding(padding, "Conv2D: padding"), groups
        self.use_bias = use_bias
        self.w_init, self.b_init = initializers.get(w_init), initializers.get(b_init)

    def init(self, key, x):
        self._check_rank(x, 4, "NCHW")
        cin = fnp.shape(x)[1]
        if cin % self.groups:
            raise self._error(f"input channels ({cin}) must be divisible by groups ({self.groups})")
        kw, kb = random.split(key)
        dtype = _param_dtype(x)
        params = {"w": self.w_init(kw, (self.features, cin // self.groups) + self.kernel_size, dtype)}
        if self.use_bias:
            params["b"] = self.b_init(kb, (self.features,), dtype)
        return params, {}

    def apply(self, params, state, x, *, train=False, rng=None):
        self._check_rank(x, 4, "NCHW")
        cin = fnp.shape(params["w"])[1] * self.groups
        if fnp.shape(x)[1] != cin:
            raise self._error(f"expects {cin} input channels (axis 1 of NCHW), got shape {fnp.shape(x)}")
        return _conv(x, params["w"], params["b"] if self.use_bias else None, self.stride,
                     self.padding, rhs_dilation=self.dilation,
                     feature_group_count=self.groups), state


class ConvTranspose2D(Module):
    """Transposed convolution: the input-gradient of a ``Conv2D`` with the same stride and
    padding, used to upsample. Kernel ``(in_channels, features, kh, kw)`` (PyTorch's
    layout); output size ``(H - 1) * stride - 2 * padding + kh``. Default init: He normal,
    zero bias."""

    def __init__(self, features: int, kernel_size=3, *, stride=1, padding: int = 0,
                 use_bias: bool = True, w_init="he_normal", b_init="zeros", name: str | None = None):
        super().__init__(name=name)
        if features <= 0:
            raise ValueError(f"ConvTranspose2D: features must be positive, got {features}")
        self.features = features
        self.kernel_size = _pair(kernel_size, "ConvTranspose2D: kernel_size")
        self.stride = _pair(stride, "ConvTranspose2D: stride")
        self.padding = _pair(padding, "ConvTranspose2D: padding", minimum=0)
        if any(p >= k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"ConvTranspose2D: padding {self.padding} must be smaller than the "
                             f"kernel {self.kernel_size}")
        self.use_bias = use_bias
        self.w_init, self.b_init = initializers.get(w_init), initializers.get(b_init)

    def init(self, key, x):
        self._check_rank(x, 4, "NCHW")
        kw, kb = random.split(key)
        dtype = _param_dtype(x)
        params = {"w": self.w_init(kw, (fnp.shape(x)[1], self.features) + self.kernel_size, dtype)}
        if self.use_bias:
            params["b"] = self.b_init(kb, (self.features,), dtype)
        return params, {}

    def apply(self, params, state, x, *, train=False, rng=None):
        self._check_rank(x, 4, "NCHW")
        cin = fnp.shape(params["w"])[0]
        if fnp.shape(x)[1] != cin:
            raise self._error(f"expects {cin} input channels (axis 1 of NCHW), got shape {fnp.shape(x)}")
        # A stride-1 convolution over the stride-dilated input with the spatially flipped
        # kernel, input/output channels swapped, padded by k - 1 - padding.
        w = fnp.flip(fnp.swapaxes(params["w"], 0, 1), (2, 3))
        pads = tuple((k - 1 - p, k - 1 - p) for k, p in zip(self.kernel_size, self.padding))
        return _conv(x, w, params["b"] if self.use_bias else None, (1, 1), pads,
                     lhs_dilation=self.stride), state


class _Pool2D(Module):
    """Pooling over ``window`` patches of NCHW inputs; ``stride`` defaults to the window."""

    def __init__(self, window=2, stride=None, padding="VALID", *, name: str | None = None):
        super().__init__(name=name)
        label = type(self).__name__
        self.window = _pair(window, f"{label}: window")
        self.stride = self.window if stride is None else _pair(stride, f"{label}: stride")
        self.padding = _padding(padding, f"{label}: padding")

    def _reduce(self, x, computation):
        """``reduce_window`` over the spatial axes of NCHW ``x``."""
        self._check_rank(x, 4, "NCHW")
        pads = self.padding if isinstance(self.padding, str) else ((0, 0), (0, 0)) + self.padding
        return lax.reduce_window(x, None, computation, (1, 1) + self.window, (1, 1) + self.stride,
                                 pads)


class MaxPool2D(_Pool2D):
    """Max over each window (SAME padding never wins: it is -inf)."""

    def apply(self, params, state, x, *, train=False, rng=None):
        return self._reduce(x, lax.max), state


class AvgPool2D(_Pool2D):
    """Mean over each window; with padding, the mean is over the window's real pixels only
    (padding is not counted)."""

    def apply(self, params, state, x, *, train=False, rng=None):
        total = self._reduce(x, lax.add)
        if self.padding == "VALID":
            return total / math.prod(self.window), state
        counts = self._reduce(np.ones((1, 1) + fnp.shape(x)[2:], _dtype(x)), lax.add)
        return total / counts, state


class GlobalAvgPool(Module):
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)``."""

    def apply(self, params, state, x, *, train=False, rng=None):
        self._check_rank(x, 3, "(N, C, H, ...)", exact=False)
        return fnp.mean(x, axis=tuple(range(2, fnp.ndim(x)))), state


# ---------------------------------------------------------------------------------------------
# Normalization and dropout


def _affine(xhat, params, shape):
    return xhat * fnp.reshape(params["gamma"], shape) + fnp.reshape(params["beta"], shape)


class BatchNorm(Module):
    """Batch normalization of the features on ``axis`` (1: the channels of NCHW inputs, or
    the features of ``(N, D)`` inputs), over all other axes.

    ``train=True``: normalize with the batch mean and (biased) variance, and return the
    running averages updated as in the course material,
    ``running = momentum * running + (1 - momentum) * batch``; ``train=False``: normalize
    with the running averages (state returned unchanged). Then scale by ``gamma`` and shift
    by ``beta`` (initialized to 1 and 0). State: ``{"mean", "var"}``, initially 0 and 1."""

    def __init__(self, *, momentum: float = 0.9, eps: float = 1e-5, axis: int = 1,
                 name: str | None = None):
        super().__init__(name=name)
        if not 0 <= momentum < 1:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1), got {momentum}")
        self.momentum, self.eps, self.axis = momentum, eps, axis

    def _axes(self, x) -> tuple[int, tuple[int, ...]]:
        if fnp.ndim(x) < 2 or not -fnp.ndim(x) <= self.axis < fnp.ndim(x):
            raise self._error(f"expects (N, C, ...) inputs with features on axis {self.axis}, "
                              f"got shape {fnp.shape(x)}")
        axis = self.axis % fnp.ndim(x)
        return axis, tuple(i for i in range(fnp.ndim(x)) if i != axis)

    def init(self, key, x):
        axis, _ = self._axes(x)
        c, dtype = fnp.shape(x)[axis], _param_dtype(x)
        params = {"gamma": np.ones((c,), dtype), "beta": np.zeros((c,), dtype)}
        return params, {"mean": np.zeros((c,), dtype), "var": np.ones((c,), dtype)}

    def apply(self, params, state, x, *, train=False, rng=None):
        axis, reduce_axes = self._axes(x)
        c = fnp.shape(params["gamma"])[0]
        if fnp.shape(x)[axis] != c:
            raise self._error(f"expects {c} features on axis {axis}, got shape {fnp.shape(x)}")
        if not {"mean", "var"} <= set(state):
            raise self._error(f"needs its state {{'mean', 'var'}} from init (params, state = "
                              f"model.init(key, x)), got keys {sorted(state)}")
        if train and math.prod(fnp.shape(x)[a] for a in reduce_axes) == 1:
            raise self._error(f"training mode needs more than one value per feature to compute "
                              f"batch statistics, got shape {fnp.shape(x)}")
        shape = tuple(c if i == axis else 1 for i in range(fnp.ndim(x)))
        if train:
            mean = fnp.mean(x, axis=reduce_axes)
            var = fnp.mean(fnp.square(x - fnp.reshape(mean, shape)), axis=reduce_axes)
            m = self.momentum
            state = {"mean": m * state["mean"] + (1 - m) * funcgrad.stop_gradient(mean),
                     "var": m * state["var"] + (1 - m) * funcgrad.stop_gradient(var)}
        else:
            mean, var = state["mean"], state["var"]
        xhat = (x - fnp.reshape(mean, shape)) / fnp.sqrt(fnp.reshape(var, shape) + self.eps)
        return _affine(xhat, params, shape), state


class LayerNorm(Module):
    """Normalize each example over ``axes`` (default: the last), then scale and shift with
    learned ``gamma``/``beta`` shaped like those axes. Same in training and evaluation."""

    def __init__(self, *, axes: int | Sequence[int] = -1, eps: float = 1e-5, name: str | None = None):
        super().__init__(name=name)
        self.axes = (axes,) if isinstance(axes, int) else tuple(axes)
        self.eps = eps

    def _axes(self, x) -> tuple[int, ...]:
        nd = fnp.ndim(x)
        if not all(-nd <= a < nd for a in self.axes):
            raise self._error(f"axes {self.axes} out of range for shape {fnp.shape(x)}")
        return tuple(sorted(a % nd for a in self.axes))

    def init(self, key, x):
        shape, dtype = tuple(fnp.shape(x)[a] for a in self._axes(x)), _param_dtype(x)
        return {"gamma": np.ones(shape, dtype), "beta": np.zeros(shape, dtype)}, {}

    def apply(self, params, state, x, *, train=False, rng=None):
        axes = self._axes(x)
        expected = tuple(fnp.shape(x)[a] for a in axes)
        if fnp.shape(params["gamma"]) != expected:
            raise self._error(f"normalized axes {axes} of shape {fnp.shape(x)} have sizes {expected}, "
                              f"the layer was initialized for {fnp.shape(params['gamma'])}")
        mean = fnp.mean(x, axis=axes, keepdims=True)
        var = fnp.mean(fnp.square(x - mean), axis=axes, keepdims=True)
        shape = tuple(n if i in axes else 1 for i, n in enumerate(fnp.shape(x)))
        return _affine((x - mean) / fnp.sqrt(var + self.eps), params, shape), state


class GroupNorm(Module):
    """Normalize each example over groups of channels (axis 1) together with all spatial
    positions; per-channel ``gamma``/``beta``. ``num_groups=1`` normalizes over everything
    but the batch; ``num_groups=C`` is instance norm. Same in training and evaluation."""

    def __init__(self, num_groups: int, *, eps: float = 1e-5, name: str | None = None):
        super().__init__(name=name)
        if num_groups <= 0:
            raise ValueError(f"GroupNorm: num_groups must be positive, got {num_groups}")
        self.num_groups, self.eps = num_groups, eps

    def _check(self, x):
        self._check_rank(x, 2, "(N, C, ...)", exact=False)
        if fnp.shape(x)[1] % self.num_groups:
            raise self._error(f"channels ({fnp.shape(x)[1]}) must be divisible by num_groups "
                              f"({self.num_groups})")

    def init(self, key, x):
        self._check(x)
        c, dtype = fnp.shape(x)[1], _param_dtype(x)
        return {"gamma": np.ones((c,), dtype), "beta": np.zeros((c,), dtype)}, {}

    def apply(self, params, state, x, *, train=False, rng=None):
        self._check(x)
        shape = fnp.shape(x)
        groups = fnp.reshape(x, (shape[0], self.num_groups, -1))
        mean = fnp.mean(groups, axis=2, keepdims=True)
        var = fnp.mean(fnp.square(groups - mean), axis=2, keepdims=True)
        xhat = fnp.reshape((groups - mean) / fnp.sqrt(var + self.eps), shape)
        return _affine(xhat, params, (1, shape[1]) + (1,) * (len(shape) - 2)), state


class Dropout(Module):
    """Inverted dropout with a drop *rate*, as JAX and PyTorch (the course material's ``p``
    is the keep probability, ``1 - rate``). With ``train=True`` each unit is zeroed with
    probability ``rate`` and the others are scaled by ``1 / (1 - rate)``, so the expected
    activation is unchanged; with ``train=False`` it is the identity. Training needs ``rng``."""

    def __init__(self, rate: float, *, name: str | None = None):
        super().__init__(name=name)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = rate

    def apply(self, params, state, x, *, train=False, rng=None):
        if not train or self.rate == 0:
            return x, state
        if rng is None:
            raise self._error("training mode needs a PRNG key: apply(..., train=True, rng=key)")
        keep = 1.0 - self.rate
        mask = random.bernoulli(rng, keep, fnp.shape(x))
        return fnp.where(mask, x / keep, fnp.zeros_like(x)), state


# ---------------------------------------------------------------------------------------------
# Recurrent layers: a cell is one time step, RNN runs it over a sequence with lax.scan


class Cell:
    """One recurrent step, holding hyperparameters only: ``init(key, x_t)`` for step inputs
    ``(N, D)``, ``initial_carry(batch_shape, dtype)``, and ``step(params, carry, x_t) ->
    (carry, y_t)``. Run it over sequences with :class:`RNN`. Default init: LeCun normal
    input weights, orthogonal recurrent weights, zero bias."""

    gates = 1

    def __init__(self, hidden: int):
        if hidden <= 0:
            raise ValueError(f"{type(self).__name__}: hidden must be positive, got {hidden}")
        self.hidden = hidden

    def init(self, key, x):
        kx, kh = random.split(key)
        d, h, g = fnp.shape(x)[-1], self.hidden, self.gates
        dtype = _param_dtype(x)
        return {"wx": initializers.lecun_normal()(kx, (d, g * h), dtype),
                "wh": initializers.orthogonal()(kh, (h, g * h), dtype),
                "b": np.zeros((g * h,), dtype)}

    def initial_carry(self, batch_shape: tuple[int, ...], dtype) -> tuple:
        return (fnp.zeros(batch_shape + (self.hidden,), dtype),)

    def step(self, params, carry: tuple, x) -> tuple[tuple, object]:
        raise NotImplementedError(f"{type(self).__name__} must define step")

    def __repr__(self):
        return f"{type(self).__name__}({self.hidden})"


class RNNCell(Cell):
    """Vanilla RNN step (the course's): ``h = tanh(x Wx + h Wh + b)``."""

    def step(self, params, carry, x):
        (h,) = carry
        h = fnp.tanh(x @ params["wx"] + h @ params["wh"] + params["b"])
        return (h,), h


class LSTMCell(Cell):
    """LSTM step as in the course: ``a = x Wx + h Wh + b`` split into gates ``i, f, o, g``
    (``Wx: (D, 4H)``, ``Wh: (H, 4H)``); ``c = sigmoid(f) * c + sigmoid(i) * tanh(g)``,
    ``h = sigmoid(o) * tanh(c)``. The carry is ``(h, c)``; the forget-gate bias starts at
    ``forget_bias``."""

    gates = 4

    def __init__(self, hidden: int, *, forget_bias: float = 1.0):
        super().__init__(hidden)
        self.forget_bias = forget_bias

    def init(self, key, x):
        params = super().init(key, x)
        params["b"][self.hidden:2 * self.hidden] = self.forget_bias
        return params

    def initial_carry(self, batch_shape, dtype):
        return super().initial_carry(batch_shape, dtype) + super().initial_carry(batch_shape, dtype)

    def step(self, params, carry, x):
        h, c = carry
        i, f, o, g = fnp.split(x @ params["wx"] + h @ params["wh"] + params["b"], 4, axis=-1)
        c = fnn.sigmoid(f) * c + fnn.sigmoid(i) * fnp.tanh(g)
        h = fnn.sigmoid(o) * fnp.tanh(c)
        return (h, c), h


class GRUCell(Cell):
    """GRU step: gates ``z, r = sigmoid(x Wx + h Wh + b)`` (first two thirds);
    ``n = tanh(x Wxn + bn + r * (h Whn))``; ``h = (1 - z) * n + z * h``."""

    gates = 3

    def step(self, params, carry, x):
        (h,) = carry
        xz, xr, xn = fnp.split(x @ params["wx"] + params["b"], 3, axis=-1)
        hz, hr, hn = fnp.split(h @ params["wh"], 3, axis=-1)
        z, r = fnn.sigmoid(xz + hz), fnn.sigmoid(xr + hr)
        n = fnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return (h,), h


class RNN(Module):
    """Run ``cell`` over sequences ``(N, T, D) -> (N, T, H)`` with ``lax.scan`` (the step is
    traced once, whatever ``T``). ``apply(..., carry=...)`` starts from a given carry
    (zeros by default); with ``return_carry=True`` the output is ``(ys, final_carry)``.
    ``reverse=True`` runs from the last step to the first."""

    def __init__(self, cell: Cell, *, return_carry: bool = False, reverse: bool = False,
                 name: str | None = None):
        super().__init__(name=name)
        self.cell, self.return_carry, self.reverse = cell, return_carry, reverse

    def default_name(self) -> str:
        return type(self.cell).__name__.lower().removesuffix("cell") or "rnn"

    def init(self, key, x):
        self._check_rank(x, 3, "(N, T, D)")
        if fnp.shape(x)[1] == 0:
            raise self._error(f"needs an example input with at least one time step, got shape "
                              f"{fnp.shape(x)}")
        return self.cell.init(key, x[:, 0]), {}

    def _check_carry(self, carry, initial: tuple):
        """A given carry must be shaped like the cell's initial one (``(h, c)`` for an LSTM)."""
        want = tuple(fnp.shape(c) for c in initial)
        got = tuple(fnp.shape(c) for c in carry) if isinstance(carry, (tuple, list)) else None
        if got != want:
            given = (f"shapes {got}" if got is not None
                     else f"{type(carry).__name__} of shape {fnp.shape(carry)}")
            raise self._error(f"{type(self.cell).__name__}'s carry is a tuple of {len(want)} "
                              f"array(s) shaped {want} (as cell.initial_carry gives), got {given}")

    def apply(self, params, state, x, *, train=False, rng=None, carry=None):
        self._check_rank(x, 3, "(N, T, D)")
        d = fnp.shape(params["wx"])[0]
        if fnp.shape(x)[2] != d:
            raise self._error(f"expects {d} features per step, got shape {fnp.shape(x)}")
        initial = self.cell.initial_carry(fnp.shape(x)[:1], _dtype(x))
        if carry is None:
            carry = initial
        else:
            self._check_carry(carry, initial)
        carry, ys = lax.scan(lambda c, xt: self.cell.step(params, c, xt), tuple(carry),
                             fnp.swapaxes(x, 0, 1), reverse=self.reverse)
        ys = fnp.swapaxes(ys, 0, 1)
        return ((ys, carry) if self.return_carry else ys), state


# ---------------------------------------------------------------------------------------------
# Activations


def maxout(x, num_pieces: int, axis: int = -1):
    """Maxout: the max over each run of ``num_pieces`` consecutive units along ``axis``
    (a Dense layer of ``k * num_pieces`` features followed by ``maxout`` gives ``k`` units)."""
    shape = fnp.shape(x)
    axis %= len(shape)
    if shape[axis] % num_pieces:
        raise ValueError(f"maxout: axis {axis} of shape {shape} is not divisible by {num_pieces}")
    grouped = shape[:axis] + (shape[axis] // num_pieces, num_pieces) + shape[axis + 1:]
    return fnp.max(fnp.reshape(x, grouped), axis=axis + 1)


ACTIVATIONS: dict[str, Callable] = {
    "relu": fnn.relu, "leaky_relu": fnn.leaky_relu, "elu": fnn.elu, "gelu": fnn.gelu,
    "selu": fnn.selu, "sigmoid": fnn.sigmoid, "tanh": fnp.tanh, "softplus": fnn.softplus,
    "swish": fnn.swish, "silu": fnn.silu, "softmax": fnn.softmax, "log_softmax": fnn.log_softmax,
}
"""Activation functions by name (all from ``funcgrad.nn``, plus ``tanh``)."""
