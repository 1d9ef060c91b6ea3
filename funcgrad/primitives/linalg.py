"""Linear algebra primitives.

``dot_general`` is the one contraction primitive (matmul, dot, tensordot, einsum and batched
products all lower to it). Its output axes are: batch axes, then the lhs free axes, then the
rhs free axes. The impl goes to BLAS through tensordot/matmul.

The decompositions work on stacks of matrices (all leading axes are batch axes), so their
batching rules move the vmapped axis to the front and bind once:

  cholesky(a) -> L                 a = L L^T, read from the lower triangle of a
  eigh(a) -> (w, v)                a = v diag(w) v^T, w ascending, read from one triangle
  lu(a) -> (lu, pivots, perm)      a[perm] = L U, L unit lower and U upper packed in lu
  qr(a) -> (q, r)                  a = q r
  svd(a) -> (u, s, vh) or (s,)     a = u diag(s) vh, s descending
  pinv(a) -> a^+                   Moore-Penrose pseudo-inverse
  triangular_solve(a, b)           op(a) x = b or x op(a) = b, a triangular; linear in b

Their JVP rules are the standard matrix-calculus formulas written with these primitives and
``dot_general``, so they are linear in the tangents, transpose, batch, and differentiate again.
Where a result is not a differentiable function of the input the derivative is not finite:
eigh with repeated eigenvalues, svd with repeated (or, for non-square u/v, zero) singular
values, lu/qr/triangular_solve with singular factors. JVPs are for real matrices.

NumPy has no LU factorization or triangular solve, so those two impls are written here with
array-module operations (blocked, with BLAS-3 updates), and run on numpy and cupy alike.
"""
from __future__ import annotations

import numpy as np

from .. import core
from ..core import ShapedArray
from ..interpreters import ad
from ..interpreters.ad import Zero
from . import elementwise as ew, reduction, structural as st


# ---------------------------------------------------------------------------------------------
# dot_general(lhs, rhs, ((lhs_contract, rhs_contract), (lhs_batch, rhs_batch)))

def _free(ndim, contract, batch):
    return tuple(i for i in range(ndim) if i not in contract and i not in batch)


def _prod(sizes) -> int:
    return int(np.prod(sizes, dtype=np.int64))


def outer_product_operands(lhs_shape, rhs_shape, dimension_numbers):
    """For a dot_general whose contraction has one element (or none): ``(perm, shape)`` per
    operand such that ``transpose(x, perm).reshape(shape)`` (views) multiply, broadcasting,
    to the result. Axes: batch, lhs free, rhs free (the contracted axes are dropped)."""
    (lc, rc), (lb, rb) = dimension_numbers
    lf, rf = _free(len(lhs_shape), lc, lb), _free(len(rhs_shape), rc, rb)
    bshape = tuple(lhs_shape[i] for i in lb)
    lfs, rfs = tuple(lhs_shape[i] for i in lf), tuple(rhs_shape[i] for i in rf)
    return ((lb + lf + lc, bshape + lfs + (1,) * len(rfs)),
            (rb + rf + rc, bshape + (1,) * len(lfs) + rfs))


def _dot_general_impl(xp, lhs, rhs, *, dimension_numbers, preferred_element_type=None):
    if preferred_element_type is not None:       # accumulate in the preferred type
        lhs = xp.asarray(lhs, preferred_element_type)
        rhs = xp.asarray(rhs, preferred_element_type)
    (lc, rc), (lb, rb) = dimension_numbers
    lf, rf = _free(lhs.ndim, lc, lb), _free(rhs.ndim, rc, rb)
    bshape = tuple(lhs.shape[i] for i in lb)
    lfs, rfs = tuple(lhs.shape[i] for i in lf), tuple(rhs.shape[i] for i in rf)
    k, b = _prod([lhs.shape[i] for i in lc]), _prod(bshape)
    if k == 1:
        # An outer product (as in per-example weight gradients): a broadcasting multiply,
        # several times faster than a matmul with a contraction of length 1.
        l1, r1 = outer_product_operands(lhs.shape, rhs.shape, dimension_numbers)
        return xp.multiply(xp.transpose(lhs, l1[0]).reshape(l1[1]),
                           xp.transpose(rhs, r1[0]).reshape(r1[1]))
    if not lb:
        return xp.tensordot(lhs, rhs, axes=(lc, rc))
    l2 = xp.transpose(lhs, lb + lf + lc).reshape(b, _prod(lfs), k)
    r2 = xp.transpose(rhs, rb + rc + rf).reshape(b, k, _prod(rfs))
    return xp.matmul(l2, r2).reshape(bshape + lfs + rfs)


def _dot_general_abstract(lhs, rhs, *, dimension_numbers, preferred_element_type=None):
    (lc, rc), (lb, rb) = dimension_numbers
    name = "dot_general"
    if lhs.dtype != rhs.dtype:
        raise core.type_error(name, "operands must have the same dtype", [lhs, rhs])
    if len(lc) != len(rc) or len(lb) != len(rb):
        raise core.type_error(name, f"dimension_numbers {dimension_numbers} pair unequal counts",
                              [lhs, rhs])
    for axes, nd in ((lc + lb, lhs.ndim), (rc + rb, rhs.ndim)):
        if len(set(axes)) != len(axes) or any(not 0 <= a < nd for a in axes):
            raise core.type_error(name, f"invalid axes in dimension_numbers {dimension_numbers}",
                                  [lhs, rhs])
    for l, r in zip(lc + lb, rc + rb):
        if lhs.shape[l] != rhs.shape[r]:
            kind = "contracting" if l in lc else "batch"
            raise core.type_error(name, f"{kind} axis {l} of lhs (size {lhs.shape[l]}) does not "
                                  f"match axis {r} of rhs (size {rhs.shape[r]})", [lhs, rhs])
    shape = (tuple(lhs.shape[i] for i in lb)
             + tuple(lhs.shape[i] for i in _free(lhs.ndim, lc, lb))
             + tuple(rhs.shape[i] for i in _free(rhs.ndim, rc, rb)))
    dtype = lhs.dtype if preferred_element_type is None else preferred_element_type
    return ShapedArray(shape, dtype, lhs.weak_type and rhs.weak_type)


def _transpose_side(ct, other, other_aval, mine_aval, my_c, my_b, other_c, other_b,
                    ct_free_start, ct_free_n):
    """Cotangent of one operand: contract ct with the other operand over the other's free
    axes, then permute the result into this operand's axis order. The operands go in the
    order that needs no permutation when one does (``x^T ct`` rather than ``(ct^T x)^T``)."""
    nb = len(my_b)
    other_free = _free(other_aval.ndim, other_c, other_b)
    ct_axes = tuple(range(ct_free_start, ct_free_start + ct_free_n))
    ct_dtype = core.get_aval(ct).dtype
    if other_aval.dtype != ct_dtype:            # ct is in the preferred_element_type
        other = ew.convert_element_type(other, ct_dtype)
    # The product's axes: batch, then my free axes and my contracting axes (these in the
    # order of the other operand's matching axes), free ones first when ct goes first.
    my_free = _free(mine_aval.ndim, my_c, my_b)
    my_c_sorted = tuple(a for _, a in sorted(zip(other_c, my_c)))
    ct_first = my_b + my_free + my_c_sorted
    other_first = my_b + my_c_sorted + my_free
    if other_first == tuple(range(mine_aval.ndim)) and ct_first != other_first:
        res = dot_general(other, ct, ((other_free, ct_axes), (other_b, tuple(range(nb)))))
        order = other_first
    else:
        res = dot_general(ct, other, ((ct_axes, other_free), (tuple(range(nb)), other_b)))
        order = ct_first
    res = st.transpose(res, tuple(order.index(a) for a in range(mine_aval.ndim)))
    if ct_dtype != mine_aval.dtype:
        res = ew.convert_element_type(res, mine_aval.dtype)
    return res


def _dot_general_transpose(ct, lhs, rhs, *, dimension_numbers, preferred_element_type=None):
    if type(ct) is Zero:
        return [None, None]
    (lc, rc), (lb, rb) = dimension_numbers
    l_aval = lhs.aval if ad.is_undefined(lhs) else core.get_aval(lhs)
    r_aval = rhs.aval if ad.is_undefined(rhs) else core.get_aval(rhs)
    nb = len(lb)
    n_lf = len(_free(l_aval.ndim, lc, lb))
    n_rf = len(_free(r_aval.ndim, rc, rb))
    ct_l = ct_r = None
    if ad.is_undefined(lhs):
        ct_l = _transpose_side(ct, rhs, r_aval, l_aval, lc, lb, rc, rb, nb + n_lf, n_rf)
    if ad.is_undefined(rhs):
        ct_r = _transpose_side(ct, lhs, l_aval, r_aval, rc, rb, lc, lb, nb, n_lf)
    return [ct_l, ct_r]


def _dot_general_batch(args, dims, *, dimension_numbers, preferred_element_type=None):
    (lhs, rhs), (dl, dr) = args, dims
    (lc, rc), (lb, rb) = dimension_numbers
    shift = lambda axes, d: tuple(a + (a >= d) for a in axes)
    if dl is not None and dr is not None:
        # Both batched: the vmapped axes pair up as a new leading batch axis of the product.
        dnums = ((shift(lc, dl), shift(rc, dr)), ((dl,) + shift(lb, dl), (dr,) + shift(rb, dr)))
        return dot_general(lhs, rhs, dnums, preferred_element_type), 0
    nb = len(lb)
    if dl is not None:
        # Only lhs batched: its vmapped axis is one more lhs free axis.
        lc2, lb2 = shift(lc, dl), shift(lb, dl)
        free = _free(core.get_aval(lhs).ndim, lc2, lb2)
        out = dot_general(lhs, rhs, ((lc2, rc), (lb2, rb)), preferred_element_type)
        return out, nb + free.index(dl)
    rc2, rb2 = shift(rc, dr), shift(rb, dr)
    n_lf = len(_free(core.get_aval(lhs).ndim, lc, lb))
    free = _free(core.get_aval(rhs).ndim, rc2, rb2)
    out = dot_general(lhs, rhs, ((lc, rc2), (lb, rb2)), preferred_element_type)
    return out, nb + n_lf + free.index(dr)


def _dot_general_jvp(primals, tangents, *, dimension_numbers, preferred_element_type=None):
    lhs, rhs = primals
    tl, tr = tangents
    ans = dot_general(lhs, rhs, dimension_numbers, preferred_element_type)
    out = Zero.like(ans)
    if type(tl) is not Zero:
        out = dot_general(tl, rhs, dimension_numbers, preferred_element_type)
    if type(tr) is not Zero:
        out = ad.add_tangents(out, dot_general(lhs, tr, dimension_numbers, preferred_element_type))
    return ans, out


dot_general_p = core.Primitive("dot_general")
dot_general_p.impl = _dot_general_impl
dot_general_p.abstract_eval = _dot_general_abstract
dot_general_p.jvp = _dot_general_jvp
dot_general_p.transpose = _dot_general_transpose
dot_general_p.batch = _dot_general_batch


def dot_general(lhs, rhs, dimension_numbers, preferred_element_type=None):
    (lc, rc), (lb, rb) = dimension_numbers
    dnums = ((tuple(int(a) for a in lc), tuple(int(a) for a in rc)),
             (tuple(int(a) for a in lb), tuple(int(a) for a in rb)))
    pet = None if preferred_element_type is None else np.dtype(preferred_element_type)
    return dot_general_p.bind(lhs, rhs, dimension_numbers=dnums, preferred_element_type=pet)


def dot(lhs, rhs, preferred_element_type=None):
    """lax.dot: vector·vector, matrix·vector, matrix·matrix."""
    nl = core.get_aval(lhs).ndim
    return dot_general(lhs, rhs, (((nl - 1,), (0,)), ((), ())), preferred_element_type)


# ---------------------------------------------------------------------------------------------
# Matrix helpers for the rules below: every value is a stack of matrices (..., m, n).

def _ndim(x) -> int:
    return core.get_aval(x).ndim


def _mat_t(x):
    """Transpose of the last two axes."""
    nd = _ndim(x)
    return st.transpose(x, tuple(range(nd - 2)) + (nd - 1, nd - 2))


def _mm(a, b):
    """Stacked matrix product (..., m, k) @ (..., k, n) with equal leading axes."""
    nd = _ndim(a)
    batch = tuple(range(nd - 2))
    return dot_general(a, b, (((nd - 1,), (nd - 2,)), (batch, batch)))


def _masked(x, mask: np.ndarray):
    """``x`` where ``mask`` (a constant (m, n) boolean) is set, 0 elsewhere."""
    return ew.select(mask, x, 0)


def _tril(x, k: int = 0):
    m, n = core.get_aval(x).shape[-2:]
    return _masked(x, np.tri(m, n, k, dtype=bool))


def _triu(x, k: int = 0):
    m, n = core.get_aval(x).shape[-2:]
    return _masked(x, ~np.tri(m, n, k - 1, dtype=bool))


def diag_part(x):
    """The diagonals of a stack of square matrices: (..., n, n) -> (..., n)."""
    n = core.get_aval(x).shape[-1]
    return reduction.reduce_sum(_masked(x, np.eye(n, dtype=bool)), (_ndim(x) - 1,))


def _row(v):
    """A stack of vectors (..., n) as rows (..., 1, n): entry j of each row is v_j."""
    return st.expand_dims(v, (_ndim(v) - 1,))


def _col(v):
    """A stack of vectors (..., n) as columns (..., n, 1): entry i of each column is v_i."""
    return st.expand_dims(v, (_ndim(v),))


def _inverse_gaps(gaps):
    """1 / gaps off the diagonal, 0 on it (the Sylvester coefficients of eigh/svd JVPs)."""
    eye = np.eye(core.get_aval(gaps).shape[-1], dtype=bool)
    return ew.select(eye, 0, ew.div(1, ew.select(eye, 1, gaps)))


def _symmetric_from(x, lower: bool):
    """The symmetric matrix a routine reading only one triangle of ``x`` sees."""
    half = _tril(x, -1) if lower else _triu(x, 1)
    diagonal = _masked(x, np.eye(core.get_aval(x).shape[-1], dtype=bool))
    return ew.add(ew.add(half, _mat_t(half)), diagonal)


def _permutation_matrix(perm, dtype):
    """P with P[i, perm[i]] = 1, so P @ a == a[perm]."""
    shape = core.get_aval(perm).shape
    full = shape + shape[-1:]
    rows = st.broadcast_in_dim(perm, full, tuple(range(len(shape))))
    cols = st.broadcasted_iota(core.get_aval(perm).dtype, full, len(shape))
    return ew.convert_element_type(ew.eq(rows, cols), dtype)


def _require_real(name: str, x) -> None:
    if core.get_aval(x).dtype.kind == "c":
        raise NotImplementedError(f"{name}: derivatives of complex matrices are not implemented")


def _check_matrix(name: str, a: ShapedArray, square: bool = True) -> None:
    if a.dtype.kind not in "fc":
        raise core.type_error(name, "expected a floating-point or complex operand", [a])
    if a.ndim < 2:
        raise core.type_error(name, "expected a (stack of) matrices: at least 2 dimensions", [a])
    if square and a.shape[-1] != a.shape[-2]:
        raise core.type_error(name, "expected (a stack of) square matrices", [a])


def _real_dtype(dtype: np.dtype) -> np.dtype:
    return np.finfo(dtype).dtype


def _stack_batch(prim: core.Primitive):
    """Batching rule of a one-operand decomposition: the vmapped axis joins the stack."""
    from ..interpreters.batching import moveaxis

    def batch(args, dims, **params):
        outs = prim.bind(moveaxis(args[0], dims[0], 0), **params)
        return outs, [0] * len(outs) if prim.multiple_results else 0

    return batch


def _decomposition(name: str, impl, abstract_eval, jvp, multiple_results: bool = True):
    p = core.Primitive(name, multiple_results=multiple_results)
    p.impl, p.abstract_eval, p.jvp, p.batch = impl, abstract_eval, jvp, _stack_batch(p)
    return p


# ---------------------------------------------------------------------------------------------
# Kernels NumPy lacks: triangular solve and LU with partial pivoting, for stacks (B, n, n).

_BLOCK = 64


def _stack(x):
    """(..., m, n) -> (B, m, n)."""
    return x.reshape((_prod(x.shape[:-2]),) + x.shape[-2:])


def _lower_solve(xp, l, b, unit_diagonal: bool):
    """Solve ``l x = b`` for lower-triangular ``l`` (B, n, n), ``b`` (B, n, k): forward
    substitution over blocks of rows, BLAS-3 updates between blocks."""
    n = l.shape[-1]
    x = xp.empty(b.shape, b.dtype)
    for i in range(0, n, _BLOCK):
        j = min(i + _BLOCK, n)
        rhs = b[:, i:j] if i == 0 else b[:, i:j] - l[:, i:j, :i] @ x[:, :i]
        tri = xp.tri(j - i, dtype=bool)
        block = xp.where(tri, l[:, i:j, i:j], 0)
        if unit_diagonal:
            block = xp.where(xp.eye(j - i, dtype=bool), 1, block)
        try:
            x[:, i:j] = xp.linalg.solve(block, rhs)
        except np.linalg.LinAlgError:
            raise np.linalg.LinAlgError("triangular_solve: the triangular matrix is singular to "
                                        "working precision") from None
    return x


def _triangular_solve_impl(xp, a, b, *, left_side, lower, transpose_a, unit_diagonal):
    # Reduce every variant to a lower-triangular left solve l x = rhs.
    swap = lambda m: xp.swapaxes(m, -1, -2)
    m = swap(a) if transpose_a else a
    lower_m = lower != transpose_a
    rhs = b if left_side else swap(b)            # x m = b  <=>  m^T x^T = b^T
    if not left_side:
        m, lower_m = swap(m), not lower_m
    if not lower_m:                              # reversing rows and columns makes it lower
        m, rhs = m[..., ::-1, ::-1], rhs[..., ::-1, :]
    x = _lower_solve(xp, _stack(m), _stack(rhs), unit_diagonal).reshape(rhs.shape)
    if not lower_m:
        x = x[..., ::-1, :]
    return x if left_side else swap(x)


def _lu_impl(xp, a):
    """Right-looking blocked LU with partial pivoting (row interchanges as LAPACK's getrf)."""
    n = a.shape[-1]
    lu = _stack(a).copy()
    count = lu.shape[0]
    rows = xp.arange(count)
    perm = xp.tile(xp.arange(n, dtype=np.int32), (count, 1))
    pivots = xp.empty((count, n), np.int32)
    for k0 in range(0, n, _BLOCK):
        k1 = min(k0 + _BLOCK, n)
        for k in range(k0, k1):                  # factor the panel lu[:, k0:, k0:k1]
            p = k + xp.argmax(xp.abs(lu[:, k:, k]), axis=1)
            pivots[:, k] = p
            lu[rows, k], lu[rows, p] = lu[rows, p], lu[rows, k]
            perm[rows, k], perm[rows, p] = perm[rows, p], perm[rows, k]
            pivot = lu[:, k, k]
            lu[:, k + 1:, k] /= xp.where(pivot == 0, 1, pivot)[:, None]   # a zero column stays 0
            lu[:, k + 1:, k + 1:k1] -= lu[:, k + 1:, k:k + 1] * lu[:, k:k + 1, k + 1:k1]
        if k1 < n:                               # U12 = L11^-1 A12, A22 -= L21 U12
            lu[:, k0:k1, k1:] = _lower_solve(xp, lu[:, k0:k1, k0:k1], lu[:, k0:k1, k1:], True)
            lu[:, k1:, k1:] -= lu[:, k1:, k0:k1] @ lu[:, k0:k1, k1:]
    batch = a.shape[:-2]
    return [lu.reshape(a.shape), pivots.reshape(batch + (n,)), perm.reshape(batch + (n,))]


# ---------------------------------------------------------------------------------------------
# triangular_solve(a, b): op(a) x = b (left_side) or x op(a) = b, op(a) = a or a^T.
# Reads only the triangle named by ``lower`` (and not the diagonal if ``unit_diagonal``).

def _triangular_solve_abstract(a, b, *, left_side, lower, transpose_a, unit_diagonal):
    name = "triangular_solve"
    _check_matrix(name, a)
    if b.dtype != a.dtype:
        raise core.type_error(name, "operands must have the same dtype", [a, b])
    if b.ndim != a.ndim or b.shape[:-2] != a.shape[:-2]:
        raise core.type_error(name, "b must be a stack of matrices with a's leading axes", [a, b])
    axis = -2 if left_side else -1
    if b.shape[axis] != a.shape[-1]:
        side = "rows" if left_side else "columns"
        n = a.shape[-1]
        raise core.type_error(name, f"b has {b.shape[axis]} {side}, a is {n}x{n}", [a, b])
    return ShapedArray(b.shape, b.dtype, a.weak_type and b.weak_type)


def _triangle_read(x, lower: bool, unit_diagonal: bool):
    """The part of ``x`` triangular_solve reads."""
    k = -1 if unit_diagonal else 0
    return _tril(x, k) if lower else _triu(x, -k)


def _triangular_solve_jvp(primals, tangents, **params):
    (a, b), (da, db) = primals, tangents
    x = triangular_solve(a, b, **params)
    out = Zero.like(x) if type(db) is Zero else triangular_solve(a, db, **params)
    if type(da) is not Zero:
        _require_real("triangular_solve", a)
        op_da = _triangle_read(da, params["lower"], params["unit_diagonal"])
        if params["transpose_a"]:
            op_da = _mat_t(op_da)
        # x = op(a)^-1 b: dx = -op(a)^-1 op(da) x (left), -x op(da) op(a)^-1 (right)
        prod = _mm(op_da, x) if params["left_side"] else _mm(x, op_da)
        out = ad.add_tangents(out, ew.neg(triangular_solve(a, prod, **params)))
    return x, out


def _triangular_solve_transpose(ct, a, b, *, left_side, lower, transpose_a, unit_diagonal):
    if ad.is_undefined(a):
        raise NotImplementedError("triangular_solve is not linear in the matrix a")
    if type(ct) is Zero:
        return [None, None]
    return [None, triangular_solve(a, ct, left_side, lower, not transpose_a, unit_diagonal)]


def _triangular_solve_batch(args, dims, **params):
    from ..interpreters.batching import batch_size, moveaxis, move_to_front_or_broadcast
    (a, b), (da, db) = args, dims
    if da is None:
        # One matrix, many right-hand sides: fold the vmapped axis into b's columns (left
        # side) or rows (right side) and solve once.
        nd = _ndim(b)
        to = nd - 1 if params["left_side"] else nd - 3
        b = moveaxis(b, db, to)
        shape = core.get_aval(b).shape
        merged = (shape[:-2] + (shape[-2] * shape[-1],) if params["left_side"]
                  else shape[:-3] + (shape[-3] * shape[-2], shape[-1]))
        x = triangular_solve(a, st.reshape(b, merged), **params)
        return st.reshape(x, shape), to
    size = batch_size(args, dims)
    b = move_to_front_or_broadcast(b, db, size)
    return triangular_solve(moveaxis(a, da, 0), b, **params), 0


triangular_solve_p = core.Primitive("triangular_solve")
triangular_solve_p.impl = _triangular_solve_impl
triangular_solve_p.abstract_eval = _triangular_solve_abstract
triangular_solve_p.jvp = _triangular_solve_jvp
triangular_solve_p.transpose = _triangular_solve_transpose
triangular_solve_p.batch = _triangular_solve_batch


def triangular_solve(a, b, left_side: bool = True, lower: bool = True, transpose_a: bool = False,
                     unit_diagonal: bool = False):
    """Solve ``op(a) @ x = b`` (``left_side``) or ``x @ op(a) = b`` for triangular ``a``,
    with ``op(a) = a.T`` if ``transpose_a``. Stacks of matrices; b is (..., m, n)."""
    return triangular_solve_p.bind(a, b, left_side=bool(left_side), lower=bool(lower),
                                   transpose_a=bool(transpose_a), unit_diagonal=bool(unit_diagonal))


# ---------------------------------------------------------------------------------------------
# cholesky(a) -> L: lower triangular with a = L L^T, reading a's lower triangle (as LAPACK).

def _cholesky_abstract(a):
    _check_matrix("cholesky", a)
    return ShapedArray(a.shape, a.dtype, a.weak_type)


def _cholesky_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    l = cholesky(a)
    if type(da) is Zero:
        return l, Zero.like(l)
    _require_real("cholesky", a)
    # dL = L phi(L^-1 dA L^-T), phi: the lower triangle with the diagonal halved
    y = triangular_solve(l, _symmetric_from(da, lower=True), left_side=True, lower=True)
    z = triangular_solve(l, y, left_side=False, lower=True, transpose_a=True)
    n = core.get_aval(a).shape[-1]
    phi = ew.sub(_tril(z), ew.mul(_masked(z, np.eye(n, dtype=bool)), 0.5))
    return l, _mm(l, phi)


cholesky_p = _decomposition("cholesky", lambda xp, a: xp.linalg.cholesky(a), _cholesky_abstract,
                            _cholesky_jvp, multiple_results=False)


def cholesky(a):
    return cholesky_p.bind(a)


# ---------------------------------------------------------------------------------------------
# eigh(a) -> (w, v): symmetric/Hermitian eigendecomposition, eigenvalues ascending, reading
# the lower (or upper) triangle of a.

def _eigh_abstract(a, *, lower):
    _check_matrix("eigh", a)
    return [ShapedArray(a.shape[:-1], _real_dtype(a.dtype)), ShapedArray(a.shape, a.dtype)]


def _eigh_jvp(primals, tangents, *, lower):
    (a,), (da,) = primals, tangents
    w, v = eigh(a, lower)
    if type(da) is Zero:
        return [w, v], [Zero.like(w), Zero.like(v)]
    _require_real("eigh", a)
    # dw = diag(V^T dA V); dV = V (F * V^T dA V) with F_ij = 1 / (w_j - w_i)
    dp = _mm(_mat_t(v), _mm(_symmetric_from(da, lower), v))
    dv = _mm(v, ew.mul(_inverse_gaps(ew.sub(_row(w), _col(w))), dp))
    return [w, v], [diag_part(dp), dv]


eigh_p = _decomposition(
    "eigh", lambda xp, a, *, lower: list(xp.linalg.eigh(a, "L" if lower else "U")),
    _eigh_abstract, _eigh_jvp)


def eigh(a, lower: bool = True):
    return eigh_p.bind(a, lower=bool(lower))


# ---------------------------------------------------------------------------------------------
# lu(a) -> (lu, pivots, permutation): a[permutation] = L U for square a, L unit lower and U
# upper packed into lu; row k was interchanged with row pivots[k] at step k (0-based).

def _lu_abstract(a):
    _check_matrix("lu", a)
    index = ShapedArray(a.shape[:-1], np.dtype(np.int32))
    return [ShapedArray(a.shape, a.dtype), index, index]


def _lu_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    outs = lu(a)
    packed, pivots, perm = outs
    zeros = [Zero.like(pivots), Zero.like(perm)]
    if type(da) is Zero:
        return outs, [Zero.like(packed)] + zeros
    _require_real("lu", a)
    # With X = L^-1 P dA U^-1: dL = L tril(X, -1), dU = triu(X) U
    pda = _mm(_permutation_matrix(perm, core.get_aval(a).dtype), da)
    y = triangular_solve(packed, pda, left_side=True, lower=True, unit_diagonal=True)
    x = triangular_solve(packed, y, left_side=False, lower=False)
    n = core.get_aval(a).shape[-1]
    l = ew.select(np.eye(n, dtype=bool), 1, _tril(packed, -1))
    dlu = ew.add(_mm(l, _tril(x, -1)), _mm(_triu(x), _triu(packed)))
    return outs, [dlu] + zeros


lu_p = _decomposition("lu", _lu_impl, _lu_abstract, _lu_jvp)


def lu(a):
    return lu_p.bind(a)


# ---------------------------------------------------------------------------------------------
# qr(a) -> (q, r): reduced (q m x k, r k x n, k = min(m, n)) or full (q m x m, r m x n).

def _qr_abstract(a, *, full_matrices):
    _check_matrix("qr", a, square=False)
    m, n = a.shape[-2:]
    k = m if full_matrices else min(m, n)
    lead = a.shape[:-2]
    return [ShapedArray(lead + (m, k), a.dtype), ShapedArray(lead + (k, n), a.dtype)]


def _qr_tall_jvp(q, r, da):
    """q (m, n), r (n, n) with m >= n: dQ = B - Q (C - W), dR = (C - W) R, where
    B = dA R^-1, C = Q^T B and W = tril(C, -1) - tril(C, -1)^T (Q^T dQ is antisymmetric)."""
    b = triangular_solve(r, da, left_side=False, lower=False)
    c = _mm(_mat_t(q), b)
    low = _tril(c, -1)
    dr_rinv = ew.sub(c, ew.sub(low, _mat_t(low)))
    return ew.sub(b, _mm(q, dr_rinv)), _mm(dr_rinv, r)


def _qr_jvp(primals, tangents, *, full_matrices):
    (a,), (da,) = primals, tangents
    q, r = qr(a, full_matrices)
    if type(da) is Zero:
        return [q, r], [Zero.like(q), Zero.like(r)]
    _require_real("qr", a)
    m, n = core.get_aval(a).shape[-2:]
    if m > n and full_matrices:
        raise NotImplementedError("qr: the derivative of the full (m x m) Q of a tall matrix is "
                                  "not defined (its last m - n columns are not unique); use the "
                                  "reduced decomposition")
    if m >= n:
        return [q, r], list(_qr_tall_jvp(q, r, da))
    # Wide: a = [x | y] with x square; q r_x = x and r = [r_x | q^T y].
    nd = _ndim(a)
    cols = lambda v, lo, hi: st.slice_in_dim(v, lo, hi, 1, nd - 1)
    dq, drx = _qr_tall_jvp(q, cols(r, 0, m), cols(da, 0, m))
    dry = ew.add(_mm(_mat_t(dq), cols(a, m, n)), _mm(_mat_t(q), cols(da, m, n)))
    return [q, r], [dq, st.concatenate([drx, dry], nd - 1)]


qr_p = _decomposition(
    "qr", lambda xp, a, *, full_matrices: list(xp.linalg.qr(a, "complete" if full_matrices
                                                             else "reduced")),
    _qr_abstract, _qr_jvp)


def qr(a, full_matrices: bool = False):
    return qr_p.bind(a, full_matrices=bool(full_matrices))


# ---------------------------------------------------------------------------------------------
# svd(a) -> (u, s, vh) (compute_uv) or (s,): singular values descending.

def _svd_impl(xp, a, *, full_matrices, compute_uv):
    out = xp.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv)
    return list(out) if compute_uv else [out]


def _svd_abstract(a, *, full_matrices, compute_uv):
    _check_matrix("svd", a, square=False)
    m, n = a.shape[-2:]
    k, lead = min(m, n), a.shape[:-2]
    s = ShapedArray(lead + (k,), _real_dtype(a.dtype))
    if not compute_uv:
        return [s]
    ku, kv = (m, n) if full_matrices else (k, k)
    return [ShapedArray(lead + (m, ku), a.dtype), s, ShapedArray(lead + (kv, n), a.dtype)]


def _svd_jvp(primals, tangents, *, full_matrices, compute_uv):
    (a,), (da,) = primals, tangents
    m, n = core.get_aval(a).shape[-2:]
    if compute_uv:
        outs = svd(a, full_matrices, True)
        u, s, vh = outs
    else:
        u, s, vh = svd(a, False, True)
        outs = [s]
    if type(da) is Zero:
        return outs, [Zero.like(o) for o in outs]
    _require_real("svd", a)
    if compute_uv and full_matrices and m != n:
        raise NotImplementedError("svd: the derivative of the full u or vh of a non-square "
                                  "matrix is not defined (their extra columns are not "
                                  "unique); use full_matrices=False")
    v = _mat_t(vh)
    dp = _mm(_mat_t(u), _mm(da, v))                 # U^T dA V, k x k
    ds = diag_part(dp)
    if not compute_uv:
        return outs, [ds]
    # F_ij = 1 / (s_j^2 - s_i^2); dU = U (F * (dP S + S dP^T)) [+ (dA V - U dP) S^-1 if m > n]
    #                             dV = V (F * (S dP + dP^T S)) [+ (dA^T U - V dP^T) S^-1 if n > m]
    s_i, s_j = _col(s), _row(s)
    f = _inverse_gaps(ew.sub(ew.mul(s_j, s_j), ew.mul(s_i, s_i)))
    dp_t = _mat_t(dp)
    du = _mm(u, ew.mul(f, ew.add(ew.mul(dp, s_j), ew.mul(s_i, dp_t))))
    dv = _mm(v, ew.mul(f, ew.add(ew.mul(s_i, dp), ew.mul(dp_t, s_j))))
    if m > n:
        du = ew.add(du, ew.div(ew.sub(_mm(da, v), _mm(u, dp)), s_j))
    if n > m:
        dv = ew.add(dv, ew.div(ew.sub(_mm(_mat_t(da), u), _mm(v, dp_t)), s_j))
    return outs, [du, ds, _mat_t(dv)]


svd_p = _decomposition("svd", _svd_impl, _svd_abstract, _svd_jvp)


def svd(a, full_matrices: bool = False, compute_uv: bool = True):
    return svd_p.bind(a, full_matrices=bool(full_matrices), compute_uv=bool(compute_uv))


# ---------------------------------------------------------------------------------------------
# pinv(a) -> a^+: singular values below rcond * max(s) are treated as zero. A primitive so
# that its derivative is the closed form in a^+ (valid where the rank is locally constant),
# not one through the SVD, which would break down at repeated singular values.

def _pinv_abstract(a, *, rcond):
    _check_matrix("pinv", a, square=False)
    return ShapedArray(a.shape[:-2] + a.shape[:-3:-1], a.dtype)


def _pinv_jvp(primals, tangents, *, rcond):
    (a,), (da,) = primals, tangents
    p = pinv(a, rcond)
    if type(da) is Zero:
        return p, Zero.like(p)
    _require_real("pinv", a)
    # dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P
    da_t, p_t = _mat_t(da), _mat_t(p)
    ap, pa = _mm(a, p), _mm(p, a)
    term1 = ew.neg(_mm(p, _mm(da, p)))
    term2 = _mm(_mm(p, p_t), ew.sub(da_t, _mm(da_t, ap)))
    term3 = _mm(ew.sub(da_t, _mm(pa, da_t)), _mm(p_t, p))
    return p, ew.add(term1, ew.add(term2, term3))


pinv_p = _decomposition("pinv", lambda xp, a, *, rcond: xp.linalg.pinv(a, rcond), _pinv_abstract,
                        _pinv_jvp, multiple_results=False)


def pinv(a, rcond: float = 1e-15):
    return pinv_p.bind(a, rcond=float(rcond))


# ---------------------------------------------------------------------------------------------
# Compositions used by funcgrad.numpy.linalg

def _solve_permuted(packed, pb):
    """Solve L U x = pb with L (unit lower) and U packed as lu() returns them."""
    y = triangular_solve(packed, pb, left_side=True, lower=True, unit_diagonal=True)
    return triangular_solve(packed, y, left_side=True, lower=False)


def lu_solve(packed, perm, b):
    """Solve ``a x = b`` from ``packed, _, perm = lu(a)``; b is (..., n, k), its leading
    axes broadcast against a's."""
    lu_aval, b_aval = core.get_aval(packed), core.get_aval(b)
    n, k = b_aval.shape[-2:]
    batch = np.broadcast_shapes(lu_aval.shape[:-2], b_aval.shape[:-2])
    if batch and not lu_aval.shape[:-2]:
        # One matrix, a stack of right-hand sides: solve them all as columns of one matrix.
        nb = len(batch)
        cols = st.transpose(b, (nb,) + tuple(range(nb)) + (nb + 1,))
        cols = st.reshape(cols, (n, _prod(batch) * k))
        x = st.reshape(lu_solve(packed, perm, cols), (n,) + batch + (k,))
        return st.transpose(x, tuple(range(1, nb + 1)) + (0, nb + 1))
    packed = st.broadcast_to(packed, batch + (n, n))
    perm = st.broadcast_to(perm, batch + (n,))
    b = st.broadcast_to(b, batch + (n, k))
    return _solve_permuted(packed, _mm(_permutation_matrix(perm, b_aval.dtype), b))


def lu_inverse(packed, perm):
    """a^-1 from ``packed, _, perm = lu(a)``."""
    return _solve_permuted(packed, _permutation_matrix(perm, core.get_aval(packed).dtype))
