"""conv_general_dilated and reduce_window (pooling): values against slow loop references (and
under jit), derivatives (both modes, order 2), vmap against loops (batched lhs, kernels, both),
jaxpr checks, per-example CNN gradients, max-pool ties, and trace-time errors."""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core, lax, make_jaxpr, vmap
from funcgrad.primitives import conv as conv_module

import primitive_harness as h
from fusion_programs import assert_same_bits
from primitive_harness import Operand

F32, F64, I32 = (np.dtype(t) for t in (np.float32, np.float64, np.int32))
TOL = {F32: 2e-5, F64: 1e-12, I32: 0}

# ---------------------------------------------------------------------------------------------
# Slow, obvious references


def dilate_and_pad(x, axes, padding, dilation, fill):
    """Holes of ``fill`` between elements, then ``(lo, hi)`` fill values (negative: crop)."""
    shape = list(x.shape)
    for a, d in zip(axes, dilation):
        shape[a] = (x.shape[a] - 1) * d + 1 if x.shape[a] else 0
    out = np.full(shape, fill, x.dtype)
    index = [slice(None)] * x.ndim
    for a, d in zip(axes, dilation):
        index[a] = slice(None, None, d)
    out[tuple(index)] = x
    widths = [(0, 0)] * x.ndim
    for a, (lo, hi) in zip(axes, padding):
        widths[a] = (max(lo, 0), max(hi, 0))
    out = np.pad(out, widths, constant_values=fill)
    crop = [slice(None)] * x.ndim
    for a, (lo, hi) in zip(axes, padding):
        crop[a] = slice(max(-lo, 0), out.shape[a] - max(-hi, 0))
    return out[tuple(crop)]


def same_padding(sizes, windows, strides, lower=False):
    """TF/JAX "SAME": out = ceil(in / stride); the odd pad element goes last (first if lower)."""
    pads = []
    for n, k, s in zip(sizes, windows, strides):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        lo = total - total // 2 if lower else total // 2
        pads.append((lo, total - lo))
    return pads


def conv_reference(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, layouts, groups,
                   batch_groups):
    """A loop over output elements; each is a sum over its window and input channels."""
    lhs_l, rhs_l, out_l = layouts
    spatial = "".join(c for c in rhs_l if c not in "OI")
    x = np.transpose(lhs, [lhs_l.index(c) for c in "NC" + spatial])
    w = np.transpose(rhs, [rhs_l.index(c) for c in "OI" + spatial])
    nsp = len(spatial)
    if isinstance(padding, str):
        sizes = [(n - 1) * d + 1 for n, d in zip(x.shape[2:], lhs_dilation)]
        windows = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], rhs_dilation)]
        padding = ([(0, 0)] * nsp if padding == "VALID" else
                   same_padding(sizes, windows, strides, lower=padding == "SAME_LOWER"))
    xp = dilate_and_pad(x, range(2, 2 + nsp), padding, lhs_dilation, 0)
    n, o, i = x.shape[0], w.shape[0], w.shape[1]
    k_sizes = w.shape[2:]
    t_sizes = [max(0, (xp.shape[2 + a] - (k_sizes[a] - 1) * rhs_dilation[a] - 1) // strides[a] + 1)
               for a in range(nsp)]
    out = np.zeros((n // batch_groups, o) + tuple(t_sizes), lhs.dtype)
    for b_n in range(n // batch_groups):
        for f in range(o):
            g = f // (o // groups)
            bg = f // (o // batch_groups)
            for t in np.ndindex(*t_sizes):
                window = tuple(slice(t[a] * strides[a], t[a] * strides[a] + (k_sizes[a] - 1) *
                                     rhs_dilation[a] + 1, rhs_dilation[a]) for a in range(nsp))
                patch = xp[(bg * (n // batch_groups) + b_n, slice(g * i, (g + 1) * i)) + window]
                out[(b_n, f) + t] = np.sum(patch * w[f])
    return np.transpose(out, [("NC" + spatial).index(c) for c in out_l])


def identity(computation, dtype):
    if computation == "sum":
        return 0
    if dtype.kind == "f":
        return -np.inf if computation == "max" else np.inf
    info = np.iinfo(dtype)
    return info.min if computation == "max" else info.max


def reduce_window_reference(x, computation, window, strides, padding, base_dilation,
                            window_dilation):
    axes = range(x.ndim)
    if isinstance(padding, str):
        sizes = [(n - 1) * d + 1 for n, d in zip(x.shape, base_dilation)]
        windows = [(k - 1) * d + 1 for k, d in zip(window, window_dilation)]
        padding = ([(0, 0)] * x.ndim if padding == "VALID" else
                   same_padding(sizes, windows, strides, lower=padding == "SAME_LOWER"))
    xp = dilate_and_pad(x, axes, padding, base_dilation, identity(computation, x.dtype))
    out_shape = [max(0, (xp.shape[a] - (window[a] - 1) * window_dilation[a] - 1) // strides[a] + 1)
                 for a in axes]
    reduce = {"sum": np.sum, "max": np.max, "min": np.min}[computation]
    out = np.zeros(out_shape, x.dtype)
    for t in np.ndindex(*out_shape):
        out[t] = reduce(xp[tuple(slice(t[a] * strides[a], t[a] * strides[a] + (window[a] - 1) *
                                       window_dilation[a] + 1, window_dilation[a]) for a in axes)])
    return out


# ---------------------------------------------------------------------------------------------
# Geometry strategies


@dataclasses.dataclass(frozen=True)
class ConvCase:
    lhs_shape: tuple
    rhs_shape: tuple
    strides: tuple
    padding: object
    lhs_dilation: tuple
    rhs_dilation: tuple
    layouts: tuple
    groups: int
    batch_groups: int

    def __call__(self, lhs, rhs):
        return lax.conv_general_dilated(lhs, rhs, self.strides, self.padding, self.lhs_dilation,
                                        self.rhs_dilation, self.layouts, self.groups,
                                        self.batch_groups)

    def reference(self, lhs, rhs):
        return conv_reference(lhs, rhs, self.strides, self.padding, self.lhs_dilation,
                              self.rhs_dilation, self.layouts, self.groups, self.batch_groups)


def _padding(draw, n, k, dilation, rhs_dilation, pad_range):
    """A padding string or explicit pairs, keeping the padded input at least a window long."""
    spec = draw(st.one_of(st.sampled_from(["SAME", "VALID", "SAME_LOWER"]),
                          st.lists(st.tuples(st.integers(*pad_range), st.integers(*pad_range)),
                                   min_size=len(n), max_size=len(n))))
    sizes = [(a - 1) * d + 1 for a, d in zip(n, dilation)]
    windows = [(b - 1) * d + 1 for b, d in zip(k, rhs_dilation)]
    if spec == "VALID":
        assume(all(s >= w for s, w in zip(sizes, windows)))
    elif not isinstance(spec, str):
        spec = [(lo, hi + max(0, w - (s + lo + hi)))
                for (lo, hi), s, w in zip(spec, sizes, windows)]
    return spec if isinstance(spec, str) else tuple(spec)


@st.composite
def conv_cases(draw, max_spatial=3, max_side=5, max_stride=3, max_dilation=3, grouped=True):
    nsp = draw(st.integers(1, max_spatial))
    side = max_side if nsp < 3 else 3
    groups, batch_groups = draw(st.sampled_from([(1, 1), (2, 1), (3, 1), (1, 2)] if grouped
                                                else [(1, 1)]))
    nb, cg, og = (draw(st.integers(1, 2)) for _ in range(3))
    small = lambda hi: st.lists(st.integers(1, hi), min_size=nsp, max_size=nsp)
    n, k, strides = draw(small(side)), draw(small(3)), draw(small(max_stride))
    lhs_dilation, rhs_dilation = draw(small(max_dilation)), draw(small(max_dilation))
    padding = _padding(draw, n, k, lhs_dilation, rhs_dilation, (-1, 2))
    letters = "HWD"[:nsp]
    lhs_l = "".join(draw(st.permutations("NC" + letters)))
    rhs_l = "".join(draw(st.permutations("OI" + letters)))
    out_l = "".join(draw(st.permutations("NC" + letters)))
    spatial = [c for c in rhs_l if c not in "OI"]
    sizes = {"N": nb * batch_groups, "C": cg * groups, "O": og * groups * batch_groups, "I": cg}
    sizes.update({c: n[j] for j, c in enumerate(spatial)})
    lhs_shape = tuple(sizes[c] for c in lhs_l)
    sizes.update({c: k[j] for j, c in enumerate(spatial)})
    rhs_shape = tuple(sizes[c] for c in rhs_l)
    return ConvCase(lhs_shape, rhs_shape, tuple(strides), padding, tuple(lhs_dilation),
                    tuple(rhs_dilation), (lhs_l, rhs_l, out_l), groups, batch_groups)


@dataclasses.dataclass(frozen=True)
class PoolCase:
    shape: tuple
    computation: str
    window: tuple
    strides: tuple
    padding: object
    base_dilation: tuple
    window_dilation: tuple

    def __call__(self, x):
        return lax.reduce_window(x, None, self.computation, self.window, self.strides,
                                 self.padding, self.base_dilation, self.window_dilation)

    def reference(self, x):
        return reduce_window_reference(x, self.computation, self.window, self.strides,
                                       self.padding, self.base_dilation, self.window_dilation)


@st.composite
def pool_cases(draw, computations=("sum", "max", "min"), max_dilation=2):
    nd = draw(st.integers(1, 3))
    small = lambda lo, hi: st.lists(st.integers(lo, hi), min_size=nd, max_size=nd)
    shape, window, strides = draw(small(1, 5)), draw(small(1, 3)), draw(small(1, 3))
    base_dilation, window_dilation = draw(small(1, max_dilation)), draw(small(1, max_dilation))
    padding = _padding(draw, shape, window, base_dilation, window_dilation, (-1, 2))
    return PoolCase(tuple(shape), draw(st.sampled_from(computations)), tuple(window),
                    tuple(strides), padding, tuple(base_dilation), tuple(window_dilation))


# ---------------------------------------------------------------------------------------------
# conv_general_dilated


@settings(max_examples=60)
@given(st.data(), conv_cases(), st.sampled_from([F32, F64, I32]))
def test_conv_matches_reference(data, case, dtype):
    args = [Operand(case.lhs_shape, dtype).draw(data), Operand(case.rhs_shape, dtype).draw(data)]
    h.check_values(case, args, case.reference, rtol=TOL[dtype], atol=TOL[dtype],
                   prim="conv_general_dilated")
    h.check_jit(case, args, rtol=TOL[dtype], atol=TOL[dtype])


STRATEGIES = ["_conv_by_scatter", "_per_example_products", "_per_group_products",
              "_per_feature_products"]


def forced_strategy(strategy, shift: bool):
    """Patches that make every conv use ``strategy`` (im2col products of one layout, or
    col2im), with shifted-plane copies wherever they apply (``shift``) or never."""
    fn = getattr(conv_module, strategy)
    if strategy == "_per_feature_products":
        forced = lambda xp, x, w, geo, g, b, planes: fn(xp, x, w, geo, planes)
    else:
        forced = fn
    return [mock.patch.object(conv_module, "_conv_by_patches", forced),
            mock.patch.object(conv_module, "_conv_by_scatter", forced),
            *shifting(shift)]


def shifting(on: bool):
    """Patches that make convs use shifted-plane copies wherever they apply, or never."""
    return [mock.patch.object(conv_module, "_SHIFT_MIN_RUNS", 0 if on else 10 ** 12),
            mock.patch.object(conv_module, "_SHIFT_MAX_ROW", 10 ** 12)]


def check_strategy(cases, strategy, shift, data):
    """Draw from ``cases`` (without groups for the per-feature products, which have none)."""
    case = data.draw(cases(grouped=strategy != "_per_feature_products"))
    dtype = data.draw(st.sampled_from([F32, F64, I32]))
    args = [Operand(case.lhs_shape, dtype).draw(data), Operand(case.rhs_shape, dtype).draw(data)]
    with contextlib.ExitStack() as stack:
        for patch in forced_strategy(strategy, shift):
            stack.enter_context(patch)
        out = case(*args)
    h.assert_same(out, case.reference(*args), rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=30)
@given(data=st.data())
def test_each_conv_strategy_matches_reference(strategy, shift, data):
    """The impl picks im2col (in one of three product layouts) or col2im by shape; force
    each, with and without shifted-plane copies, on every geometry."""
    check_strategy(conv_cases, strategy, shift, data)


@st.composite
def shiftable_conv_cases(draw, grouped=True):
    """Unit strides, no lhs dilation, outputs the size of the input (any split of the
    padding, crops included): where patch rows are shifted copies of the input planes, and
    (as the windows of the kernel gradient cover the whole input) of the gradients' too."""
    case = draw(conv_cases(max_stride=1, grouped=grouped))
    k = [case.rhs_shape[case.layouts[1].index(c)] for c in case.layouts[1] if c not in "OI"]
    window = [(kk - 1) * d for kk, d in zip(k, case.rhs_dilation)]
    padding = tuple((lo, w - lo) for lo, w in
                    zip(draw(st.tuples(*(st.integers(-1, w + 1) for w in window))), window))
    return dataclasses.replace(case, padding=padding, lhs_dilation=(1,) * len(k))


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=30)
@given(data=st.data())
def test_shifted_patches_match_reference(strategy, data):
    check_strategy(shiftable_conv_cases, strategy, True, data)


@settings(max_examples=30)
@given(data=st.data(), case=shiftable_conv_cases())
def test_shifted_gradients_match_strided_ones(data, case):
    """Both gradients of a shiftable conv (their convs shift too: the kernel gradient along
    the kernel axis, the input gradient by col2im) agree with the strided window copies."""
    args = [Operand(case.lhs_shape, F64).draw(data), Operand(case.rhs_shape, F64).draw(data)]
    ct = np.random.default_rng(0).standard_normal(case(*args).shape)
    grads = lambda: funcgrad.vjp(case, *args)[1](ct)
    results = []
    for on in (True, False):
        with contextlib.ExitStack() as stack:
            for patch in shifting(on):
                stack.enter_context(patch)
            results.append(grads())
    shifted, strided = results
    for a, b in zip(shifted, strided):
        h.assert_same(a, b, rtol=1e-12, atol=1e-12)


def shift_reference(src, sizes, delta):
    """out[..., p] = src[..., p + delta] inside the grid, else 0, one position at a time."""
    grid = src.reshape(src.shape[:-1] + sizes)
    out = np.zeros_like(grid)
    for p in np.ndindex(*sizes):
        q = tuple(a + d for a, d in zip(p, delta))
        if all(0 <= c < n for c, n in zip(q, sizes)):
            out[(Ellipsis,) + p] = grid[(Ellipsis,) + q]
    return out.reshape(src.shape)


@given(st.data(), st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_shift_copy_and_add_match_brute_force(data, sizes):
    """_shift_copy gathers shifted planes (0 past the edges); _shift_add adds them to what is
    there. Offsets may reach past the grid."""
    sizes = tuple(sizes)
    delta = tuple(data.draw(st.integers(-n - 1, n + 1)) for n in sizes)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    src, acc = (rng.standard_normal((2, 3, math.prod(sizes))) for _ in range(2))
    expected = shift_reference(src, sizes, delta)
    dst = np.full_like(src, np.nan)
    conv_module._shift_copy(dst, src, sizes, delta)
    np.testing.assert_array_equal(dst, expected)
    added = acc.copy()
    conv_module._shift_add(added, src.copy(), sizes, delta)
    np.testing.assert_array_equal(added, acc + expected)


def test_col2im_slices_match_brute_force():
    """_scatter_slices: every (input q, output t) with t*stride == q*lhs_dilation + c."""
    for q_size, t_size, stride, dilation, c in itertools.product(
            range(6), range(5), range(1, 5), range(1, 5), range(-6, 7)):
        expected = [(q, t) for q in range(q_size) for t in range(t_size)
                    if t * stride == q * dilation + c]
        pair = conv_module._scatter_slices(q_size, t_size, stride, dilation, c)
        got = [] if pair is None else list(zip(range(q_size)[pair[0]], range(t_size)[pair[1]]))
        assert got == expected, (q_size, t_size, stride, dilation, c)


@settings(max_examples=30)
@given(st.data(), conv_cases(max_spatial=2, max_side=4, max_stride=2, max_dilation=2))
def test_conv_derivatives(data, case):
    operands = [Operand(case.lhs_shape, F64), Operand(case.rhs_shape, F64)]
    h.check_derivatives(case, [op.draw(data) for op in operands], operands, order=2)


def check_conv_vmap(case, in_axes, size, rng):
    """vmap vs a loop of the reference; check_jaxpr; a batched jaxpr whose size does not
    depend on the batch size. (The shared harness also draws empty batches, which have no
    groups to fold into: see test_conv_vmap_empty_batch.)"""
    def batched(shape, axis, n):
        if axis is None:
            return rng.standard_normal(shape)
        return np.moveaxis(rng.standard_normal((n,) + shape), 0, axis)

    lhs, rhs = batched(case.lhs_shape, in_axes[0], size), batched(case.rhs_shape, in_axes[1], size)
    out = vmap(case, in_axes)(lhs, rhs)
    take = lambda a, ax, j: a if ax is None else np.take(a, j, ax)
    expected = np.stack([case.reference(take(lhs, in_axes[0], j), take(rhs, in_axes[1], j))
                         for j in range(size)])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    jaxpr = make_jaxpr(vmap(case, in_axes))(lhs, rhs)
    core.check_jaxpr(jaxpr)
    bigger = make_jaxpr(vmap(case, in_axes))(batched(case.lhs_shape, in_axes[0], size + 5),
                                              batched(case.rhs_shape, in_axes[1], size + 5))
    assert h.count_eqns(bigger) == h.count_eqns(jaxpr), f"{jaxpr}\nvs\n{bigger}"


def _in_axes(ranks):
    """Batched lhs, batched kernels, or both, at any (possibly negative) axis."""
    axis = lambda r: st.integers(-r - 1, r)
    return st.one_of(st.tuples(axis(ranks), st.none()), st.tuples(st.none(), axis(ranks)),
                     st.tuples(axis(ranks), axis(ranks)))


@settings(max_examples=50)
@given(st.data(), conv_cases(max_spatial=2, max_side=4, max_stride=2, max_dilation=2))
def test_conv_vmap(data, case):
    in_axes = data.draw(_in_axes(len(case.lhs_shape)))
    check_conv_vmap(case, in_axes, data.draw(st.integers(1, 3)), np.random.default_rng(0))


GROUPED = [ConvCase((2, 4, 5, 4), (6, 2, 3, 2), (1, 2), ((1, 0), (2, 1)), (1, 1), (2, 1),
                    ("NCHW", "OIHW", "NCHW"), 2, 1),
           ConvCase((4, 5, 4, 3), (2, 3, 3, 4), (2, 1), "SAME", (1, 2), (1, 1),
                    ("NHWC", "HWIO", "NHWC"), 1, 2),
           ConvCase((3, 5, 2), (2, 2, 3), (1,), "VALID", (1,), (1,), ("NWC", "OIW", "NCW"), 1, 1)]


@pytest.mark.parametrize("case", GROUPED)
@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (0, 0), (2, -1), (-1, 1)])
def test_conv_vmap_every_batching_branch(case, in_axes, rng):
    check_conv_vmap(case, in_axes, 3, rng)


@pytest.mark.parametrize("case", GROUPED)
@pytest.mark.parametrize("in_axes", [(0, None), (None, 1), (1, 0)])
def test_conv_vmap_empty_batch(case, in_axes, rng):
    lhs = rng.standard_normal(case.lhs_shape)
    rhs = rng.standard_normal(case.rhs_shape)
    empty = lambda a, ax: a if ax is None else np.moveaxis(np.zeros((0,) + a.shape), 0, ax)
    out = vmap(case, in_axes)(empty(lhs, in_axes[0]), empty(rhs, in_axes[1]))
    h.assert_same(out, np.zeros((0,) + case(lhs, rhs).shape))


def test_vmap_of_batched_kernels_is_one_grouped_conv(rng):
    """Per-example kernels fold into feature groups: the jaxpr has one conv whatever the batch."""
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    f = lambda x, w: lax.conv(x, w, (1, 1), "SAME")
    kernels = lambda n: rng.standard_normal((n, 4, 3, 3, 3)).astype(np.float32)
    jaxprs = [make_jaxpr(vmap(f, (0, 0)))(np.stack([x] * n), kernels(n))
              for n in (2, 7)]
    assert h.count_eqns(jaxprs[0]) == h.count_eqns(jaxprs[1])
    convs = [e for e in jaxprs[1].eqns if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 1 and convs[0].params["feature_group_count"] == 7, jaxprs[1]
    # batched kernels with an unbatched input: one conv with more output features
    unbatched_input = make_jaxpr(vmap(f, (None, 0)))(x, kernels(7))
    assert [e.primitive.name for e in unbatched_input.eqns].count("conv_general_dilated") == 1


def _cnn_loss(params, x, label):
    """conv3x3-relu-maxpool2-conv3x3-relu-maxpool2-dense on one NCHW example."""
    w1, w2, dense = params
    y = lax.conv(x[None], w1, (1, 1), "SAME")
    y = lax.reduce_window(fnp.maximum(y, 0.0), None, "max", (1, 1, 2, 2), (1, 1, 2, 2))
    y = lax.conv(y, w2, (1, 1), "SAME")
    y = lax.reduce_window(fnp.maximum(y, 0.0), None, "max", (1, 1, 2, 2), (1, 1, 2, 2))
    logits = fnp.reshape(y, (-1,)) @ dense
    return fnp.log(fnp.sum(fnp.exp(logits))) - logits[label]


def test_per_example_cnn_gradients_vectorized(rng):
    params = (rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((5, 4, 3, 3)),
              rng.standard_normal((5 * 2 * 2, 3)) * 0.1)
    xs, labels = rng.standard_normal((6, 3, 8, 8)), np.array([0, 1, 2, 0, 1, 2])
    per_example = vmap(funcgrad.grad(_cnn_loss), in_axes=(None, 0, 0))
    grads = per_example(params, xs, labels)
    for j in range(len(xs)):
        for g, expected in zip(grads, funcgrad.grad(_cnn_loss)(params, xs[j], labels[j])):
            np.testing.assert_allclose(g[j], expected, rtol=1e-10, atol=1e-12)
    sizes = [h.count_eqns(make_jaxpr(per_example)(params, xs[:n], labels[:n])) for n in (2, 6)]
    assert sizes[0] == sizes[1]


def test_layouts_agree(rng):
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    nchw = lax.conv_general_dilated(x, w, (2, 1), "SAME", None, (1, 2))
    nhwc = lax.conv_general_dilated(x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), (2, 1),
                                    "SAME", None, (1, 2), ("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(nhwc, nchw.transpose(0, 2, 3, 1), rtol=1e-12)
    dn = lax.conv_dimension_numbers(4, ("NHWC", "HWIO", "NHWC"))
    assert dn == lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    np.testing.assert_allclose(lax.conv_general_dilated(
        x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), (2, 1), "SAME", None, (1, 2), dn), nhwc)


@pytest.mark.parametrize("padding,expected", [("SAME", (7, 3)), ("VALID", (6, 2)),
                                              ([(0, 0), (2, 2)], (6, 4))])
def test_padding_strings(padding, expected, rng):
    x, w = rng.standard_normal((1, 1, 13, 6)), rng.standard_normal((1, 1, 3, 3))
    out = lax.conv(x, w, (2, 2), padding)
    assert out.shape[2:] == expected
    if padding == "SAME":    # H: 2 pads, split 1/1; W: 1 pad, at the end (SAME_LOWER: start)
        np.testing.assert_allclose(out, lax.conv(x, w, (2, 2), [(1, 1), (0, 1)]))
        lower = lax.conv_general_dilated(x, w, (1, 1), "SAME_LOWER", None, (1, 2))
        np.testing.assert_allclose(lower, lax.conv_general_dilated(x, w, (1, 1), [(1, 1), (2, 2)],
                                                                   None, (1, 2)))
        asym = lax.conv_general_dilated(x, w[..., :2], (1, 1), "SAME_LOWER")
        np.testing.assert_allclose(asym, lax.conv(x, w[..., :2], (1, 1), [(1, 1), (1, 0)]))


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("stride,k", [(1, 3), (2, 3), (2, 4), (3, 2)])
def test_conv_transpose_is_the_input_gradient(padding, stride, k, rng):
    """conv_transpose(transpose_kernel=True) is the vjp of the forward conv w.r.t. its input,
    and upsamples (4, 5) positions to in * stride (SAME) or in * stride + max(k - stride, 0)."""
    w = rng.standard_normal((4, 3, k, k))
    extra = max(k - stride, 0) if padding == "VALID" else 0
    x = rng.standard_normal((2, 3, 4 * stride + extra, 5 * stride + extra))
    out, pullback = funcgrad.vjp(lambda x: lax.conv(x, w, (stride, stride), padding), x)
    assert out.shape == (2, 4, 4, 5)
    ct = rng.standard_normal(out.shape)
    nchw = ("NCHW", "OIHW", "NCHW")
    transposed = lax.conv_transpose(ct, w, (stride, stride), padding, dimension_numbers=nchw,
                                    transpose_kernel=True)
    np.testing.assert_allclose(transposed, pullback(ct)[0], rtol=1e-10, atol=1e-12)
    flipped = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    np.testing.assert_allclose(lax.conv_transpose(ct, flipped, (stride, stride), padding,
                                                  dimension_numbers=nchw), transposed, rtol=1e-12)
    # JAX's default layout is channels last: NHWC input, HWIO kernel, NHWC output.
    nhwc = lax.conv_transpose(ct.transpose(0, 2, 3, 1), flipped.transpose(2, 3, 1, 0),
                              (stride, stride), padding)
    np.testing.assert_allclose(nhwc, transposed.transpose(0, 2, 3, 1), rtol=1e-12)


def test_preferred_element_type_and_its_gradient(rng):
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    f = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                              preferred_element_type=np.float64)
    assert f(x, w).dtype == np.float64
    big = np.full((1, 1, 3, 3), 100, np.int8)       # accumulates in the preferred type
    assert lax.conv(big, big, (1, 1), "VALID", preferred_element_type=np.int32) == 90000
    gx, gw = funcgrad.grad(lambda x, w: f(x, w).sum(), (0, 1))(x, w)
    assert gx.dtype == np.float32 and gw.dtype == np.float32
    ex, ew_ = funcgrad.grad(lambda x, w: lax.conv(x, w, (1, 1), "SAME").sum(), (0, 1))(
        x.astype(np.float64), w.astype(np.float64))
    np.testing.assert_allclose(gx, ex, rtol=1e-5)
    np.testing.assert_allclose(gw, ew_, rtol=1e-5)


ZERO_SIZE = [((0, 3, 5, 5), (4, 3, 3, 3), "SAME"), ((2, 3, 5, 5), (0, 3, 3, 3), "SAME"),
             ((2, 0, 5, 5), (4, 0, 3, 3), "SAME"), ((2, 3, 0, 5), (4, 3, 3, 3), "VALID"),
             ((2, 3, 0, 5), (4, 3, 3, 3), ((1, 1), (1, 1)))]


@pytest.mark.parametrize("lhs_shape,rhs_shape,padding", ZERO_SIZE)
def test_conv_zero_size(lhs_shape, rhs_shape, padding, rng):
    case = ConvCase(lhs_shape, rhs_shape, (1, 1), padding, (1, 1), (1, 1),
                    ("NCHW", "OIHW", "NCHW"), 1, 1)
    x, w = rng.standard_normal(lhs_shape), rng.standard_normal(rhs_shape)
    h.check_values(case, [x, w], case.reference, prim="conv_general_dilated")
    grads = funcgrad.grad(lambda x, w: case(x, w).sum(), (0, 1))(x, w)
    for g, a in zip(grads, (x, w)):
        np.testing.assert_array_equal(g, np.zeros_like(a))
    assert vmap(case)(np.stack([x] * 2), np.stack([w] * 2)).shape == (2,) + case(x, w).shape


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4)])
@pytest.mark.parametrize("computation", ["sum", "max"])
def test_reduce_window_zero_size(shape, computation, rng):
    case = PoolCase(shape, computation, (1, 1, 2, 2), (1, 1, 2, 2), "VALID", (1,) * 4, (1,) * 4)
    x = rng.standard_normal(shape)
    h.check_values(case, [x], case.reference)
    assert funcgrad.grad(lambda x: case(x).sum())(x).shape == shape
    assert vmap(case)(np.stack([x] * 3)).shape == (3,) + case(x).shape


def test_conv_with_general_padding(rng):
    x, w = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3, 2, 3))
    out = lax.conv_with_general_padding(x, w, (2, 1), [(1, 0), (0, 2)], (1, 2), (2, 1))
    expected = conv_reference(x, w, (2, 1), [(1, 0), (0, 2)], (1, 2), (2, 1),
                              ("NCHW", "OIHW", "NCHW"), 1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def _conv_error(*args, **kwargs):
    """Raise the error of the conv, eagerly and while tracing; return both messages."""
    traced = lambda a, b: lax.conv_general_dilated(a, b, *args[2:], **kwargs)
    messages = []
    for call in (lambda: lax.conv_general_dilated(*args, **kwargs),
                 lambda: make_jaxpr(traced)(*args[:2])):
        with pytest.raises((TypeError, ValueError)) as info:
            call()
        messages.append(str(info.value))
    return messages


def test_conv_errors_name_the_op_shapes_and_line():
    x = np.zeros((2, 3, 8, 8), np.float32)
    for msg in _conv_error(x, np.zeros((4, 5, 3, 3), np.float32), (1, 1), "SAME"):
        assert "conv_general_dilated" in msg and "f32[2,3,8,8]" in msg and "f32[4,5,3,3]" in msg
        assert "size 3" in msg and "size 5" in msg and "test_conv.py" in msg
    for msg in _conv_error(x, np.zeros((4, 3, 3), np.float32), (1, 1), "SAME"):
        assert "conv_general_dilated" in msg and "rank" in msg and "f32[4,3,3]" in msg
    for msg in _conv_error(x, np.zeros((4, 3, 9, 3), np.float32), (1, 1), "VALID"):
        assert "larger than the padded" in msg and "test_conv.py" in msg
    for msg in _conv_error(x, np.zeros((5, 1, 3, 3), np.float32), (1, 1), "SAME",
                           feature_group_count=3):
        assert "feature_group_count" in msg and "(5)" in msg
    for msg in _conv_error(x, np.zeros((4, 3, 3, 3), np.float64), (1, 1), "SAME"):
        assert "same dtype" in msg
    (msg, _) = _conv_error(x, np.zeros((4, 3, 3, 3), np.float32), (1, 1), "FULL")
    assert "conv_general_dilated" in msg and "'FULL'" in msg
    (msg, _) = _conv_error(x, np.zeros((4, 3, 3, 3), np.float32), (1, 1, 1), "SAME")
    assert "window_strides" in msg
    (msg, _) = _conv_error(x, np.zeros((4, 3, 3, 3), np.float32), (1, 1), "SAME",
                           dimension_numbers=("NCHW", "OIHW", "NCXW"))
    assert "dimension_numbers" in msg


# ---------------------------------------------------------------------------------------------
# reduce_window


@settings(max_examples=60)
@given(st.data(), pool_cases(), st.sampled_from([F32, F64, I32]))
def test_reduce_window_matches_reference(data, case, dtype):
    x = Operand(case.shape, dtype).draw(data)
    prim = {"sum": "reduce_window_sum", "max": "reduce_window_max",
            "min": "reduce_window_min"}[case.computation]
    h.check_values(case, [x], case.reference, prim=prim, rtol=TOL[dtype], atol=TOL[dtype])
    h.check_jit(case, [x], rtol=TOL[dtype], atol=TOL[dtype])


@settings(max_examples=40)
@given(st.data(), pool_cases())
def test_reduce_window_derivatives(data, case):
    op = Operand(case.shape, F64, h.reals(unique=True))    # no ties: max/min are smooth there
    x = op.draw(data)
    assume(np.all(np.isfinite(case(x))))   # a window of only padding has no derivative
    h.check_derivatives(case, [x], [op], order=2)


@settings(max_examples=40)
@given(st.data(), pool_cases())
def test_reduce_window_vmap(data, case):
    op = Operand(case.shape, F64)
    h.check_batching(data, case, [op], [op.draw(data)])


@settings(max_examples=15)
@given(st.data(), pool_cases(computations=("max", "min")))
def test_max_pool_gradients_vmap(data, case):
    """Batched window_gather / window_scatter_add: vmap of jvp and of vjp against loops."""
    op = Operand(case.shape, F64, h.reals(unique=True))
    xs = np.stack([op.draw(data) for _ in range(3)])
    ts = np.stack([op.draw(data) for _ in range(3)])
    cts = np.random.default_rng(0).standard_normal((3,) + case(xs[0]).shape)
    jvp = lambda x, t: funcgrad.jvp(case, (x,), (t,))[1]
    vjp = lambda x, ct: funcgrad.vjp(case, x)[1](ct)[0]
    for f, args, in_axes in ((jvp, (xs, ts), (0, 0)), (jvp, (xs, ts[0]), (0, None)),
                             (vjp, (xs, cts), (0, 0)), (vjp, (xs, cts[0]), (0, None))):
        out = vmap(f, in_axes)(*args)
        core.check_jaxpr(make_jaxpr(vmap(f, in_axes))(*args))
        pick = lambda a, ax, j: a if ax is None else a[j]
        expected = np.stack([f(*(pick(a, ax, j) for a, ax in zip(args, in_axes)))
                             for j in range(3)])
        np.testing.assert_array_equal(out, expected)


@settings(max_examples=40)
@given(st.data(), pool_cases(computations=("max",)),
       st.sampled_from([np.dtype(np.float16), F32, F64, I32]))
def test_disjoint_window_scatter_matches_indexed_scatter(data, case, dtype):
    """Windows that share no element scatter by one masked copy per offset; the result is
    the index-based scatter-add's, bit for bit, with inf and NaN cotangents staying put."""
    stride = [(k - 1) * d + 1 + data.draw(st.integers(0, 1))
              for k, d in zip(case.window, case.window_dilation)]
    case = dataclasses.replace(case, strides=tuple(stride))
    x = np.zeros(case.shape)
    geometry = dict(window_dimensions=case.window, window_strides=case.strides,
                    padding=conv_module.padding_pairs("pool", case.padding, case.shape,
                                                      case.window, case.strides,
                                                      case.base_dilation, case.window_dilation),
                    base_dilation=case.base_dilation, window_dilation=case.window_dilation)
    windows = case(x).shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    pos = rng.integers(0, math.prod(case.window), windows).astype(np.int32)
    ct = rng.standard_normal(windows).astype(dtype) if dtype.kind == "f" else \
        rng.integers(-9, 9, windows).astype(dtype)
    if dtype.kind == "f" and ct.size:
        ct.flat[rng.integers(0, ct.size, 2)] = [np.inf, np.nan]
    scatter = lambda: conv_module._window_scatter_add_impl(np, ct, pos, operand_shape=x.shape,
                                                           **geometry)
    assert conv_module._disjoint(case.window, case.strides, case.window_dilation)
    with mock.patch.object(conv_module, "_disjoint", lambda *a: False):
        expected = scatter()
    out = scatter()
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)


def max_pool(x):
    return lax.reduce_window(x, -np.inf, "max", (1, 1, 2, 2), (1, 1, 2, 2))


def test_max_pool_ties_pick_the_first_element():
    x = np.zeros((1, 2, 4, 4))
    x[0, 1, 2:, 2:] = [[1.0, 3.0], [3.0, 3.0]]          # a three-way tie at the max
    g = funcgrad.grad(lambda x: max_pool(x).sum())(x)
    expected = np.zeros_like(x)
    expected[0, 0, ::2, ::2] = 1                        # all-equal windows: the first element
    expected[0, 1, ::2, ::2] = 1
    expected[0, 1, 2, 2], expected[0, 1, 2, 3] = 0, 1   # the first of the tied maxima
    np.testing.assert_array_equal(g, expected)
    t = np.arange(x.size, dtype=float).reshape(x.shape)   # forward mode picks the same ones
    np.testing.assert_array_equal(funcgrad.jvp(max_pool, (x,), (t,))[1],
                                  (t * expected).reshape(1, 2, 2, 2, 2, 2).sum((3, 5)))
    # Overlapping windows: every window of a constant input picks its first element.
    min_pool = lambda x: lax.reduce_window(x, None, "min", (3, 3), (1, 1))
    counts = funcgrad.grad(lambda x: min_pool(x).sum())(np.ones((5, 5)))
    expected = np.zeros((5, 5))
    expected[:3, :3] = 1
    np.testing.assert_array_equal(counts, expected)


def test_max_pool_nan_takes_the_gradient():
    x = np.array([[1.0, np.nan, 2.0, 5.0]])
    out, pullback = funcgrad.vjp(lambda x: lax.reduce_window(x, None, "max", (1, 2), (1, 2)), x)
    np.testing.assert_array_equal(out, [[np.nan, 5.0]])
    np.testing.assert_array_equal(pullback(np.ones((1, 2)))[0], [[0.0, 1.0, 0.0, 1.0]])


def test_avg_pool_gradient_spreads_evenly():
    avg = lambda x: lax.reduce_window(x, 0.0, "sum", (2, 2), (2, 2), "SAME") / 4
    g = funcgrad.grad(lambda x: avg(x).sum())(np.ones((3, 4)))
    np.testing.assert_array_equal(g, np.full((3, 4), 0.25))


@pytest.mark.parametrize("computation,position", [("max", "reduce_window_argmax"),
                                                  ("min", "reduce_window_argmin")])
def test_pooling_derivative_jaxprs(computation, position):
    """Forward mode gathers at the extremum's position; reverse mode scatters there."""
    pool = lambda x: lax.reduce_window(x, None, computation, (1, 1, 2, 2), (1, 1, 2, 2))
    x = np.ones((2, 3, 4, 4))
    jvp = make_jaxpr(lambda x, t: funcgrad.jvp(pool, (x,), (t,))[1])(x, x)
    grad = make_jaxpr(funcgrad.grad(lambda x: pool(x).sum()))(x)
    for jaxpr in (jvp, grad):
        core.check_jaxpr(jaxpr)
    assert {position, "window_gather"} <= h.primitives_in(jvp), jvp
    assert {position, "window_scatter_add"} <= h.primitives_in(grad), grad


def test_reduce_window_errors():
    x = np.zeros((2, 3, 8, 8), np.float32)
    message = r"reduce_window_max.*larger than the padded.*f32\[2,3,8,8\].*test_conv.py"
    with pytest.raises(TypeError, match=message):
        make_jaxpr(lambda x: lax.reduce_window(x, None, "max", (1, 1, 9, 1), (1, 1, 1, 1)))(x)
    with pytest.raises(ValueError, match="window_dimensions .* operand axis"):
        lax.reduce_window(x, None, "max", (2, 2), (2, 2))
    with pytest.raises(ValueError, match="computation must be one of"):
        lax.reduce_window(x, None, "mean", (1, 1, 2, 2))
    with pytest.raises(ValueError, match="not the identity"):
        lax.reduce_window(x, 1.0, "sum", (1, 1, 2, 2))
    with pytest.raises(TypeError, match="reduce_window_max: unsupported operand dtype complex"):
        lax.reduce_window(x.astype(np.complex64), None, "max", (1, 1, 2, 2))


# ---------------------------------------------------------------------------------------------
# The C backend: pooling kernels, and conv's shifted planes, in C++ (each compiled example
# builds one translation unit)

WINDOW_PRIMITIVES = ("reduce_window_max", "reduce_window_min", "reduce_window_argmax",
                     "reduce_window_argmin", "window_gather", "window_scatter_add")
KERNEL_DTYPES = [np.dtype(t) for t in (np.float32, np.float64, np.int8, np.int32, np.uint8,
                                       np.int64, np.bool_)]


def both_backends(f, *args):
    """``f`` jitted for the C backend (its lowering too) and for the numpy one."""
    with funcgrad.config.override(backend="c"):
        lowered = funcgrad.jit(f).lower(*args)
        got = funcgrad.jit(f)(*args)
    with funcgrad.config.override(backend="numpy"):
        want = funcgrad.jit(f)(*args)
    return lowered, got, want


def special_values(rng, shape, dtype):
    """Ties, signed zeros, infinities and NaNs (floats); the extremes (integers)."""
    if dtype.kind == "f":
        pool = np.array([-np.inf, -2.0, -0.0, 0.0, 1.0, 3.0, np.inf, np.nan], dtype)
    elif dtype.kind == "b":
        pool = np.array([False, True])
    else:
        info = np.iinfo(dtype)
        pool = np.array(sorted({info.min, info.min + 1, 0, 1, 7, info.max}), dtype)
    return rng.choice(pool, shape)


@st.composite
def kernel_pool_cases(draw):
    """Windows over 1 to 4 axes, half of them disjoint (as in pooling layers); a last axis
    long enough for the kernels' vector loops."""
    case = draw(pool_cases(computations=("max",)))
    if draw(st.booleans()):
        case = dataclasses.replace(case, strides=tuple(
            max(s, (k - 1) * d + 1) for s, k, d in zip(case.strides, case.window,
                                                        case.window_dilation)))
    extra = draw(st.integers(0, 1))
    shape = ((draw(st.integers(1, 3)),) * extra + case.shape[:-1]
             + (draw(st.integers(case.shape[-1], 40)),))
    grow = lambda t, v: (v,) * extra + t
    window = grow(case.window, 1)
    padding = (((0, 0),) * extra + tuple(case.padding)) if not isinstance(case.padding, str) \
        else case.padding
    return dataclasses.replace(case, shape=shape, window=window,
                               strides=grow(case.strides, 1), padding=padding,
                               base_dilation=grow(case.base_dilation, 1),
                               window_dilation=grow(case.window_dilation, 1))


@pytest.mark.needs_compiler
@settings(max_examples=20)
@given(st.data(), kernel_pool_cases(), st.sampled_from(KERNEL_DTYPES))
def test_window_kernels_give_the_impls_bits(data, case, dtype):
    """Every window primitive's C++ kernel against its numpy impl, bit for bit: which of
    tied extrema (and of +0 and -0) pooling picks, NaN winning, padding, dilations, and
    scatters that add up overlapping windows (positions drawn at random)."""
    geometry = dict(window_dimensions=case.window, window_strides=case.strides,
                    padding=conv_module.padding_pairs("pool", case.padding, case.shape,
                                                      case.window, case.strides,
                                                      case.base_dilation, case.window_dilation),
                    base_dilation=case.base_dilation, window_dilation=case.window_dilation)
    windows = conv_module._window_shape("pool", [], case.shape, **geometry)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x, ct = special_values(rng, case.shape, dtype), special_values(rng, windows, dtype)
    if dtype.kind == "f" and data.draw(st.booleans()):     # sums that round
        ct = rng.standard_normal(windows).astype(dtype)
    pos = rng.integers(0, math.prod(case.window), windows).astype(np.int32)

    def f(x, ct, pos):
        return [conv_module.reduce_window_max_p.bind(x, **geometry),
                conv_module.reduce_window_min_p.bind(x, **geometry),
                conv_module.reduce_window_argmax_p.bind(x, **geometry),
                conv_module.reduce_window_argmin_p.bind(x, **geometry),
                conv_module.window_gather_p.bind(x, pos, **geometry),
                conv_module.window_scatter_add_p.bind(ct, pos, operand_shape=case.shape,
                                                      **geometry)]
    with np.errstate(all="ignore"):
        lowered, got, want = both_backends(f, x, ct, pos)
    for name in WINDOW_PRIMITIVES:
        assert any(f"{name}" in k and "fg_window" in k for k in lowered.kernels), name
    for name, g, w in zip(WINDOW_PRIMITIVES, got, want):
        assert_same_bits(g, w, err_msg=f"{name} {case} {dtype}")


@pytest.mark.needs_compiler
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pooling_step_kernels_give_the_impls_bits(dtype):
    """The CNN's 2x2 pooling and its gradient (the kernels' fast loops), with NaN, inf and
    ties, as C++ and as numpy."""
    rng = np.random.default_rng(0)
    x = special_values(rng, (3, 4, 10, 34), np.dtype(dtype))
    x[0, 0] = rng.standard_normal((10, 34))

    def f(x):
        y, pullback = funcgrad.vjp(max_pool, x)
        return y, pullback(fnp.cos(y))[0]
    with np.errstate(all="ignore"):
        lowered, got, want = both_backends(f, x)
    assert "c_reduce_window_max" in lowered.source and "c_window_scatter_add" in lowered.source
    for g, w in zip(got, want):
        assert_same_bits(g, w)


@pytest.mark.needs_compiler
def test_window_kernels_skip_dtypes_without_a_c_type():
    """float16 pooling keeps the numpy impl under the C backend."""
    x = np.arange(32, dtype=np.float16).reshape(2, 16)
    pool = lambda x: lax.reduce_window(x, None, "max", (1, 2), (1, 2))
    lowered, got, want = both_backends(pool, x)
    assert "impl_reduce_window_max" in lowered.source
    assert_same_bits(got, want)


@pytest.fixture(scope="module")
def c_planes():
    """conv's shifted-plane helpers compiled, per dtype."""
    from funcgrad.compiler import codegen_c
    params = dict(window_strides=(1,), padding=((0, 0),), lhs_dilation=(1,), rhs_dilation=(1,),
                  dimension_numbers=conv_module.conv_dimension_numbers(3),
                  feature_group_count=1, batch_group_count=1, preferred_element_type=None)
    planes = {}
    for dtype in (F32, F64, I32):
        aval = core.ShapedArray((1, 1, 1), dtype)
        impl = conv_module.conv_general_dilated_p.c_kernel([aval, aval], [aval], **params)
        planes[dtype] = conv_module._c_planes(*codegen_c.compile_helpers(impl.helpers))
    return planes


@pytest.mark.needs_compiler
@given(st.data(), st.lists(st.integers(1, 5), min_size=1, max_size=4),
       st.sampled_from([F32, F64, I32]))
def test_c_planes_match_numpy(c_planes, data, sizes, dtype):
    """The C++ im2col / col2im of unit-stride convs against numpy's, for any grid and
    shifts (reaching past the grid too), and for planes read through strides."""
    sizes = tuple(sizes)
    shift = lambda n: st.one_of(st.integers(-1, 1), st.integers(-n - 1, n + 1))
    shifts = [tuple(data.draw(shift(n)) for n in sizes) for _ in range(data.draw(st.integers(1, 4)))]
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    a, b = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    values = lambda shape: (rng.standard_normal(shape) * 8).astype(dtype)
    src = values((b, a, math.prod(sizes))).transpose(1, 0, 2)     # planes at strides
    if data.draw(st.booleans()):
        src = np.ascontiguousarray(src)
    np.testing.assert_array_equal(c_planes[dtype].copies(np, src, sizes, shifts),
                                  conv_module._shifted_copies(np, src, sizes, shifts))
    z = values((a, len(shifts), math.prod(sizes)))
    np.testing.assert_array_equal(c_planes[dtype].sums(np, z, sizes, shifts),
                                  conv_module._shifted_sum(np, z.copy(), sizes, shifts))


@pytest.mark.needs_compiler
@settings(max_examples=15)
@given(st.data(), shiftable_conv_cases(), st.sampled_from([F32, F64, I32]))
def test_conv_and_its_gradients_by_c_planes_match_numpy(data, case, dtype):
    """A conv and both its gradients as the C backend runs them (shifted planes by C++)
    and as numpy code: the same products of the same patches."""
    args = [Operand(case.lhs_shape, dtype).draw(data), Operand(case.rhs_shape, dtype).draw(data)]
    ct = Operand(case(*args).shape, dtype).draw(data)

    def f(lhs, rhs, ct):
        out, pullback = funcgrad.vjp(case, lhs, rhs)
        return [out, *pullback(ct)]
    lowered, got, want = both_backends(f, *args, ct)
    assert "c_conv_general_dilated" in lowered.source
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_conv_results_take_later_results_in_place():
    """conv returns new arrays (fresh_result): once dead, its result is the buffer of the
    next result of its shape, where numpy code writes with ``out=``; a view's result (rev)
    never is."""
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((3, 3, 3, 3)).astype(np.float32)
    conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME")
    f = lambda x, w: fnp.maximum(conv(x, w) * 2.0, 0.0) + lax.rev(x, (3,))
    with funcgrad.config.override(backend="numpy"):
        lowered = funcgrad.jit(f).lower(x, w)
        kept = x.copy()
        out = funcgrad.jit(f)(x, w)
    lines = [line.split("#")[0] for line in lowered.source.splitlines()]
    conv_var = next(line.split("=")[0].strip() for line in lines if "conv_general_dilated(" in line)
    rev_var = next(line.split("=")[0].strip() for line in lines if "impl_rev(" in line)
    writes = [line.rstrip().rstrip(")").split(", ")[-1] for line in lines if "numpy_" in line]
    assert conv_var in writes and rev_var not in writes, lowered.source
    np.testing.assert_array_equal(x, kept)
    np.testing.assert_allclose(out, np.maximum(2 * np.asarray(jit_free(conv, x, w)), 0) + x[..., ::-1],
                               rtol=1e-6)


def jit_free(f, *args):
    with funcgrad.config.override(backend="numpy"):
        return f(*args)


@pytest.mark.needs_compiler
def test_a_transposed_conv_result_as_a_kernel_buffer():
    """A conv's result may be a transposed view of its new buffer (here NHWC): a C kernel
    given it for its output allocates instead (it writes C-contiguous arrays)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 5, 5, 3)), rng.standard_normal((3, 3, 3, 4))

    def f(x, w):
        y = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return fnp.tanh(y) * 2.0 + 1.0
    lowered, got, want = both_backends(f, x, w)
    call = next(line for line in lowered.source.splitlines() if "fused_kernel" in line)
    conv_var = next(line.split("=")[0].strip() for line in lowered.source.splitlines()
                    if "conv_general_dilated(" in line.split("#")[0])
    assert call.split("#")[0].rstrip().rstrip(")").endswith(conv_var), lowered.source
    np.testing.assert_allclose(got, want, rtol=1e-12)
