"""The fusion pass (IR level, no compiler needed): which equations become kernels, and that
the rewritten jaxpr is valid and computes the same values (kernels are evaluated by the
interpreter here; tests/test_codegen_c.py runs them compiled)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core, lax, make_jaxpr, value_and_grad
from funcgrad.compiler import fusion, passes
from funcgrad.primitives import elementwise as ew, structural

from fusion_programs import programs


def optimized(f, *args):
    return passes.optimize(passes.inline_for_execution(make_jaxpr(f)(*args)))


def fused(f, *args):
    closed = optimized(f, *args)
    out, kernels = fusion.fuse(closed)
    core.check_jaxpr(out)
    return closed, out, kernels


def evaluate(closed, *args):
    return core.eval_jaxpr(closed.jaxpr, closed.consts, *args)


def kernel_eqns(closed):
    return [e for e in closed.jaxpr.eqns if e.primitive is fusion.fused_kernel_p]


def ops_of(closed):
    """Non-view equations by primitive name, counting those inside kernels."""
    names = []
    for e in closed.jaxpr.eqns:
        inner = e.params["kernel"].jaxpr.eqns if e.primitive is fusion.fused_kernel_p else [e]
        names += [x.primitive.name for x in inner if x.primitive not in fusion.VIEWS]
    return sorted(names)


def arr(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_value_and_grad_of_an_elementwise_loss_is_one_kernel():
    # the acceptance workload: forward, reduction and gradient in one pass over x
    f = lambda x: fnp.sum(fnp.tanh(x) * lax.logistic(x) + 0.5 * x ** 2)
    x = arr(1000)
    closed, out, kernels = fused(value_and_grad(f), x)
    assert len(kernels) == 1 and len(out.jaxpr.eqns) == 1
    (k,) = kernels
    assert k.reduce_kinds.count("sum") == 1 and k.reduced == 1 and k.shape == (1000,)
    assert [a.shape for a in k.in_avals] == [(1000,)]          # x is read once
    for got, want in zip(evaluate(out, x), evaluate(closed, x)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_softmax_is_a_max_kernel_then_an_exp_sum_kernel():
    def softmax_xent(z, y):
        z = z - fnp.max(z, axis=-1, keepdims=True)
        return fnp.mean(fnp.log(fnp.sum(fnp.exp(z), axis=-1)) - fnp.sum(y * z, axis=-1))
    z, y = arr(8, 10), arr(8, 10, seed=1)
    closed, out, kernels = fused(softmax_xent, z, y)
    # max(z) alone is one numpy call; z - max, exp, both row sums: one loop; then log, the
    # difference and the mean's sum: a second (its inputs are the first one's reductions)
    assert len(kernels) == 2
    assert sorted(map(str, kernels[0].reduce_kinds)) == ["None", "sum", "sum"] or \
        kernels[0].reduce_kinds.count("sum") == 2
    assert kernels[1].shape == (8,) and kernels[1].reduce_kinds == ["sum"]
    np.testing.assert_allclose(evaluate(out, z, y)[0], evaluate(closed, z, y)[0], rtol=1e-6)
    assert ops_of(out) == ops_of(closed)                         # nothing duplicated or lost


def test_a_value_computed_from_a_kernel_result_by_an_unfused_op_is_not_fused_back():
    # b = a @ w needs a's kernel to finish; a * b must not join that kernel (a cycle)
    def f(x, w):
        a = fnp.exp(x) + 1.0
        b = a @ w
        return a * b + 2.0
    x, w = arr(4, 4), arr(4, 4, seed=1)
    closed, out, kernels = fused(f, x, w)
    assert len(kernels) == 2
    order = [e.primitive.name for e in out.jaxpr.eqns]
    assert order == ["fused_kernel", "dot_general", "fused_kernel"]
    np.testing.assert_allclose(evaluate(out, x, w)[0], evaluate(closed, x, w)[0], rtol=1e-6)


def test_a_reduction_result_is_not_read_inside_its_own_kernel():
    def f(x):
        s = fnp.sum(x * 2.0, axis=-1, keepdims=True)
        return fnp.exp(x) / s                      # needs s: a second loop
    x = arr(3, 5)
    closed, out, kernels = fused(f, x)
    assert len(kernels) == 2
    np.testing.assert_allclose(evaluate(out, x)[0], evaluate(closed, x)[0], rtol=1e-6)


def test_single_operations_are_left_to_the_array_library():
    # one op in a kernel is no faster than one numpy call, and costs a compilation
    _, out, kernels = fused(lambda x, w: fnp.maximum(x @ w, 0.0), arr(4, 3), arr(3, 2))
    assert kernels == []
    _, out, kernels = fused(lambda x: fnp.sum(x, axis=1), arr(4, 3))
    assert kernels == []
    _, out, kernels = fused(lambda x: x + 1.0, arr(fusion.LARGE))
    assert kernels == []
    # ... except math functions and reductions over large arrays, which vectorized C does faster
    for f in (fnp.exp, fnp.sum):
        _, out, kernels = fused(f, arr(fusion.LARGE))
        assert len(kernels) == 1


def test_broadcasts_and_transposes_of_inputs_are_read_through_strides():
    def f(x, b, s, y):
        return fnp.tanh(x + b) * s + y.T
    x, b, s, y = arr(3, 4), arr(4), np.float32(2.0), arr(4, 3)
    closed, out, (k,) = fused(f, x, b, s, y)
    # no broadcast or transpose is materialized: the kernel reads the inputs themselves
    assert sorted(a.shape for a in k.in_avals) == [(), (3, 4), (4,), (4, 3)]
    assert all(e.primitive is fusion.fused_kernel_p for e in out.jaxpr.eqns)
    strides = sorted(strides for _, strides in k.loads.values())
    assert strides == sorted([(4, 1), (0, 1), (0, 0), (1, 3)])
    np.testing.assert_allclose(evaluate(out, x, b, s, y)[0], evaluate(closed, x, b, s, y)[0], rtol=1e-6)


def test_outputs_are_the_values_used_after_the_kernel():
    def f(x):
        t = fnp.tanh(x)
        u = t * 2.0 + 1.0
        return u, fnp.cumsum(t)                    # t is needed by an unfused op; u is a result
    x = arr(6)
    _, out, (k,) = fused(f, x)
    assert len(k.out_avals) == 2 and k.reduce_kinds == [None, None]


def test_independent_operations_of_one_shape_share_a_loop():
    def f(x, y):
        return fnp.sin(x) * 2.0, fnp.cos(y) + 1.0
    _, out, kernels = fused(f, arr(5), arr(5, seed=1))
    assert len(kernels) == 1 and len(kernels[0].out_avals) == 2


def test_fused_kernels_are_pretty_printed_and_evaluated_eagerly():
    _, out, (k,) = fused(lambda x: fnp.exp(x) * 2.0, arr(3))
    assert "fused_kernel[kernel=k0[2 ops -> f32[3]]]" in str(out)
    x = arr(3)
    (got,) = fusion.fused_kernel_p.bind(x, kernel=k)
    np.testing.assert_allclose(got, np.exp(x) * 2.0, rtol=1e-6)


def test_kernels_with_unfusable_dtypes_or_ops_are_not_formed():
    # complex numbers and float16 have no C types here; erf_inv has no C expression
    _, _, kernels = fused(lambda x: fnp.exp(x) * 2.0, np.ones(3, np.float16))
    assert kernels == []
    _, _, kernels = fused(lambda x: lax.erf_inv(x) * 2.0 + 1.0, arr(3))
    assert [e.primitive.name for e in kernels[0].jaxpr.eqns] == ["mul", "add"]


# --- property: random programs mixed with unfusable operations -------------------------------

UNFUSABLE = {
    "cumsum": lambda x: fnp.cumsum(x, axis=-1),
    "rev": lambda x: x[..., ::-1],
    "matmul_T": lambda x: x @ fnp.swapaxes(x, -1, -2) if x.ndim >= 2 else x * x,
    "sum_axis0": lambda x: fnp.sum(x, axis=0, keepdims=True) + x,
}


@settings(deadline=None)
@given(prog=programs(dtypes=(np.float32, np.float64), reduce=False), mix=st.lists(
    st.tuples(st.sampled_from(sorted(UNFUSABLE)), st.integers(0, 20)), max_size=3),
    seed=st.integers(0, 2 ** 16))
def test_fusion_preserves_meaning_and_validity(prog, mix, seed):
    """Elementwise programs interleaved with unfusable operations: the fused jaxpr type-checks,
    every operation is computed exactly once, and it evaluates to the same values."""
    def f(*xs):
        outs = prog(*xs)
        v = outs[1]
        for name, at in mix:
            v = UNFUSABLE[name](v) * 0.5 + fnp.tanh(v)
        return outs + [v]
    xs = prog.make_inputs(np.random.default_rng(seed))
    xs = [np.nan_to_num(x, nan=0.5, posinf=3.0, neginf=-3.0) for x in xs]
    closed, out, kernels = fused(f, *xs)
    assert ops_of(out) == ops_of(closed)
    with np.errstate(all="ignore"):
        for got, want in zip(evaluate(out, *xs), evaluate(closed, *xs)):
            np.testing.assert_array_equal(got, want)


def test_fusion_is_part_of_lowering_for_the_c_backend():
    pytest.importorskip("funcgrad.compiler.codegen_c")
    assert funcgrad.compiler.pipeline.BACKENDS["c"].fuse is not None
    assert funcgrad.compiler.pipeline.BACKENDS["numpy"].fuse is None


def test_views_that_are_not_strided_views_are_materialized_first():
    # a reshape of a transposed array is no strided view of the original: that one view is
    # computed by numpy, and the kernel reads its result
    def f(x):
        y = structural.reshape(structural.transpose(x, (1, 0)), (6,))
        return ew.exp(y) * 2.0
    x = arr(2, 3)
    closed, out, (k,) = fused(f, x)
    assert [a.shape for a in k.in_avals] == [(6,)]
    np.testing.assert_allclose(evaluate(out, x)[0], evaluate(closed, x)[0], rtol=1e-6)



def test_fused_kernels_can_be_differentiated_and_batched():
    # kernels appear only in jaxprs about to run, but their rules transform what they compute
    _, _, (k,) = fused(lambda x: fnp.exp(x) * 2.0, arr(3))
    f = lambda x: fusion.fused_kernel_p.bind(x, kernel=k)[0]
    x, t = arr(3), arr(3, seed=1)
    y, ty = funcgrad.jvp(f, (x,), (t,))
    np.testing.assert_allclose(y, np.exp(x) * 2, rtol=1e-6)
    np.testing.assert_allclose(ty, np.exp(x) * 2 * t, rtol=1e-6)
    xs = arr(4, 3, seed=2)
    np.testing.assert_allclose(funcgrad.vmap(f)(xs), np.exp(xs) * 2, rtol=1e-6)
    np.testing.assert_allclose(funcgrad.vmap(f, in_axes=1)(xs.T), np.exp(xs) * 2, rtol=1e-6)
