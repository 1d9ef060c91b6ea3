"""Linear algebra: dot_general, the decomposition primitives, and funcgrad.numpy.linalg.

Primitives go through the shared harness (values vs NumPy, check_grads to order 2 in both
modes, vmap vs a loop over drawn in_axes, check_jaxpr on every traced jaxpr). Matrices are
drawn from domains that keep each function differentiable: well-conditioned, symmetric
positive definite, distinct eigenvalues or singular values, pivots chosen by a clear margin.
"""
from __future__ import annotations

import string

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core, lax, make_jaxpr, vmap
from funcgrad.primitives import linalg as lp
from funcgrad.test_util import check_grads

import primitive_harness as h
from primitive_harness import Operand

F32, F64, I32 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32)
EXAMPLES = settings(max_examples=12)


def _rtol(dtype) -> float:
    return 2e-4 if np.dtype(dtype) == F32 else 1e-9


def _eye_like(x):
    return np.eye(x.shape[-2], x.shape[-1], dtype=x.dtype)


def _mat_t(x):
    return np.swapaxes(x, -1, -2)


def _orthogonal(n: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))[0]


# ---------------------------------------------------------------------------------------------
# Matrix domains: (shape, dtype) -> strategy of stacks of matrices (the last two axes).

def _mapped(fn, lo=-3.0, hi=3.0) -> h.Domain:
    return lambda shape, dtype: h.reals(lo, hi)(shape, dtype).map(lambda x: fn(x).astype(dtype))


def dominant() -> h.Domain:
    """Diagonally dominant, so well conditioned (and LU without pivoting would do)."""
    return _mapped(lambda x: x + 4 * x.shape[-1] * _eye_like(x))


def unit_dominant() -> h.Domain:
    """Small off-diagonal entries: triangles with a unit diagonal stay well conditioned."""
    return _mapped(lambda x: 0.2 * x + 3 * _eye_like(x))


def row_reversed_dominant() -> h.Domain:
    """Dominant matrices with their rows reversed: LU pivots on every anti-diagonal entry,
    each by a clear margin (so nearby matrices pivot the same way)."""
    return _mapped(lambda x: (x + 4 * x.shape[-1] * _eye_like(x))[..., ::-1, :])


def spd() -> h.Domain:
    return _mapped(lambda x: x @ _mat_t(x) + x.shape[-1] * _eye_like(x))


def distinct_eigenvalues() -> h.Domain:
    """Q (diag(0, 2, 4, ...) + E) Q^T with a small symmetric E: eigenvalue gaps > 1."""
    def fn(x):
        n = x.shape[-1]
        q = _orthogonal(n, n)
        e = 0.02 * (x + _mat_t(x))
        return q @ (np.diag(2.0 * np.arange(n)) + e) @ q.T
    return _mapped(fn)


def distinct_singular_values() -> h.Domain:
    """U diag(1, 3, 5, ...) V^T + a small perturbation: singular value gaps > 1, none near 0."""
    def fn(x):
        m, n = x.shape[-2:]
        k = min(m, n)
        base = _orthogonal(m, m)[:, :k] @ np.diag(1.0 + 2.0 * np.arange(k)) @ _orthogonal(n, n + 7)[:, :k].T
        return base + 0.03 * x
    return _mapped(fn)


def distinct_sums() -> h.Domain:
    """Signed entries whose absolute row sums and column sums all differ by a clear margin
    (the max/min in the 1- and inf-norms has no ties)."""
    def fn(x):
        i, j = np.indices(x.shape[-2:])
        return (1.0 + i + 0.5 * j + 0.01 * x) * (-1.0) ** (i + j)
    return _mapped(fn)


def distinct_magnitudes() -> h.Domain:
    """Nonzero entries of either sign whose absolute values differ (by 1/8 at least)."""
    def domain(shape, dtype):
        mags = h.reals(0.5, 3, unique=True)(shape, dtype)
        return mags.flatmap(lambda m: h.hnp.arrays(np.bool_, shape).map(
            lambda neg: np.where(neg, -m, m)))
    return domain


def full_rank() -> h.Domain:
    """Leading square block dominant: full rank, R of QR well conditioned."""
    return _mapped(lambda x: x + 4 * max(x.shape[-2:]) * _eye_like(x))


def matrix_shapes(square: bool = True, min_side: int = 1, max_side: int = 4, max_batch: int = 1):
    batch = h.hnp.array_shapes(min_dims=0, max_dims=max_batch, min_side=1, max_side=2)
    sides = st.integers(min_side, max_side)
    if square:
        return st.tuples(batch, sides).map(lambda bn: bn[0] + (bn[1], bn[1]))
    return st.tuples(batch, sides, sides).map(lambda bmn: bmn[0] + bmn[1:])


# ---------------------------------------------------------------------------------------------
# dot_general


@st.composite
def dot_general_cases(draw):
    """Shapes and dimension numbers with batch, contracting and free axes in any order."""
    counts = [draw(st.integers(0, 2), label=k) for k in ("batch", "contract", "lhs free", "rhs free")]
    sizes = [[draw(st.integers(0, 3)) for _ in range(c)] for c in counts]
    roles = {"b": sizes[0], "c": sizes[1], "l": sizes[2], "r": sizes[3]}
    lhs = draw(st.permutations([(k, i) for k in "bcl" for i in range(len(roles[k]))]))
    rhs = draw(st.permutations([(k, i) for k in "bcr" for i in range(len(roles[k]))]))
    shape = lambda axes: tuple(roles[k][i] for k, i in axes)
    pos = lambda axes, k: tuple(axes.index((k, i)) for i in range(len(roles[k])))
    dnums = ((pos(lhs, "c"), pos(rhs, "c")), (pos(lhs, "b"), pos(rhs, "b")))
    # the einsum reference: one letter per (role, index)
    letter = {key: string.ascii_letters[j] for j, key in enumerate(sorted(set(lhs) | set(rhs)))}
    out = [("b", i) for i in range(len(roles["b"]))] + [a for a in lhs if a[0] == "l"] + \
        [a for a in rhs if a[0] == "r"]
    spec = "".join(letter[a] for a in lhs) + "," + "".join(letter[a] for a in rhs) + "->" + \
        "".join(letter[a] for a in out)
    return shape(lhs), shape(rhs), dnums, spec


@EXAMPLES
@given(data=st.data(), case=dot_general_cases(), dtype=st.sampled_from([F32, F64, I32]))
def test_dot_general(data, case, dtype):
    lhs_shape, rhs_shape, dnums, spec = case

    def ref(x, y):
        return np.einsum(spec, x.astype(np.float64), y.astype(np.float64)).astype(dtype)

    h.check_primitive(data, lambda x, y: lax.dot_general(x, y, dnums),
                      [Operand(lhs_shape, dtype), Operand(rhs_shape, dtype)], ref,
                      prim="dot_general", rtol=_rtol(dtype), atol=_rtol(dtype))


@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (0, 0), (2, None), (None, 1), (1, 2),
                                     (-1, -1)])
def test_dot_general_vmap_axes(in_axes, rng):
    """lhs batched, rhs batched, both, at leading and inner axes, against a loop; one
    dot_general per vmap, with no transposes of the operands."""
    dnums = (((1,), (0,)), ((0,), (2,)))            # lhs (b, k, m), rhs (k, n, b)
    per_lhs, per_rhs, size = (2, 3, 4), (3, 5, 2), 3

    def batched(shape, ax):
        if ax is None:
            return rng.standard_normal(shape)
        return np.moveaxis(rng.standard_normal((size,) + shape), 0, ax)

    x, y = batched(per_lhs, in_axes[0]), batched(per_rhs, in_axes[1])
    f = lambda a, b: lax.dot_general(a, b, dnums)
    out = vmap(f, in_axes=in_axes)(x, y)
    take = lambda a, ax, k: a if ax is None else np.take(a, k, axis=ax)
    expected = np.stack([f(take(x, in_axes[0], k), take(y, in_axes[1], k)) for k in range(size)])
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    jaxpr = make_jaxpr(vmap(f, in_axes=in_axes))(x, y)
    core.check_jaxpr(jaxpr)
    assert [e.primitive.name for e in jaxpr.eqns][0] == "dot_general"
    assert h.primitives_in(jaxpr) <= {"dot_general", "transpose"}


def test_per_example_gradients_are_one_batched_dot_general(rng):
    """vmap(grad) of a linear layer: the per-example outer products x_i g_i^T become one
    dot_general with a batch axis, whatever the batch size."""
    w = rng.standard_normal((4, 3))
    xs, ys = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))

    def loss(w, x, y):
        return fnp.sum((x @ w - y) ** 2)

    per_example = vmap(funcgrad.grad(loss), in_axes=(None, 0, 0))
    grads = per_example(w, xs, ys)
    expected = np.stack([2 * np.outer(x, x @ w - y) for x, y in zip(xs, ys)])
    np.testing.assert_allclose(grads, expected, rtol=1e-12)
    jaxpr = make_jaxpr(per_example)(w, xs, ys)
    core.check_jaxpr(jaxpr)
    batched = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"
               and e.params["dimension_numbers"][1] != ((), ())]
    assert len(batched) == 1, jaxpr
    shape = batched[0].outvars[0].aval.shape
    assert shape[0] == 8 and sorted(shape[1:]) == [3, 4]
    assert h.count_eqns(make_jaxpr(per_example)(w, np.tile(xs, (5, 1)), np.tile(ys, (5, 1)))) == \
        h.count_eqns(jaxpr)


def test_dot_general_preferred_element_type(rng):
    """Accumulation in the preferred type (int8 products that overflow int8), and gradients
    through a float32 product accumulated in float64."""
    a = np.full((2, 40), 100, np.int8)
    out = lax.dot_general(a, a, (((1,), (1,)), ((), ())), preferred_element_type=np.int32)
    assert out.dtype == np.int32 and out[0, 0] == 400000
    traced = make_jaxpr(lambda x: lax.dot_general(x, x, (((1,), (1,)), ((), ())), np.int32))(a)
    assert traced.out_avals[0].dtype == np.int32

    x, y = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    f = lambda x, y: fnp.sum(lax.dot_general(x, y, (((1,), (0,)), ((), ())), np.float64) ** 2)
    gx, gy = funcgrad.grad(f, argnums=(0, 1))(x, y)
    assert gx.dtype == np.float32 and gy.dtype == np.float32
    p = x.astype(np.float64) @ y
    np.testing.assert_allclose(gx, 2 * p @ y.T, rtol=1e-5)
    np.testing.assert_allclose(gy, 2 * x.T @ p, rtol=1e-5)


def test_dot_general_errors():
    f32 = lambda *s: np.zeros(s, np.float32)
    with pytest.raises(TypeError, match=r"dot_general: contracting axis 1 of lhs \(size 3\) does "
                                        r"not match axis 0 of rhs \(size 4\).*f32\[2,3\], f32\[4,5\].*"
                                        r"test_linalg.py"):
        make_jaxpr(lambda x, y: lax.dot_general(x, y, (((1,), (0,)), ((), ()))))(f32(2, 3), f32(4, 5))
    with pytest.raises(TypeError, match="dot_general: operands must have the same dtype"):
        make_jaxpr(lambda x, y: lax.dot_general(x, y, (((1,), (0,)), ((), ()))))(
            f32(2, 3), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="dot_general: invalid axes"):
        make_jaxpr(lambda x, y: lax.dot_general(x, y, (((2,), (0,)), ((), ()))))(f32(2, 3), f32(3))


# ---------------------------------------------------------------------------------------------
# Decomposition primitives through the harness


def _lu_reference(a):
    """Unblocked LU with partial pivoting (first maximum wins ties), one matrix at a time."""
    stack = a.reshape((int(np.prod(a.shape[:-2])),) + a.shape[-2:]).astype(np.float64)
    n = a.shape[-1]
    outs = []
    for m in stack:
        m = m.copy()
        perm, piv = np.arange(n), np.zeros(n, np.int64)
        for k in range(n):
            p = k + int(np.argmax(np.abs(m[k:, k])))
            piv[k] = p
            m[[k, p]], perm[[k, p]] = m[[p, k]], perm[[p, k]]
            if m[k, k] != 0:
                m[k + 1:, k] /= m[k, k]
            m[k + 1:, k + 1:] -= np.outer(m[k + 1:, k], m[k, k + 1:])
        outs.append((m, piv, perm))
    shape = a.shape[:-1]
    return [np.stack([o[0] for o in outs]).reshape(a.shape).astype(a.dtype),
            np.stack([o[1] for o in outs]).reshape(shape).astype(np.int32),
            np.stack([o[2] for o in outs]).reshape(shape).astype(np.int32)]


def _triangular_solve_reference(left_side, lower, transpose_a, unit_diagonal):
    def ref(a, b):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        m = np.tril(a64) if lower else np.triu(a64)
        if unit_diagonal:
            m = np.where(np.eye(a.shape[-1], dtype=bool), 1.0, m)
        m = _mat_t(m) if transpose_a else m
        x = np.linalg.solve(m, b64) if left_side else _mat_t(np.linalg.solve(_mat_t(m), _mat_t(b64)))
        return x.astype(a.dtype)
    return ref


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(), dtype=st.sampled_from([F32, F64]),
       flags=st.tuples(*[st.booleans()] * 4), k=st.integers(0, 3))
def test_triangular_solve(data, shape, dtype, flags, k):
    left_side, lower, transpose_a, unit_diagonal = flags
    n = shape[-1]
    b_shape = shape[:-2] + ((n, k) if left_side else (k, n))
    domain = unit_dominant() if unit_diagonal else dominant()
    h.check_primitive(data, lambda a, b: lax.triangular_solve(a, b, *flags),
                      [Operand(shape, dtype, domain), Operand(b_shape, dtype)],
                      _triangular_solve_reference(*flags), prim="triangular_solve",
                      rtol=_rtol(dtype), atol=_rtol(dtype))


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(), dtype=st.sampled_from([F32, F64]))
def test_lu(data, shape, dtype):
    operands = [Operand(shape, dtype, row_reversed_dominant())]
    h.check_primitive(data, lax.lu, operands, _lu_reference, prim="lu", order=0,
                      rtol=_rtol(dtype), atol=_rtol(dtype))
    # derivatives of the float output (check_grads cannot difference the integer ones)
    h.check_derivatives(lambda a: lax.lu(a)[0], [operands[0].draw(data, dtype=F64)], operands)


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(), dtype=st.sampled_from([F32, F64]))
def test_cholesky(data, shape, dtype):
    h.check_primitive(data, lax.cholesky, [Operand(shape, dtype, spd())],
                      lambda a: np.linalg.cholesky(a), prim="cholesky",
                      rtol=_rtol(dtype), atol=_rtol(dtype))


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(), dtype=st.sampled_from([F32, F64]),
       lower=st.booleans())
def test_eigh(data, shape, dtype, lower):
    # The harness perturbs both triangles; eigh reads one, and its derivative must agree.
    h.check_primitive(data, lambda a: lax.eigh(a, lower), [Operand(shape, dtype, distinct_eigenvalues())],
                      lambda a: list(np.linalg.eigh(a, "L" if lower else "U")), prim="eigh",
                      rtol=_rtol(dtype), atol=_rtol(dtype))


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(square=False), dtype=st.sampled_from([F32, F64]),
       full_matrices=st.booleans())
def test_qr(data, shape, dtype, full_matrices):
    m, n = shape[-2:]
    differentiable = not (full_matrices and m > n)
    h.check_primitive(data, lambda a: lax.qr(a, full_matrices), [Operand(shape, dtype, full_rank())],
                      lambda a: list(np.linalg.qr(a, "complete" if full_matrices else "reduced")),
                      prim="qr", order=2 if differentiable else 0,
                      rtol=_rtol(dtype), atol=_rtol(dtype))


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(square=False), dtype=st.sampled_from([F32, F64]),
       full_matrices=st.booleans(), compute_uv=st.booleans())
def test_svd(data, shape, dtype, full_matrices, compute_uv):
    m, n = shape[-2:]
    differentiable = not (compute_uv and full_matrices and m != n)

    def ref(a):
        out = np.linalg.svd(a, full_matrices, compute_uv)
        return list(out) if compute_uv else [out]

    h.check_primitive(data, lambda a: lax.svd(a, full_matrices, compute_uv),
                      [Operand(shape, dtype, distinct_singular_values())], ref, prim="svd",
                      order=2 if differentiable else 0, rtol=_rtol(dtype), atol=_rtol(dtype))


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(square=False), dtype=st.sampled_from([F32, F64]))
def test_pinv(data, shape, dtype):
    h.check_primitive(data, lp.pinv, [Operand(shape, dtype, full_rank())], np.linalg.pinv,
                      prim="pinv", rtol=_rtol(dtype), atol=_rtol(dtype))


def test_pinv_derivative_at_repeated_singular_values(rng):
    """pinv's closed-form derivative needs no distinct singular values (an orthogonal matrix
    has them all equal to 1), unlike a derivative through the SVD."""
    q = _orthogonal(4, 3)
    check_grads(lp.pinv, (q,), order=2)
    check_grads(lp.pinv, (q[:, :3],), order=2)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 130])
def test_blocked_kernels(n, rng):
    """LU and triangular solves across the block size (64): a[perm] = L U and residuals."""
    a = rng.standard_normal((2, n, n))
    packed, pivots, perm = lax.lu(a)
    l = np.tril(packed, -1) + np.eye(n)
    u = np.triu(packed)
    np.testing.assert_allclose(np.take_along_axis(a, perm[..., None], axis=-2), l @ u, atol=1e-10)
    ref = _lu_reference(a)
    np.testing.assert_array_equal(pivots, ref[1])
    np.testing.assert_allclose(packed, ref[0], atol=1e-9)
    b = rng.standard_normal((2, n, 3))
    for lower in (True, False):
        for transpose_a in (True, False):
            x = lax.triangular_solve(packed, b, lower=lower, transpose_a=transpose_a,
                                     unit_diagonal=lower)
            tri = l if lower else u
            np.testing.assert_allclose((_mat_t(tri) if transpose_a else tri) @ x, b, atol=1e-8)


@pytest.mark.parametrize("a", [
    np.zeros((3, 3)),                                   # all pivots zero
    np.ones((3, 3)),                                    # ties everywhere, rank 1
    np.array([[0.0, 2.0, 1.0], [0.0, 1.0, 3.0], [0.0, 5.0, 2.0]]),   # a zero column
    np.array([[1.0, 2.0], [-1.0, 3.0]]),               # |pivot| ties: the first one wins
    np.zeros((0, 0)),
    np.zeros((2, 0, 0)),
], ids=["zeros", "ones", "zero-column", "tie", "empty", "empty-stack"])
def test_lu_special_matrices(a):
    """Singular and tied cases pivot as LAPACK's getrf does, and never divide by zero."""
    for got, expected in zip(lax.lu(a), _lu_reference(a)):
        np.testing.assert_array_equal(got, expected)


def test_triangular_solve_batch_rule_folds_one_matrix(rng):
    """vmap over b alone solves all right-hand sides against the one matrix at once: no
    broadcast of the matrix."""
    a = rng.standard_normal((3, 3)) + 5 * np.eye(3)
    for left_side in (True, False):
        bs = rng.standard_normal((4, 3, 2) if left_side else (4, 2, 3))
        f = lambda b: lax.triangular_solve(a, b, left_side=left_side)
        jaxpr = make_jaxpr(vmap(f, in_axes=1))(np.moveaxis(bs, 0, 1))
        assert "broadcast_in_dim" not in h.primitives_in(jaxpr)
        np.testing.assert_allclose(vmap(f, in_axes=1)(np.moveaxis(bs, 0, 1)),
                                   np.stack([f(b) for b in bs]), rtol=1e-12)


def test_degenerate_derivatives_are_not_finite():
    """Documented: eigh at repeated eigenvalues (eigenvectors not unique) has no derivative."""
    jac = funcgrad.jacfwd(lambda a: lax.eigh(a)[1])(np.eye(3))
    assert not np.all(np.isfinite(jac))
    # ... but eigenvalues alone are fine there
    jac_w = funcgrad.jacfwd(lambda a: lax.eigh(a)[0])(np.eye(3))
    assert np.all(np.isfinite(jac_w))


def test_decomposition_errors():
    with pytest.raises(TypeError, match=r"cholesky: expected \(a stack of\) square matrices.*"
                                        r"f64\[3,4\].*test_linalg.py"):
        make_jaxpr(lax.cholesky)(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="eigh: expected a floating-point"):
        make_jaxpr(lax.eigh)(np.zeros((3, 3), np.int32))
    with pytest.raises(TypeError, match="qr: expected a .* at least 2 dimensions"):
        make_jaxpr(lax.qr)(np.zeros(3))
    with pytest.raises(TypeError, match=r"triangular_solve: b has 4 rows, a is 3x3"):
        make_jaxpr(lax.triangular_solve)(np.zeros((3, 3)), np.zeros((4, 2)))
    with pytest.raises(NotImplementedError, match="use the reduced decomposition"):
        funcgrad.jacfwd(lambda a: lax.qr(a, True)[0])(np.ones((3, 2)))
    with pytest.raises(NotImplementedError, match="use full_matrices=False"):
        funcgrad.jacfwd(lambda a: lax.svd(a, True)[0])(np.ones((3, 2)))
    with pytest.raises(np.linalg.LinAlgError, match="triangular_solve: the triangular matrix is singular"):
        lax.triangular_solve(np.zeros((2, 2)), np.ones((2, 1)))


# ---------------------------------------------------------------------------------------------
# funcgrad.numpy.linalg: eager is NumPy; the harness compares the traced path with it.

LA = fnp.linalg


def _check(data, fun, operands, prim, dtype, order=2, **kw):
    h.check_primitive(data, fun, operands, None, prim=prim, order=order, rtol=_rtol(dtype),
                      atol=_rtol(dtype), **kw)


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(), dtype=st.sampled_from([F32, F64]))
def test_det_slogdet_inv(data, shape, dtype):
    ops = [Operand(shape, dtype, row_reversed_dominant())]
    _check(data, LA.det, ops, "lu", dtype)
    _check(data, lambda a: list(LA.slogdet(a)), ops, "lu", dtype)
    _check(data, LA.inv, ops, "triangular_solve", dtype)


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(), dtype=st.sampled_from([F32, F64]),
       b_kind=st.sampled_from(["vector", "matrix", "stacked"]), k=st.integers(1, 3))
def test_solve(data, shape, dtype, b_kind, k):
    n = shape[-1]
    b_shape = {"vector": (n,), "matrix": shape[:-2] + (n, k), "stacked": (2,) + shape[:-2] + (n, k)}[b_kind]
    _check(data, LA.solve, [Operand(shape, dtype, row_reversed_dominant()), Operand(b_shape, dtype)],
           "triangular_solve", dtype)


def test_solve_broadcasts_one_matrix_against_a_stack(rng):
    a = rng.standard_normal((3, 3)) + 5 * np.eye(3)
    b = rng.standard_normal((4, 2, 3, 2))
    traced = make_jaxpr(LA.solve)(a, b)
    np.testing.assert_allclose(traced(a, b)[0], np.linalg.solve(a, b), rtol=1e-12)
    lu_eqn, = [e for e in traced.eqns if e.primitive.name == "lu"]
    assert lu_eqn.invars[0].aval.shape == (3, 3)        # one factorization, not eight


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(), dtype=st.sampled_from([F32, F64]),
       upper=st.booleans())
def test_numpy_cholesky(data, shape, dtype, upper):
    _check(data, lambda a: LA.cholesky(a, upper=upper), [Operand(shape, dtype, spd())], "cholesky", dtype)


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(square=False), dtype=st.sampled_from([F32, F64]),
       mode=st.sampled_from(["reduced", "complete", "r"]))
def test_numpy_qr(data, shape, dtype, mode):
    m, n = shape[-2:]
    fun = (lambda a: LA.qr(a, mode)) if mode == "r" else (lambda a: list(LA.qr(a, mode)))
    _check(data, fun, [Operand(shape, dtype, full_rank())], "qr", dtype,
           order=0 if mode == "complete" and m > n else 2)


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(square=False), dtype=st.sampled_from([F32, F64]))
def test_numpy_svd_svdvals_pinv(data, shape, dtype):
    ops = [Operand(shape, dtype, distinct_singular_values())]
    _check(data, lambda a: list(LA.svd(a, full_matrices=False)), ops, "svd", dtype)
    _check(data, LA.svdvals, ops, "svd", dtype)
    _check(data, lambda a: LA.svd(a, compute_uv=False), ops, "svd", dtype)
    _check(data, LA.pinv, ops, "pinv", dtype)
    _check(data, LA.matrix_rank, ops, "svd", dtype, order=0)


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(), dtype=st.sampled_from([F32, F64]),
       uplo=st.sampled_from("LU"))
def test_numpy_eigh(data, shape, dtype, uplo):
    ops = [Operand(shape, dtype, distinct_eigenvalues())]
    _check(data, lambda a: list(LA.eigh(a, uplo)), ops, "eigh", dtype)
    _check(data, lambda a: LA.eigvalsh(a, uplo), ops, "eigh", dtype)


@EXAMPLES
@given(data=st.data(), shape=matrix_shapes(max_side=3), power=st.integers(-3, 4))
def test_matrix_power(data, shape, power):
    _check(data, lambda a: LA.matrix_power(a, power), [Operand(shape, F64, dominant())],
           None, F64)


MATRIX_ORDS = [None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf]
VECTOR_ORDS = [None, 1, 2, np.inf, -np.inf, 3, 0.5]


@pytest.mark.parametrize("ord", MATRIX_ORDS, ids=str)
@settings(max_examples=6)
@given(data=st.data(), shape=matrix_shapes(square=False, max_side=3), keepdims=st.booleans(),
       axes=st.sampled_from([(-2, -1), (-1, -2)]))
def test_matrix_norms(ord, data, shape, keepdims, axes):
    domain = distinct_singular_values() if ord in (2, -2, "nuc") else distinct_sums()
    nd = len(shape)
    axes = tuple(a % nd for a in axes)
    _check(data, lambda x: LA.norm(x, ord, axes, keepdims), [Operand(shape, F64, domain)], None, F64)
    _check(data, lambda x: LA.matrix_norm(x, ord="fro" if ord is None else ord, keepdims=keepdims),
           [Operand(shape, F64, domain)], None, F64)


@pytest.mark.parametrize("ord", VECTOR_ORDS, ids=str)
@settings(max_examples=6)
@given(data=st.data(), shape=h.shapes(min_dims=1, max_dims=3, min_side=1, max_side=3),
       keepdims=st.booleans(), axis_seed=st.integers(0, 10))
def test_vector_norms(ord, data, shape, keepdims, axis_seed):
    axis = axis_seed % len(shape)
    domain = distinct_magnitudes()       # no ties for the inf-norms, no kinks of abs at 0
    _check(data, lambda x: LA.norm(x, ord, axis, keepdims), [Operand(shape, F64, domain)], None, F64)
    _check(data, lambda x: LA.vector_norm(x, ord=2 if ord is None else ord, axis=None,
                                          keepdims=keepdims), [Operand(shape, F64, domain)], None, F64)


@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 3, 2)])
def test_norm_default_and_integer_input(shape, rng):
    x = rng.integers(-3, 4, shape).astype(np.int32)
    traced = make_jaxpr(LA.norm)(x)
    assert traced.out_avals[0].dtype == np.float64
    np.testing.assert_allclose(traced(x)[0], np.linalg.norm(x), rtol=1e-12)


def test_norm_gradient_at_zero_is_zero():
    """A subgradient, not JAX's NaN: sqrt's infinite slope at 0 never reaches the result."""
    cases = [(LA.norm, (2, 2)), (lambda x: LA.norm(x, "fro"), (2, 2)), (LA.vector_norm, (3,)),
             (lambda x: LA.norm(x, 3), (3,)), (lambda x: LA.matrix_norm(x), (2, 2))]
    for f, shape in cases:
        g = funcgrad.grad(f)(np.zeros(shape))
        assert np.all(g == 0), g
    g = funcgrad.grad(lambda x: LA.norm(x, axis=1).sum())(np.array([[0.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_allclose(g, [[0.0, 0.0], [0.6, 0.8]])


@settings(max_examples=8)
@given(data=st.data(), dims=st.lists(st.integers(1, 4), min_size=4, max_size=6),
       ends=st.tuples(st.booleans(), st.booleans()))
def test_multi_dot(data, dims, ends):
    shapes = [(dims[i], dims[i + 1]) for i in range(len(dims) - 1)]
    if ends[0]:
        shapes[0] = shapes[0][1:]
    if ends[1]:
        shapes[-1] = shapes[-1][:1]
    ops = [Operand(s, F64) for s in shapes]
    _check(data, lambda *xs: LA.multi_dot(xs), ops, "dot_general", F64, batching=False)


def test_multi_dot_picks_the_cheap_order(rng):
    a, b, c = rng.standard_normal((10, 100)), rng.standard_normal((100, 5)), rng.standard_normal((5, 50))
    jaxpr = make_jaxpr(lambda *xs: LA.multi_dot(xs))(a, b, c)
    first = jaxpr.eqns[0]
    assert first.primitive.name == "dot_general" and first.outvars[0].aval.shape == (10, 5)


@pytest.mark.parametrize("m,n,k", [(6, 3, 2), (6, 3, None), (3, 5, 2)])
def test_lstsq(m, n, k, rng):
    a = rng.standard_normal((m, n))
    b = rng.standard_normal((m,) if k is None else (m, k))
    traced = make_jaxpr(LA.lstsq)(a, b)
    core.check_jaxpr(traced)
    for got, expected in zip(traced(a, b), np.linalg.lstsq(a, b)):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    check_grads(lambda a, b: LA.lstsq(a, b)[0], (a, b), order=2)


@pytest.mark.parametrize("p", [None, 2, -2, 1, "fro", np.inf])
def test_cond(p, rng):
    a = rng.standard_normal((2, 3, 3)) + 2 * np.eye(3)
    np.testing.assert_allclose(make_jaxpr(lambda x: LA.cond(x, p))(a)(a)[0], np.linalg.cond(a, p),
                               rtol=1e-9)


def test_dtypes_follow_numpy_linalg(rng):
    ints = rng.integers(-3, 4, (3, 3)).astype(np.int32) + 10 * np.eye(3, dtype=np.int32)
    assert make_jaxpr(LA.inv)(ints).out_avals[0].dtype == np.float64
    f32 = ints.astype(np.float32)
    assert make_jaxpr(LA.det)(f32).out_avals[0].dtype == np.float32
    assert make_jaxpr(LA.solve)(f32, np.ones(3)).out_avals[0].dtype == np.float64
    np.testing.assert_allclose(make_jaxpr(LA.inv)(ints)(ints)[0], np.linalg.inv(ints), rtol=1e-12)


def test_slogdet_of_singular_and_negative_determinants():
    for a in (np.zeros((2, 2)), np.array([[0.0, 1.0], [1.0, 0.0]]), -np.eye(3), np.diag([2.0, -3.0])):
        sign, logdet = make_jaxpr(LA.slogdet)(a)(a)
        np.testing.assert_allclose(sign, np.linalg.slogdet(a)[0])
        np.testing.assert_allclose(logdet, np.linalg.slogdet(a)[1])
        np.testing.assert_allclose(make_jaxpr(LA.det)(a)(a)[0], np.linalg.det(a))


def test_numpy_linalg_errors():
    with pytest.raises(np.linalg.LinAlgError, match=r"det: the last 2 dimensions of the array must be "
                                                    r"square.*f64\[3,4\].*test_linalg.py"):
        make_jaxpr(LA.det)(np.zeros((3, 4)))
    with pytest.raises(np.linalg.LinAlgError, match="inv: 1-dimensional array given"):
        make_jaxpr(LA.inv)(np.zeros(3))
    with pytest.raises(ValueError, match=r"solve: b must have shape \(3,\) or \(\.\.\., 3, K\).*"
                                         r"f64\[3,3\], f64\[4\]"):
        make_jaxpr(LA.solve)(np.eye(3), np.zeros(4))
    with pytest.raises(ValueError, match="solve: b must have shape"):
        make_jaxpr(LA.solve)(np.eye(3), np.zeros((4, 2)))
    with pytest.raises(TypeError, match="float16 is unsupported"):
        make_jaxpr(LA.inv)(np.eye(2, dtype=np.float16))
    with pytest.raises(ValueError, match="invalid norm order 'fro' for vectors"):
        make_jaxpr(lambda x: LA.norm(x, "fro"))(np.ones(3))
    with pytest.raises(ValueError, match="UPLO"):
        make_jaxpr(lambda x: LA.eigh(x, "X"))(np.eye(2))
    with pytest.raises(TypeError, match="exponent must be an integer"):
        make_jaxpr(lambda x: LA.matrix_power(x, 1.5))(np.eye(2))


# ---------------------------------------------------------------------------------------------
# funcgrad.numpy products (all lower to dot_general)


@st.composite
def matmul_shapes(draw):
    """numpy.matmul operands: 1-D or stacks of matrices whose leading axes broadcast."""
    m, k, n = (draw(st.integers(1, 3)) for _ in range(3))
    lead_a, lead_b = draw(h.broadcastable_shapes(2, max_dims=2, min_side=1, max_side=2))
    a = (k,) if draw(st.integers(0, 3)) == 0 else tuple(lead_a) + (m, k)
    b = (k,) if draw(st.integers(0, 3)) == 0 else tuple(lead_b) + (k, n)
    return a, b


@EXAMPLES
@given(data=st.data(), shapes=matmul_shapes(), dtype=st.sampled_from([F32, F64, I32]))
def test_matmul(data, shapes, dtype):
    _check(data, fnp.matmul, [Operand(s, dtype) for s in shapes], "dot_general", dtype)


@pytest.mark.parametrize("name,shapes,kw", [
    ("dot", [(3,), (3,)], {}), ("dot", [(2, 3), (3,)], {}), ("dot", [(2, 3), (4, 3, 2)], {}),
    ("dot", [(), (2, 3)], {}), ("inner", [(2, 3), (4, 3)], {}), ("inner", [(3,), (3,)], {}),
    ("outer", [(2, 3), (4,)], {}), ("vdot", [(2, 3), (3, 2)], {}),
    ("tensordot", [(2, 3, 4), (3, 4, 5)], {}), ("tensordot", [(2, 3, 4), (4, 2)], {"axes": ([0, 2], [1, 0])}),
    ("tensordot", [(2, 3), (4, 5)], {"axes": 0}), ("tensordot", [(2, 3), (3, 5)], {"axes": (-1, 0)}),
    ("kron", [(2, 3), (4,)], {}), ("kron", [(2, 1, 2), (3, 2)], {}),
])
def test_products(name, shapes, kw, rng):
    xs = [rng.standard_normal(s) for s in shapes]
    f = lambda *a: getattr(fnp, name)(*a, **kw)
    closed = make_jaxpr(f)(*xs)
    core.check_jaxpr(closed)
    np.testing.assert_allclose(closed(*xs)[0], getattr(np, name)(*xs, **kw), rtol=1e-12)
    check_grads(f, xs, order=2)
