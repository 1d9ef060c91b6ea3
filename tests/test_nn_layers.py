"""funcgrad_nn layers: values against NumPy references, the same results eagerly, under jit
and under vmap (per-example), float64 gradients (check_grads), batch-norm and dropout
semantics, naming, and the errors for wrong inputs."""
from __future__ import annotations

import numpy as np
import pytest

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import lax, random
from funcgrad.test_util import check_grads
from funcgrad.tree_util import tree_leaves, tree_map
from funcgrad_nn import layers as L
from primitive_harness import count_eqns

KEY = random.key(0)


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def _ids(shape, n=7, seed=0):
    return np.random.default_rng(seed).integers(0, n, shape).astype(np.int32)


def _nonzero_bias(params):
    """Give every zero-initialized leaf (biases, betas) random values, so tests see them."""
    rng = np.random.default_rng(5)
    return tree_map(lambda p: p + 0.3 * rng.normal(size=np.shape(p)) if not np.any(p) else p, params)


# id -> (layer, example input); every case is float64 so gradients can be checked tightly.
CASES = {
    "dense": (L.Dense(5), _x((4, 6))),
    "dense_nobias_3d": (L.Dense(3, use_bias=False), _x((4, 2, 6))),
    "conv_same": (L.Conv2D(4, 3), _x((2, 3, 6, 6))),
    "conv_strided_groups": (L.Conv2D(4, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2),
                            _x((2, 4, 7, 8))),
    "conv_valid_nobias": (L.Conv2D(3, 2, padding="VALID", use_bias=False), _x((2, 2, 5, 5))),
    "conv_transpose": (L.ConvTranspose2D(3, 3, stride=2, padding=1), _x((2, 2, 4, 4))),
    "max_pool": (L.MaxPool2D(2), _x((2, 3, 6, 6))),
    "max_pool_same": (L.MaxPool2D(3, 2, "SAME"), _x((2, 2, 5, 5))),
    "avg_pool": (L.AvgPool2D(2), _x((2, 3, 6, 6))),
    "avg_pool_padded": (L.AvgPool2D(3, 1, padding=1), _x((2, 2, 5, 5))),
    "global_avg_pool": (L.GlobalAvgPool(), _x((2, 3, 4, 5))),
    "flatten": (L.Flatten(), _x((2, 3, 2, 2))),
    "batch_norm_spatial": (L.BatchNorm(), _x((4, 3, 3, 3))),
    "batch_norm_dense": (L.BatchNorm(), _x((6, 5))),
    "layer_norm": (L.LayerNorm(), _x((3, 7))),
    "layer_norm_axes": (L.LayerNorm(axes=(1, 2, 3)), _x((2, 3, 2, 2))),
    "group_norm": (L.GroupNorm(2), _x((2, 4, 3, 3))),
    "dropout": (L.Dropout(0.5), _x((3, 8))),
    "embedding": (L.Embedding(7, 4, dtype=np.float64), _ids((3, 5))),
    "rnn": (L.RNN(L.RNNCell(4)), _x((2, 5, 3))),
    "lstm": (L.RNN(L.LSTMCell(4)), _x((2, 5, 3))),
    "gru_reverse": (L.RNN(L.GRUCell(4), reverse=True), _x((2, 5, 3))),
    "residual": (L.Residual(L.Sequential([L.Conv2D(3, 3), L.Activation("tanh")])), _x((2, 3, 4, 4))),
    "residual_shortcut": (L.Residual(L.Conv2D(4, 3, stride=2), L.Conv2D(4, 1, stride=2)),
                          _x((2, 3, 4, 4))),
    "sequential": (L.Sequential([L.Conv2D(3, 3), L.BatchNorm(), L.Activation("relu"),
                                 L.MaxPool2D(2), L.Flatten(), L.Dropout(0.2), L.Dense(2)]),
                   _x((4, 2, 4, 4))),
    "activation": (L.Activation("gelu"), _x((3, 4))),
}


def _setup(case):
    layer, x = CASES[case]
    params, state = layer.init(KEY, x)
    return layer, _nonzero_bias(params), state, x


@pytest.mark.parametrize("case", CASES)
def test_eager_jit_and_vmap_agree(case):
    """Evaluation mode: jit gives the eager result; vmap of the layer on single examples
    (``x[None]``) gives the batched result, for batched and unbatched parameters."""
    layer, params, state, x = _setup(case)
    y, new_state = layer.apply(params, state, x)
    assert all(a is b for a, b in zip(tree_leaves(new_state), tree_leaves(state)))
    y_jit, _ = funcgrad.jit(lambda p, s, v: layer.apply(p, s, v))(params, state, x)
    np.testing.assert_allclose(y_jit, y, rtol=1e-12, atol=1e-12)

    def one(p, v):
        return layer.apply(p, state, v[None])[0][0]
    np.testing.assert_allclose(funcgrad.vmap(one, in_axes=(None, 0))(params, x), y, rtol=1e-12, atol=1e-12)
    if not params:
        return
    # Per-example parameters (here: scaled copies), batched along a non-leading axis.
    scales = np.array([1.0, -0.5])
    stacked = tree_map(lambda p: np.stack([p * s for s in scales], axis=-1), params)
    ys = funcgrad.vmap(one, in_axes=(-1, None), out_axes=-1)(stacked, x[0])
    for i, s in enumerate(scales):
        expect = layer.apply(tree_map(lambda p: p * s, params), state, x[:1])[0][0]
        np.testing.assert_allclose(ys[..., i], expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c != "embedding"])
def test_gradients_float64(case):
    """Forward and reverse derivatives w.r.t. params and input match finite differences,
    in training mode (batch statistics, a fixed dropout mask)."""
    layer, params, state, x = _setup(case)

    def f(p, v):
        return layer.apply(p, state, v, train=True, rng=random.key(3))[0]

    check_grads(f, (params, x), order=1, eps=1e-6)


def test_embedding_gradients_float64():
    layer, params, state, ids = _setup("embedding")
    check_grads(lambda p: layer.apply(p, state, ids)[0], (params,), order=2)
    g = funcgrad.grad(lambda p: fnp.sum(layer.apply(p, state, ids)[0]))(params)["table"]
    np.testing.assert_array_equal(g[:, 0], np.bincount(ids.ravel(), minlength=7))


@pytest.mark.parametrize("case", ["dense", "batch_norm_spatial", "layer_norm", "group_norm", "lstm"])
def test_second_order_gradients(case):
    layer, params, state, x = _setup(case)
    check_grads(lambda p, v: layer.apply(p, state, v, train=True)[0], (params, x), order=2, eps=1e-5)


def test_per_example_gradients_with_vmap():
    """vmap(grad) over examples equals a loop of grads, under jit too."""
    model = L.Sequential([L.Conv2D(3, 3), L.Activation("relu"), L.MaxPool2D(2), L.Flatten(),
                          L.Dense(4)])
    x, y = _x((5, 2, 4, 4), seed=1), np.array([0, 1, 2, 3, 1])
    params, state = model.init(KEY, x)

    def loss(p, xi, yi):
        logits = model.apply(p, state, xi[None])[0][0]
        return -funcgrad.nn.log_softmax(logits)[yi]

    per_example = funcgrad.vmap(funcgrad.grad(loss), in_axes=(None, 0, 0))
    grads = per_example(params, x, y)
    jitted = funcgrad.jit(per_example)(params, x, y)
    for i in range(len(x)):
        gi = funcgrad.grad(loss)(params, x[i], y[i])
        for a, b, c in zip(tree_leaves(grads), tree_leaves(jitted), tree_leaves(gi)):
            np.testing.assert_allclose(a[i], c, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(b[i], c, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Values against NumPy references


def _conv_reference(x, w, stride, pads, dilation, groups):
    """Direct NCHW/OIHW convolution (cross-correlation), with explicit loops over taps."""
    x = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    n, cin, h, wd = x.shape
    cout, cg, kh, kw = w.shape
    eh, ew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    oh, ow = (h - eh) // stride[0] + 1, (wd - ew) // stride[1] + 1
    out = np.zeros((n, cout, oh, ow))
    per = cout // groups
    for o in range(cout):
        g = o // per
        for i in range(kh):
            for j in range(kw):
                patch = x[:, g * cg:(g + 1) * cg, i * dilation[0]:i * dilation[0] + stride[0] * oh:stride[0],
                          j * dilation[1]:j * dilation[1] + stride[1] * ow:stride[1]]
                out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    return out


@pytest.mark.parametrize("kwargs,pads", [
    (dict(), ((1, 1), (1, 1))),                                       # SAME, 3x3
    (dict(stride=2, padding=1, dilation=(1, 2), groups=2), ((1, 1), (1, 1))),
    (dict(padding="VALID", stride=(1, 2)), ((0, 0), (0, 0))),
    (dict(padding=((0, 2), (1, 0))), ((0, 2), (1, 0))),
])
def test_conv2d_matches_direct_convolution(kwargs, pads):
    x = _x((2, 4, 7, 6))
    layer = L.Conv2D(6, 3, **kwargs)
    params, _ = layer.init(KEY, x)
    params = _nonzero_bias(params)
    y, _ = layer.apply(params, {}, x)
    ref = _conv_reference(x, params["w"], layer.stride, pads, layer.dilation, layer.groups)
    np.testing.assert_allclose(y, ref + params["b"][:, None, None], rtol=1e-10, atol=1e-10)


def test_conv_transpose_is_the_input_gradient_of_conv():
    """ConvTranspose2D(x) = J^T x for the Conv2D with the same kernel, stride and padding;
    its output size is (H - 1) * stride - 2 * padding + k."""
    x = _x((2, 3, 4, 5))
    layer = L.ConvTranspose2D(2, 3, stride=2, padding=1, use_bias=False)
    params, _ = layer.init(KEY, x)
    y, _ = layer.apply(params, {}, x)
    assert y.shape == (2, 2, 7, 9)
    conv = L.Conv2D(3, 3, stride=2, padding=1, use_bias=False)
    _, pullback = funcgrad.vjp(lambda z: conv.apply({"w": params["w"]}, {}, z)[0], np.zeros(y.shape))
    np.testing.assert_allclose(y, pullback(x)[0], rtol=1e-12, atol=1e-12)


def test_pooling_values():
    x = _x((2, 3, 4, 6))
    windows = x.reshape(2, 3, 2, 2, 3, 2)
    np.testing.assert_array_equal(L.MaxPool2D(2).apply({}, {}, x)[0], windows.max(axis=(3, 5)))
    np.testing.assert_allclose(L.AvgPool2D(2).apply({}, {}, x)[0], windows.mean(axis=(3, 5)))
    # Padded average pooling divides by the number of real pixels in each window.
    y = L.AvgPool2D(3, 1, padding=1).apply({}, {}, x)[0]
    np.testing.assert_allclose(y[..., 0, 0], x[..., :2, :2].mean(axis=(2, 3)))
    np.testing.assert_allclose(y[..., 1, 1], x[..., :3, :3].mean(axis=(2, 3)))
    # SAME max pooling never picks the padding, even for negative inputs.
    assert L.MaxPool2D(3, 1, "SAME").apply({}, {}, -np.abs(x))[0].max() < 0
    np.testing.assert_allclose(L.GlobalAvgPool().apply({}, {}, x)[0], x.mean(axis=(2, 3)))


def test_norm_layer_values():
    x = _x((4, 6, 2, 3))
    ln, _ = L.LayerNorm(axes=(1, 2, 3)).apply(*L.LayerNorm(axes=(1, 2, 3)).init(KEY, x), x)
    flat = x.reshape(4, -1)
    ref = (flat - flat.mean(1, keepdims=True)) / np.sqrt(flat.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln.reshape(4, -1), ref, rtol=1e-10)
    gn = L.GroupNorm(3)
    params = _nonzero_bias(gn.init(KEY, x)[0])
    y, _ = gn.apply(params, {}, x)
    g = x.reshape(4, 3, -1)
    ref = ((g - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True) + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(y, ref + params["beta"][:, None, None], rtol=1e-10)


def test_lstm_matches_the_course_step():
    x = _x((2, 4, 3))
    layer = L.RNN(L.LSTMCell(5), return_carry=True)
    params, _ = layer.init(KEY, x)
    assert np.all(params["b"][5:10] == 1.0) and not np.any(params["b"][:5])
    (ys, (h_last, c_last)), _ = layer.apply(params, {}, x)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    h, c = np.zeros((2, 5)), np.zeros((2, 5))
    for t in range(4):
        a = x[:, t] @ params["wx"] + h @ params["wh"] + params["b"]
        i, f, o, g = np.split(a, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        np.testing.assert_allclose(ys[:, t], h, rtol=1e-10)
    np.testing.assert_allclose(h_last, h, rtol=1e-10)
    np.testing.assert_allclose(c_last, c, rtol=1e-10)


def test_rnn_scan_traces_the_step_once():
    """The step is traced once: the jaxpr does not grow with the sequence length."""
    layer = L.RNN(L.GRUCell(3))
    params, _ = layer.init(KEY, _x((1, 2, 2)))
    sizes = {count_eqns(funcgrad.make_jaxpr(lambda v: layer.apply(params, {}, v)[0])(_x((1, t, 2))))
             for t in (2, 50)}
    assert len(sizes) == 1


def test_maxout():
    x = _x((3, 6))
    np.testing.assert_array_equal(L.maxout(x, 3), x.reshape(3, 2, 3).max(-1))
    with pytest.raises(ValueError, match="not divisible by 4"):
        L.maxout(x, 4)


# ---------------------------------------------------------------------------------------------
# Batch norm and dropout semantics


def test_batch_norm_training_uses_batch_statistics_and_updates_running_averages():
    x = 3.0 + 2.0 * _x((8, 3, 4, 4))
    bn = L.BatchNorm(momentum=0.9)
    params, state = bn.init(KEY, x)
    assert set(state) == {"mean", "var"} and np.all(state["var"] == 1) and not np.any(state["mean"])
    y, new = bn.apply(params, state, x, train=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-10)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-3)
    np.testing.assert_allclose(new["mean"], 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * x.var(axis=(0, 2, 3)), rtol=1e-12)
    # The running averages converge to the statistics of what is seen.
    state = new
    step = funcgrad.jit(lambda s, v: bn.apply(params, s, v, train=True)[1])
    for _ in range(200):
        state = step(state, x)
    np.testing.assert_allclose(state["mean"], x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(state["var"], x.var(axis=(0, 2, 3)), rtol=1e-6)


def test_batch_norm_eval_uses_running_statistics():
    x = _x((5, 4))
    bn = L.BatchNorm(eps=1e-3)
    params = {"gamma": np.array([1.0, 2.0, 0.5, 1.0]), "beta": np.array([0.0, 1.0, -1.0, 2.0])}
    state = {"mean": np.array([0.5, -1.0, 0.0, 2.0]), "var": np.array([4.0, 1.0, 0.25, 9.0])}
    y, same = bn.apply(params, state, x, train=False)
    assert same is state
    expect = (x - state["mean"]) / np.sqrt(state["var"] + 1e-3) * params["gamma"] + params["beta"]
    np.testing.assert_allclose(y, expect, rtol=1e-12)
    # Eval output does not depend on the rest of the batch; train output does.
    np.testing.assert_allclose(bn.apply(params, state, x[:2])[0], y[:2], rtol=1e-12)
    assert not np.allclose(bn.apply(params, state, x[:2], train=True)[0],
                           bn.apply(params, state, x, train=True)[0][:2])


def test_batch_norm_running_averages_carry_no_gradient():
    x = _x((6, 3))
    bn = L.BatchNorm()
    params, state = bn.init(KEY, x)
    g = funcgrad.grad(lambda v: fnp.sum(bn.apply(params, state, v, train=True)[1]["mean"]))(x)
    assert not np.any(g)


def test_dropout_scaling_and_modes():
    x = np.ones((200, 500), np.float32)
    drop = L.Dropout(0.3)
    assert drop.apply({}, {}, x)[0] is x                               # eval: identity
    y, _ = drop.apply({}, {}, x, train=True, rng=random.key(1))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01                               # drop rate
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)            # inverted scaling
    assert abs(y.mean() - 1.0) < 0.01                                  # mean preserved
    again, _ = drop.apply({}, {}, x, train=True, rng=random.key(1))
    np.testing.assert_array_equal(again, y)
    jitted, _ = funcgrad.jit(lambda v, k: drop.apply({}, {}, v, train=True, rng=k))(x, random.key(1))
    np.testing.assert_array_equal(jitted, y)
    other, _ = drop.apply({}, {}, x, train=True, rng=random.key(2))
    assert np.any(other != y)
    assert L.Dropout(0.0).apply({}, {}, x, train=True)[0] is x


def test_dropout_errors():
    with pytest.raises(ValueError, match="Dropout: training mode needs a PRNG key"):
        L.Dropout(0.5).apply({}, {}, np.ones(3), train=True)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        L.Dropout(1.0)


def test_dropout_under_vmap_with_per_example_keys():
    x = np.ones((4, 50))
    drop = L.Dropout(0.5)
    keys = random.split(random.key(0), 4)
    y = funcgrad.vmap(lambda v, k: drop.apply({}, {}, v, train=True, rng=k)[0])(x, keys)
    for i in range(4):
        np.testing.assert_array_equal(y[i], drop.apply({}, {}, x[i], train=True, rng=keys[i])[0])
    assert len({tuple(r != 0) for r in y}) == 4


# ---------------------------------------------------------------------------------------------
# Containers, naming, custom layers


def test_sequential_names_params_and_state_by_layer():
    model = L.Sequential([L.Conv2D(4, 3), L.BatchNorm(), L.Activation("relu"), L.Flatten(),
                          L.Dense(3, name="head")])
    assert model.names == ["conv2d_0", "batch_norm_1", "relu_2", "flatten_3", "head"]
    params, state = model.init(KEY, np.zeros((2, 1, 4, 4), np.float32))
    assert set(params) == {"conv2d_0", "batch_norm_1", "head"}
    assert set(state) == {"batch_norm_1"}
    assert params["head"]["w"].shape == (64, 3) and params["head"]["w"].dtype == np.float32
    assert [L.RNN(L.LSTMCell(2)).default_name(), L.MaxPool2D().default_name(),
            L.ConvTranspose2D(2).default_name()] == ["lstm", "max_pool2d", "conv_transpose2d"]
    with pytest.raises(ValueError, match=r"names must be unique, \['a'\] repeat"):
        L.Sequential([L.Dense(2, name="a"), L.Dense(2, name="a")])


def test_sequential_passes_train_and_distinct_rngs():
    model = L.Sequential([L.Dropout(0.5), L.Dropout(0.5)])
    x = np.ones((1, 1000))
    y, _ = model.apply({}, {}, x, train=True, rng=random.key(0))
    assert abs((y != 0).mean() - 0.25) < 0.05                          # independent masks
    assert model.apply({}, {}, x)[0] is x


def test_custom_layer_in_a_few_lines():
    class Scale(L.Module):
        def init(self, key, x):
            return {"s": np.full(x.shape[-1:], 2.0, x.dtype)}, {}

        def apply(self, params, state, x, *, train=False, rng=None):
            return x * params["s"], state

    model = L.Sequential([L.Dense(3), Scale()])
    x = _x((2, 4))
    params, state = model.init(KEY, x)
    assert set(params) == {"dense_0", "scale_1"}
    y, _ = funcgrad.jit(lambda p, v: model.apply(p, state, v))(params, x)
    np.testing.assert_allclose(y, 2 * (x @ params["dense_0"]["w"]))
    check_grads(lambda p: model.apply(p, state, x)[0], (params,), order=1)


def test_activations_by_name():
    x = _x((5,))
    np.testing.assert_allclose(L.Activation("relu").apply({}, {}, x)[0], np.maximum(x, 0))
    np.testing.assert_allclose(L.Activation("tanh").apply({}, {}, x)[0], np.tanh(x))
    assert L.Activation("gelu").default_name() == "gelu"
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        L.Activation("nope")


# ---------------------------------------------------------------------------------------------
# Errors name the layer, what it expects, and what it got (eagerly and under jit)


@pytest.mark.parametrize("layer,x,match", [
    (L.Conv2D(2), np.zeros((3, 4, 4)), r"Conv2D: expects NCHW inputs, got shape \(3, 4, 4\)"),
    (L.RNN(L.LSTMCell(2)), np.zeros((3, 4)), r"RNN: expects \(N, T, D\) inputs"),
    (L.GroupNorm(3), np.zeros((2, 4, 5)), r"channels \(4\) must be divisible by num_groups \(3\)"),
    (L.Conv2D(4, groups=2, name="c"), np.zeros((1, 3, 4, 4)),
     r"Conv2D 'c': input channels \(3\) must be divisible by groups \(2\)"),
])
def test_init_errors(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer.init(KEY, x)


@pytest.mark.parametrize("layer,init_x,x,match", [
    (L.Conv2D(2), np.zeros((1, 3, 4, 4)), np.zeros((1, 4, 4, 4)),
     r"Conv2D: expects 3 input channels \(axis 1 of NCHW\), got shape \(1, 4, 4, 4\)"),
    (L.Dense(2, name="fc"), np.zeros((1, 5)), np.zeros((1, 6)),
     r"Dense 'fc': expects 5 features on the last axis, got shape \(1, 6\)"),
    (L.BatchNorm(), np.zeros((2, 3)), np.zeros((2, 4)), r"BatchNorm: expects 3 features on axis 1"),
    (L.LayerNorm(), np.zeros((2, 3)), np.zeros((2, 4)), r"LayerNorm: normalized axes \(1,\)"),
    (L.Embedding(4, 2), np.zeros((2,), np.int32), np.zeros((2,)), r"Embedding: expects integer ids"),
    (L.RNN(L.GRUCell(2)), np.zeros((1, 2, 3)), np.zeros((1, 2, 4)), r"RNN: expects 3 features per step"),
    (L.MaxPool2D(), np.zeros((1, 3, 4, 4)), np.zeros((3, 4, 4)), r"MaxPool2D: expects NCHW inputs"),
    (L.Residual(L.Conv2D(2)), np.zeros((1, 3, 4, 4)), np.zeros((1, 3, 4, 4)),
     r"Residual: block output \(1, 2, 4, 4\) and shortcut \(1, 3, 4, 4\) differ"),
])
def test_apply_errors_eager_and_jit(layer, init_x, x, match):
    params, state = layer.init(KEY, init_x)
    with pytest.raises(ValueError, match=match):
        layer.apply(params, state, x)
    with pytest.raises(ValueError, match=match):
        funcgrad.jit(lambda v: layer.apply(params, state, v)[0])(x)


def test_hyperparameter_errors():
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        L.Conv2D(2, (1, 2, 3))
    with pytest.raises(ValueError, match="padding must be 'SAME', 'VALID'"):
        L.Conv2D(2, padding="FULL")
    with pytest.raises(ValueError, match="features .5. must be a positive multiple of groups .2."):
        L.Conv2D(5, groups=2)
    with pytest.raises(ValueError, match="momentum must be in"):
        L.BatchNorm(momentum=1.0)
    with pytest.raises(ValueError, match="hidden must be positive"):
        L.LSTMCell(0)


def test_reduce_window_takes_lax_functions_as_computations():
    """Pooling layers call ``lax.reduce_window`` with ``lax.max`` / ``lax.add`` (JAX-style);
    those name the same computations as "max" / "sum"."""
    x = _x((2, 3, 4, 4))
    for fn, name, init in ((lax.max, "max", -np.inf), (lax.add, "sum", 0.0), (lax.min, "min", np.inf)):
        np.testing.assert_array_equal(lax.reduce_window(x, init, fn, (1, 1, 2, 2), (1, 1, 2, 2)),
                                      lax.reduce_window(x, init, name, (1, 1, 2, 2), (1, 1, 2, 2)))
    with pytest.raises(ValueError, match="computation must be one of .* or lax.add/max/min"):
        lax.reduce_window(x, 0.0, lax.mul, (1, 1, 2, 2))


def test_batch_norm_needs_more_than_one_value_per_feature_to_train():
    """As torch: batch statistics of one value would output beta whatever the input."""
    for shape in [(1, 3), (1, 3, 1, 1)]:
        bn = L.BatchNorm()
        params, state = bn.init(KEY, _x(shape))
        with pytest.raises(ValueError, match=r"BatchNorm: training mode needs more than one value "
                                             r"per feature .* got shape \(1, 3"):
            bn.apply(params, state, _x(shape), train=True)
        bn.apply(params, state, _x(shape), train=False)                  # running stats: fine
    params, state = L.BatchNorm().init(KEY, _x((2, 3, 1, 1)))
    L.BatchNorm().apply(params, state, _x((2, 3, 1, 1)), train=True)


def test_batch_norm_without_its_state_says_so():
    params, _ = L.BatchNorm().init(KEY, _x((2, 3)))
    for train in (False, True):
        with pytest.raises(ValueError, match=r"BatchNorm: needs its state \{'mean', 'var'\} from init"):
            L.BatchNorm().apply(params, {}, _x((2, 3)), train=train)


@pytest.mark.parametrize("layer", [L.Conv2D(4, 3, stride=2), L.ConvTranspose2D(4, 3, stride=2, padding=1)],
                         ids=["conv", "conv_transpose"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float64])
def test_convolutions_promote_like_dense(layer, dtype):
    """Integer images and float64 inputs meet float32 kernels as in Dense's matmul."""
    params, state = layer.init(KEY, _x((2, 3, 6, 6), dtype=np.float32))
    x = np.random.default_rng(0).integers(0, 255, (2, 3, 6, 6)).astype(dtype)
    y, _ = layer.apply(params, state, x)
    dense_params, _ = L.Dense(2).init(KEY, _x((1, 3), dtype=np.float32))
    assert y.dtype == L.Dense(2).apply(dense_params, {}, x[:, :, 0, 0])[0].dtype
    f64 = tree_map(lambda a: a.astype(np.float64), params)
    np.testing.assert_allclose(y, layer.apply(f64, state, x.astype(np.float64))[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(funcgrad.jit(lambda p, v: layer.apply(p, state, v)[0])(params, x), y,
                               rtol=1e-6, atol=1e-4)


def test_cnn_trains_on_uint8_images():
    from funcgrad_nn import models
    model = models.cnn(10)
    x = np.random.default_rng(0).integers(0, 256, (4, 1, 8, 8)).astype(np.uint8)
    params, state = model.init(KEY, x)
    grads = funcgrad.grad(lambda p: fnp.sum(model.apply(p, state, x, train=True, rng=KEY)[0]))(params)
    assert grads["conv1"]["w"].dtype == np.float32


@pytest.mark.parametrize("make,error,match", [
    (lambda: L.Conv2D(2, stride=0), ValueError, r"Conv2D: stride must be at least 1, got 0"),
    (lambda: L.Conv2D(2, kernel_size=0), ValueError, r"Conv2D: kernel_size must be at least 1"),
    (lambda: L.Conv2D(2, kernel_size=(3, 0)), ValueError, r"Conv2D: kernel_size must be at least 1"),
    (lambda: L.Conv2D(2, dilation=0), ValueError, r"Conv2D: dilation must be at least 1"),
    (lambda: L.Conv2D(2, padding=-1), ValueError, r"Conv2D: padding must be at least 0, got -1"),
    (lambda: L.Conv2D(2, padding=((0, 1), (-1, 0))), ValueError, r"Conv2D: padding must be at least 0"),
    (lambda: L.Conv2D(2, kernel_size=3.0), TypeError, r"Conv2D: kernel_size must be an int or a pair of ints, got 3.0"),
    (lambda: L.Conv2D(2, stride=(1.0, 1)), TypeError, r"Conv2D: stride must be an int or a pair"),
    (lambda: L.ConvTranspose2D(2, stride=0), ValueError, r"ConvTranspose2D: stride must be at least 1"),
    (lambda: L.ConvTranspose2D(2, padding=-1), ValueError, r"ConvTranspose2D: padding must be at least 0"),
    (lambda: L.MaxPool2D(0), ValueError, r"MaxPool2D: window must be at least 1"),
    (lambda: L.AvgPool2D(2, stride=0), ValueError, r"AvgPool2D: stride must be at least 1"),
    (lambda: L.MaxPool2D(2.0), TypeError, r"MaxPool2D: window must be an int or a pair"),
    (lambda: L.AvgPool2D(3, padding=-1), ValueError, r"AvgPool2D: padding must be at least 0"),
])
def test_convolution_and_pooling_arguments_are_checked_at_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_sequential_takes_plain_functions_as_layers():
    model = L.Sequential([L.Dense(3), funcgrad.nn.relu, lambda v: 2 * v])
    assert model.names == ["dense_0", "relu_1", "lambda_2"]
    x = _x((2, 4))
    params, state = model.init(KEY, x)
    y, _ = model.apply(params, state, x)
    np.testing.assert_allclose(y, 2 * np.maximum(x @ params["dense_0"]["w"] + params["dense_0"]["b"], 0))
    with pytest.raises(TypeError, match=r"Sequential: got the class Flatten, not a layer; instantiate it"):
        L.Sequential([L.Flatten, L.Dense(3)])
    with pytest.raises(TypeError, match=r"Sequential: expected layers \(Modules\) or functions x -> y, "
                                        r"got LSTMCell"):
        L.Sequential([L.LSTMCell(3)])


def test_rnn_errors_for_empty_sequences_and_wrong_carries():
    rnn = L.RNN(L.LSTMCell(4))
    with pytest.raises(ValueError, match=r"RNN: needs an example input with at least one time step, "
                                         r"got shape \(2, 0, 3\)"):
        rnn.init(KEY, _x((2, 0, 3)))
    params, _ = rnn.init(KEY, _x((2, 5, 3)))
    h = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"LSTMCell's carry is a tuple of 2 array\(s\) shaped "
                                         r"\(\(2, 4\), \(2, 4\)\) .* got ndarray of shape \(2, 4\)"):
        rnn.apply(params, {}, _x((2, 5, 3)), carry=h)
    with pytest.raises(ValueError, match=r"got shapes \(\(2, 5\), \(2, 5\)\)"):
        rnn.apply(params, {}, _x((2, 5, 3)), carry=(np.zeros((2, 5)), np.zeros((2, 5))))
    ys, _ = rnn.apply(params, {}, _x((2, 5, 3)), carry=[h, h])                # a list is fine
    assert ys.shape == (2, 5, 4)
