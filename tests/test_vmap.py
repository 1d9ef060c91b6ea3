"""vmap (issue 4): the API (pytree in_axes/out_axes, None, negative axes, static and keyword
arguments, errors), composition with every other transform and with itself, Jacobians as vmap
of jvp/vjp, and per-example gradients of an MLP and a CNN, vectorized. Each primitive's
batching rule is checked against a loop by its own test file (tests/primitive_harness.py)."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core, grad, jit, jvp, lax, make_jaxpr, nn, vjp, vmap
from funcgrad.tree_util import tree_leaves, tree_map


def stack_loop(f, *args, in_axes=0, axis_size=None):
    """The reference: apply ``f`` example by example and stack the results (axis 0)."""
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    n = axis_size or next(np.shape(a)[ax] for a, ax in zip(args, axes) if ax is not None)
    take = lambda a, ax, i: a if ax is None else np.take(a, i, axis=ax)
    results = [f(*[take(a, ax, i) for a, ax in zip(args, axes)]) for i in range(n)]
    return tree_map(lambda *xs: np.stack(xs), *results)


def assert_trees_close(got, want, rtol=1e-10, atol=1e-12):
    got_l, want_l = tree_leaves(got), tree_leaves(want)
    assert len(got_l) == len(want_l)
    for g, w in zip(got_l, want_l):
        assert np.shape(g) == np.shape(w), (np.shape(g), np.shape(w))
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def num_eqns(closed) -> int:
    """Equations, counting those of sub-jaxprs."""
    return sum(1 + sum(num_eqns(s) for s in core.jaxprs_in_params(e.params))
               for e in (closed.jaxpr if hasattr(closed, "jaxpr") else closed).eqns)


@pytest.fixture
def rng():
    return np.random.default_rng(4)


def f_example(x, w):
    return fnp.tanh(x @ w) * fnp.sum(x ** 2)


# ---------------------------------------------------------------------------------------------
# in_axes, out_axes, axis_size


def test_in_axes_any_axis_negative_and_none(rng):
    xs, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    want = stack_loop(f_example, xs, w, in_axes=(0, None))
    assert_trees_close(vmap(f_example, in_axes=(0, None))(xs, w), want)
    assert_trees_close(vmap(f_example, in_axes=(1, None))(xs.T, w), want)
    assert_trees_close(vmap(f_example, in_axes=(-1, None))(xs.T, w), want)
    assert_trees_close(vmap(f_example, in_axes=[-2, None])(xs, w), want)
    ws = rng.standard_normal((3, 4, 2))
    assert_trees_close(vmap(f_example, in_axes=(0, 1))(xs, ws), stack_loop(f_example, xs, ws, in_axes=(0, 1)))


def test_pytree_in_axes_are_prefixes_of_the_arguments(rng):
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal((5, 2))}
    xs = rng.standard_normal((3, 5))

    def f(p, x):
        return fnp.tanh(x @ p["w"] + p["b"])

    got = vmap(f, in_axes=({"w": None, "b": 0}, 1))(params, xs)
    want = np.stack([np.tanh(xs[:, i] @ params["w"] + params["b"][i]) for i in range(5)])
    assert_trees_close(got, want)
    # a subtree under one axis
    pair = (rng.standard_normal((5, 3)), rng.standard_normal((5,)))
    got = vmap(lambda t, s: t[0] * t[1] + s, in_axes=(0, None))(pair, 2.0)
    assert_trees_close(got, pair[0] * pair[1][:, None] + 2.0)


def test_out_axes_int_negative_none_and_pytree(rng):
    xs, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    want = stack_loop(f_example, xs, w, in_axes=(0, None))
    assert_trees_close(vmap(f_example, in_axes=(0, None), out_axes=1)(xs, w), want.T)
    assert_trees_close(vmap(f_example, in_axes=(0, None), out_axes=-1)(xs, w), want.T)

    def f(x, w):
        return {"y": f_example(x, w), "w2": 2 * w, "n": fnp.sum(x)}

    out = vmap(f, in_axes=(0, None), out_axes={"y": -1, "w2": None, "n": 0})(xs, w)
    assert_trees_close(out["y"], want.T)
    assert_trees_close(out["w2"], 2 * w)
    assert_trees_close(out["n"], xs.sum(1))
    # An unbatched output with a mapped out_axis is broadcast along it.
    out = vmap(lambda x, w: (x, 2 * w), in_axes=(0, None), out_axes=(0, 2))(xs, w)
    assert out[1].shape == (3, 2, 4) and np.all(out[1] == (2 * w)[:, :, None])


def test_axis_size_when_nothing_is_mapped():
    out = vmap(lambda x: x * 2.0, in_axes=None, axis_size=3)(np.ones(2))
    assert out.shape == (3, 2) and np.all(out == 2.0)


def test_static_non_array_arguments_are_closed_over(rng):
    xs = rng.standard_normal((4, 3))

    def f(x, mode, power):
        return fnp.sum(x ** power) if mode == "sum" else fnp.max(x)

    assert_trees_close(vmap(f, in_axes=(0, None, None))(xs, "sum", 3), (xs ** 3).sum(1))
    assert_trees_close(vmap(f, in_axes=(0, None, None))(xs, "max", 3), xs.max(1))
    assert_trees_close(vmap(lambda x, fn: fn(x), in_axes=(0, None))(xs, fnp.cos), np.cos(xs))


def test_keyword_arguments_are_mapped_along_axis_zero(rng):
    xs, ys = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    f = lambda x, *, y, scale=1.0: fnp.dot(x, y) * scale
    assert_trees_close(vmap(f)(xs, y=ys), np.einsum("ij,ij->i", xs, ys))
    assert_trees_close(vmap(f, in_axes=(1,))(xs.T, y=ys), np.einsum("ij,ij->i", xs, ys))


@pytest.mark.parametrize("batch", [0, 1, 5])
def test_batch_sizes_zero_and_one(batch, rng):
    xs = rng.standard_normal((batch, 3))
    got = vmap(lambda x: fnp.sum(fnp.exp(x) * x))(xs)
    assert got.shape == (batch,)
    assert_trees_close(got, (np.exp(xs) * xs).sum(1))


# ---------------------------------------------------------------------------------------------
# Errors


def test_inconsistent_sizes_name_the_arguments_and_sizes():
    def f(a, b):
        return a + b
    with pytest.raises(ValueError, match=r"vmap\(f\): inconsistent sizes along the mapped axes: "
                                         r"a has size 3 \(axis 0 of f64\[3,2\]\), "
                                         r"b has size 5 \(axis 1 of f64\[2,5\]\)"):
        vmap(f, in_axes=(0, 1))(np.ones((3, 2)), np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"p\['a'\] has size 3 .*, p\['b'\] has size 4"):
        vmap(lambda p: p["a"] + p["b"])({"a": np.ones(3), "b": np.ones(4)})
    with pytest.raises(ValueError, match=r"x has size 3 .*, y has size 2"):
        vmap(lambda x, y: x)(np.ones(3), y=np.ones(2))
    with pytest.raises(ValueError, match=r"args\[1\] has size 2"):
        vmap(lambda *xs: xs[0])(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match=r"axis_size=4 but the mapped arguments have size 3"):
        vmap(lambda a: a, axis_size=4)(np.ones(3))


def test_out_of_range_axes_are_errors():
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"in_axes=2 is out of range for argument a of shape \(3, 4\)"):
        vmap(lambda a: a, in_axes=2)(x)
    with pytest.raises(ValueError, match=r"in_axes=-3 is out of range"):
        vmap(lambda a: a, in_axes=-3)(x)
    with pytest.raises(ValueError, match=r"in_axes=0 is out of range for argument a of shape \(\)"):
        vmap(lambda a: a)(1.0)
    with pytest.raises(ValueError, match=r"out_axes=2 is out of range for the output, which has 1 dimension"):
        vmap(lambda a: a, out_axes=2)(x)
    with pytest.raises(ValueError, match=r"out_axes=None for output\[1\], but it varies"):
        vmap(lambda a: (a.sum(), a), out_axes=(0, None))(x)


def test_structure_and_mapping_mistakes_are_errors():
    with pytest.raises(ValueError, match=r"in_axes structure does not match.*expected \{'c': \*\}, got \{'a': \*\}"):
        vmap(lambda p: p["a"], in_axes=({"c": 0},))({"a": np.ones(3)})
    with pytest.raises(ValueError, match=r"one entry per positional argument \(2\)"):
        vmap(lambda a, b: a, in_axes=(0,))(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="no argument is mapped.*axis_size"):
        vmap(lambda a: a, in_axes=None)(np.ones(2))
    with pytest.raises(core.ConcretizationError, match="batched under vmap"):
        vmap(lambda a: a if a > 0 else -a)(np.ones(3))


# ---------------------------------------------------------------------------------------------
# Composition


def test_vmap_of_vmap(rng):
    xs, ws = rng.standard_normal((4, 5, 3)), rng.standard_normal((3, 2, 4))
    got = vmap(vmap(f_example, in_axes=(0, 2)), in_axes=(1, None), out_axes=1)(xs, ws)
    want = np.stack([np.stack([f_example(xs[i, j], ws[:, :, i]) for i in range(4)])
                     for j in range(5)], axis=1)
    assert got.shape == (4, 5, 2)
    assert_trees_close(got, want)
    triple = vmap(vmap(vmap(lambda a, b: a * b)))(xs, xs)
    assert_trees_close(triple, xs * xs)


def test_vmap_of_grad_and_grad_of_vmap(rng):
    xs, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    loss = lambda w, x: fnp.sum(f_example(x, w) ** 2)
    per_example = vmap(grad(loss), in_axes=(None, 0))(w, xs)
    assert_trees_close(per_example, stack_loop(lambda x: grad(loss)(w, x), xs))
    total = grad(lambda w: fnp.sum(vmap(loss, (None, 0))(w, xs)))(w)
    assert_trees_close(total, per_example.sum(0))
    # vmap over the parameters instead, and of value_and_grad
    ws = rng.standard_normal((5, 3, 2))
    vals, gs = vmap(funcgrad.value_and_grad(loss), in_axes=(0, None))(ws, xs[0])
    assert_trees_close(gs, stack_loop(lambda w: grad(loss)(w, xs[0]), ws))
    assert_trees_close(vals, stack_loop(lambda w: loss(w, xs[0]), ws))


def test_vmap_composes_with_jvp_and_vjp(rng):
    xs, ts, w = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    f = lambda x: f_example(x, w)
    got = vmap(lambda x, t: jvp(f, (x,), (t,)))(xs, ts)
    want = stack_loop(lambda x, t: jvp(f, (x,), (t,)), xs, ts)
    assert_trees_close(got, want)
    got = jvp(vmap(f), (xs,), (ts,))
    assert_trees_close(got, want)
    cts = rng.standard_normal((4, 2))
    got = vmap(lambda x, c: vjp(f, x)[1](c))(xs, cts)
    assert_trees_close(got, stack_loop(lambda x, c: vjp(f, x)[1](c), xs, cts))
    out, pullback = vjp(vmap(f), xs)
    assert_trees_close(pullback(cts), got)


def test_vmap_composes_with_jit(rng):
    xs, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    want = stack_loop(f_example, xs, w, in_axes=(0, None))
    assert_trees_close(jit(vmap(f_example, (0, None)))(xs, w), want)
    assert_trees_close(vmap(jit(f_example), (0, None))(xs, w), want)
    assert_trees_close(jit(vmap(jit(f_example), (0, None)))(xs, w), want)
    loss = lambda w, x: fnp.sum(f_example(x, w))
    assert_trees_close(jit(vmap(grad(loss), (None, 0)))(w, xs), vmap(grad(loss), (None, 0))(w, xs))
    assert_trees_close(vmap(grad(jit(loss)), (None, 0))(w, xs), vmap(grad(loss), (None, 0))(w, xs))
    assert_trees_close(grad(lambda w: fnp.sum(jit(vmap(loss, (None, 0)))(w, xs)))(w),
                       vmap(grad(loss), (None, 0))(w, xs).sum(0))


def test_every_composition_traces_to_a_well_typed_jaxpr(rng):
    xs, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    loss = lambda w, x: fnp.sum(f_example(x, w))
    funs = [vmap(grad(loss), (None, 0)), grad(lambda w, xs: fnp.sum(vmap(loss, (None, 0))(w, xs))),
            vmap(vmap(loss, (None, 0)), (None, 0)), jit(vmap(grad(loss), (None, 0))),
            vmap(funcgrad.hessian(lambda w, x: loss(w, x)), (None, 0)),
            vmap(jit(grad(loss)), (None, 0))]
    for f in funs:
        arg = xs if f is not funs[2] else xs[None].repeat(2, 0)
        core.check_jaxpr(make_jaxpr(f)(w, arg))


# ---------------------------------------------------------------------------------------------
# Jacobians are vmap of jvp / vjp: no loops


def _vector_fn(x):
    return fnp.stack([fnp.sum(fnp.sin(x) * x[::-1]), fnp.prod(fnp.tanh(x)), x[0] * x[-1]])


@pytest.mark.parametrize("jac", [funcgrad.jacfwd, funcgrad.jacrev])
def test_jacobians_are_vectorized_not_looped(jac, rng):
    small, large = rng.standard_normal(3), rng.standard_normal(40)
    assert num_eqns(make_jaxpr(jac(_vector_fn))(small)) == num_eqns(make_jaxpr(jac(_vector_fn))(large))
    for x in (small, large):
        j = jac(_vector_fn)(x)
        rows = [funcgrad.grad(lambda v, i=i: _vector_fn(v)[i])(x) for i in range(3)]
        assert_trees_close(j, np.stack(rows))


def test_jacobians_of_pytrees_nest_output_outside_input(rng):
    params = {"a": rng.standard_normal(3), "b": rng.standard_normal((2, 2))}

    def f(p):
        return {"s": fnp.sum(p["a"]) * p["b"], "t": p["a"] ** 2}

    for jac in (funcgrad.jacfwd, funcgrad.jacrev):
        j = jac(f)(params)
        assert j["s"]["a"].shape == (2, 2, 3) and j["s"]["b"].shape == (2, 2, 2, 2)
        assert j["t"]["a"].shape == (3, 3) and j["t"]["b"].shape == (3, 2, 2)
        assert_trees_close(j["t"]["a"], np.diag(2 * params["a"]))
        assert_trees_close(j["t"]["b"], np.zeros((3, 2, 2)))


# ---------------------------------------------------------------------------------------------
# Per-example gradients of the MLP of the benchmarks (784-512-512-10, batch 128, float32)


def mlp_logits(params, x):
    w1, b1, w2, b2, w3, b3 = params
    h = fnp.maximum(x @ w1 + b1, 0.0)
    h = fnp.maximum(h @ w2 + b2, 0.0)
    return h @ w3 + b3


def example_loss(params, x, y):
    z = mlp_logits(params, x)
    z = z - fnp.max(z, axis=-1, keepdims=True)
    return fnp.log(fnp.sum(fnp.exp(z), axis=-1)) - fnp.sum(y * z, axis=-1)


def mlp_inputs(batch=128, sizes=(784, 512, 512, 10)):
    rng = np.random.default_rng(4)
    params = []
    for m, n in zip(sizes[:-1], sizes[1:]):
        params += [(rng.standard_normal((m, n)) * np.sqrt(2 / m)).astype(np.float32),
                   (rng.standard_normal(n) * 0.01).astype(np.float32)]
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], batch)]
    return params, x, y


def test_per_example_gradients_of_the_mlp_match_a_loop():
    params, x, y = mlp_inputs()
    per_example = jit(vmap(grad(example_loss), in_axes=(None, 0, 0)))(params, x, y)
    single = jit(grad(example_loss))
    loop = [single(params, x[i], y[i]) for i in range(len(x))]
    for got, want, p in zip(per_example, zip(*loop), params):
        want = np.stack(want)
        assert got.shape == (len(x),) + p.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_per_example_gradients_of_the_mlp_are_vectorized():
    small, full = mlp_inputs(batch=2, sizes=(5, 4, 4, 3)), mlp_inputs(batch=128, sizes=(5, 4, 4, 3))
    f = vmap(grad(example_loss), in_axes=(None, 0, 0))
    j_small, j_full = make_jaxpr(f)(*small), make_jaxpr(f)(*full)
    assert num_eqns(j_small) == num_eqns(j_full)
    core.check_jaxpr(j_full)
    lowered = jit(f).lower(*full)
    # The weight gradients are batched outer products: one broadcasting multiply each, no
    # matmul with a contraction of length one, no transposes.
    assert "transpose" not in lowered.source
    assert lowered.source.count("numpy_multiply(") >= 3


# ---------------------------------------------------------------------------------------------
# Per-example gradients of the small CNN (conv3x3(16)-relu-maxpool2-conv3x3(32)-relu-maxpool2-
# dense(10), 32x32x3 inputs, NCHW)


def cnn_example_loss(params, x, y):
    """One example: x is (3, 32, 32)."""
    k1, c1, k2, c2, w, b = params

    def conv_relu_pool(h, kernel, bias):
        h = lax.conv_general_dilated(h, kernel, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = nn.relu(h + bias[:, None, None])
        return lax.reduce_window(h, -np.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    h = conv_relu_pool(conv_relu_pool(x[None], k1, c1), k2, c2)
    logits = h.reshape(-1) @ w + b
    return -fnp.sum(y * nn.log_softmax(logits))


def cnn_inputs(batch, size=32):
    rng = np.random.default_rng(6)
    f32 = lambda a: a.astype(np.float32)
    flat = 32 * (size // 4) ** 2
    params = [f32(rng.standard_normal((16, 3, 3, 3)) * 0.27), f32(rng.standard_normal(16) * 0.01),
              f32(rng.standard_normal((32, 16, 3, 3)) * 0.12), f32(rng.standard_normal(32) * 0.01),
              f32(rng.standard_normal((flat, 10)) / np.sqrt(flat)), f32(rng.standard_normal(10) * 0.01)]
    x = f32(rng.standard_normal((batch, 3, size, size)))
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    return params, x, y


def test_per_example_gradients_of_the_cnn_are_vectorized():
    f = vmap(grad(cnn_example_loss), in_axes=(None, 0, 0))
    j_small, j_full = make_jaxpr(f)(*cnn_inputs(2)), make_jaxpr(f)(*cnn_inputs(64))
    assert num_eqns(j_small) == num_eqns(j_full)
    core.check_jaxpr(j_full)
    prims = {e.primitive.name for e in j_full.jaxpr.eqns}
    assert not prims & {"while", "scan", "cond"}, prims
    # The per-example kernel gradients are grouped convolutions, one per layer.
    convs = [e for e in j_full.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert any(e.params["feature_group_count"] > 1 or e.params.get("batch_group_count", 1) > 1
               for e in convs)


def test_per_example_gradients_of_the_cnn_match_a_loop():
    params, x, y = cnn_inputs(64)
    per_example = jit(vmap(grad(cnn_example_loss), in_axes=(None, 0, 0)))(params, x, y)
    single = jit(grad(cnn_example_loss))
    loop = [single(params, x[i], y[i]) for i in range(len(x))]
    for got, want, p in zip(per_example, zip(*loop), params):
        want = np.stack(want)
        assert got.shape == (len(x),) + p.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
