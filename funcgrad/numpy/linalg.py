"""funcgrad.numpy.linalg: numpy.linalg, traceable by every funcgrad transform.

With no transform active each function is NumPy's own. Under a trace they are built from the
linear algebra primitives (``funcgrad.primitives.linalg``): det, slogdet, solve and inv from
``lu`` and ``triangular_solve``; norms from reductions (and ``svd`` for the spectral and
nuclear norms); lstsq from ``pinv``. Dtypes follow numpy.linalg: integer and boolean inputs
compute in float64, float32 stays float32, float16 is rejected (norms accept it).

Differences under a trace, where values are abstract:
  * Real matrices only (complex ones work eagerly, and in the primitives).
  * ``hermitian=True`` (svd, pinv, matrix_rank) is ignored: an ordinary SVD gives the same
    singular values (the signs of svd's singular vectors may differ from NumPy's).
  * ``lstsq`` returns the residuals whenever M > N, also for rank-deficient ``a`` (NumPy
    then returns an empty array: its shape depends on the rank, a value).
  * ``pinv``/``lstsq`` take a scalar ``rcond``/``rtol``.

Derivatives: the norms built on sqrt (ord None, 2 for vectors, 'fro') have gradient 0 at 0 (a
subgradient; JAX gives NaN there). det and slogdet differentiate through LU, so their
gradients at an exactly singular matrix raise LinAlgError (the factor U is singular). See
the primitives' docstrings for where eigh/svd derivatives are not finite.
"""
from __future__ import annotations

import operator
from typing import NamedTuple, Sequence

import numpy as np

from .. import core
from ..primitives import elementwise as ew, linalg as lp, structural as st
from . import _dot, _reductions as red, _shape, _ufuncs as uf
from ._array import astype, normalize_axis, operand, tracing

LinAlgError = np.linalg.LinAlgError
matmul, tensordot = _dot.matmul, _dot.tensordot
matrix_transpose = _shape.matrix_transpose


class SlogdetResult(NamedTuple):
    sign: object
    logabsdet: object


class QRResult(NamedTuple):
    Q: object
    R: object


class SVDResult(NamedTuple):
    U: object
    S: object
    Vh: object


class EighResult(NamedTuple):
    eigenvalues: object
    eigenvectors: object


_UNSET = object()        # pinv's rtol: NumPy tells "not given" from None

# ---------------------------------------------------------------------------------------------
# Operands and errors


def _error(cls: type, name: str, message: str, *xs) -> Exception:
    """A trace-time error of NumPy's exception class ``cls`` that names the function, the
    operand types and the user's line."""
    return cls(*core.type_error(name, message, [core.get_aval(x) for x in xs]).args)


def _linalg_dtype(name: str, *xs) -> np.dtype:
    dtype = np.result_type(*(core.get_aval(x).dtype for x in xs))
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "c":
        raise NotImplementedError(f"funcgrad.numpy.linalg.{name}: complex matrices are only "
                                  "supported outside transforms")
    if dtype == np.float16:
        raise _error(TypeError, name, "array type float16 is unsupported in linalg", *xs)
    return dtype


def _matrices(name: str, a, square: bool = True):
    """``a`` as a (stack of) matrices of its linalg dtype; NumPy's errors for bad shapes."""
    a = operand(a)
    shape = core.get_aval(a).shape
    if len(shape) < 2:
        raise _error(LinAlgError, name, f"{len(shape)}-dimensional array given; the array must "
                     "be at least two-dimensional", a)
    if square and shape[-1] != shape[-2]:
        raise _error(LinAlgError, name, "the last 2 dimensions of the array must be square", a)
    return astype(a, _linalg_dtype(name, a))


def _lower(name: str, UPLO: str) -> bool:
    if UPLO not in ("L", "U"):
        raise ValueError(f"{name}: UPLO argument must be 'L' or 'U', got {UPLO!r}")
    return UPLO == "L"


def _swap_last(x):
    return _shape.swapaxes(x, -1, -2)


# ---------------------------------------------------------------------------------------------
# Decompositions


def cholesky(a, /, *, upper: bool = False):
    """The lower (or ``upper``) Cholesky factor, reading that triangle of ``a``."""
    if not tracing():
        return np.linalg.cholesky(a, upper=upper)
    a = _matrices("cholesky", a)
    return _swap_last(lp.cholesky(_swap_last(a))) if upper else lp.cholesky(a)


def qr(a, mode: str = "reduced"):
    if not tracing():
        return np.linalg.qr(a, mode)
    if mode not in ("reduced", "complete", "r", "raw"):
        raise ValueError(f"qr: unrecognized mode {mode!r}")
    if mode == "raw":
        raise NotImplementedError("qr: mode='raw' (LAPACK's Householder reflectors) is not "
                                  "supported under funcgrad transforms")
    q, r = lp.qr(_matrices("qr", a, square=False), full_matrices=mode == "complete")
    return r if mode == "r" else QRResult(q, r)


def svd(a, full_matrices: bool = True, compute_uv: bool = True, hermitian: bool = False):
    if not tracing():
        return np.linalg.svd(a, full_matrices, compute_uv, hermitian)
    a = _matrices("svd", a, square=False)
    if not compute_uv:
        return lp.svd(a, False, False)[0]
    return SVDResult(*lp.svd(a, full_matrices, True))


def svdvals(x, /):
    if not tracing():
        return np.linalg.svdvals(x)
    return lp.svd(_matrices("svdvals", x, square=False), False, False)[0]


def eigh(a, UPLO: str = "L"):
    """Eigenvalues (ascending) and eigenvectors of symmetric matrices, reading one triangle."""
    if not tracing():
        return np.linalg.eigh(a, UPLO)
    return EighResult(*lp.eigh(_matrices("eigh", a), _lower("eigh", UPLO)))


def eigvalsh(a, UPLO: str = "L"):
    if not tracing():
        return np.linalg.eigvalsh(a, UPLO)
    return lp.eigh(_matrices("eigvalsh", a), _lower("eigvalsh", UPLO))[0]


# ---------------------------------------------------------------------------------------------
# Determinants, inverses and solves (through LU)


def _permutation_sign(pivots, dtype):
    """(-1) ** (number of row interchanges)."""
    shape = core.get_aval(pivots).shape
    moved = ew.ne(pivots, st.broadcasted_iota(pivots.dtype, shape, len(shape) - 1))
    odd = uf.remainder(red.sum(moved, axis=-1), 2)
    return ew.convert_element_type(uf.subtract(1, uf.multiply(2, odd)), dtype)


def det(a):
    if not tracing():
        return np.linalg.det(a)
    a = _matrices("det", a)
    packed, pivots, _ = lp.lu(a)
    diag = lp.diag_part(packed)
    return ew.mul(_permutation_sign(pivots, diag.dtype), red.prod(diag, axis=-1))


def slogdet(a):
    if not tracing():
        return np.linalg.slogdet(a)
    a = _matrices("slogdet", a)
    packed, pivots, _ = lp.lu(a)
    diag = lp.diag_part(packed)
    sign = ew.mul(_permutation_sign(pivots, diag.dtype), red.prod(uf.sign(diag), axis=-1))
    return SlogdetResult(sign, red.sum(uf.log(uf.absolute(diag)), axis=-1))


def solve(a, b):
    """Solve ``a @ x = b``. As NumPy 2: a 1-D ``b`` is a vector; otherwise ``b`` is a (stack
    of) matrices whose leading axes broadcast against ``a``'s."""
    if not tracing():
        return np.linalg.solve(a, b)
    a, b = _matrices("solve", a), operand(b)
    dtype = _linalg_dtype("solve", a, b)
    a, b = astype(a, dtype), astype(b, dtype)
    n, b_shape = core.get_aval(a).shape[-1], core.get_aval(b).shape
    vector = len(b_shape) == 1
    if len(b_shape) == 0 or b_shape[-1 if vector else -2] != n:
        raise _error(ValueError, "solve", f"b must have shape ({n},) or (..., {n}, K) to match "
                     f"a of shape {core.get_aval(a).shape}", a, b)
    packed, _, perm = lp.lu(a)
    x = lp.lu_solve(packed, perm, st.reshape(b, (n, 1)) if vector else b)
    return st.squeeze(x, (core.get_aval(x).ndim - 1,)) if vector else x


def inv(a):
    if not tracing():
        return np.linalg.inv(a)
    packed, _, perm = lp.lu(_matrices("inv", a))
    return lp.lu_inverse(packed, perm)


def matrix_power(a, n):
    if not tracing():
        return np.linalg.matrix_power(a, n)
    a = operand(a)
    shape = core.get_aval(a).shape
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise _error(LinAlgError, "matrix_power", "expected a (stack of) square matrices", a)
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError("matrix_power: exponent must be an integer") from None
    if n == 0:
        return st.broadcast_to(np.eye(shape[-1], dtype=core.get_aval(a).dtype), shape)
    if n < 0:
        a, n = inv(a), -n
    result = None
    while n:                                    # binary powering: O(log n) products
        if n & 1:
            result = a if result is None else matmul(result, a)
        n >>= 1
        if n:
            a = matmul(a, a)
    return result


def pinv(a, rcond=None, hermitian: bool = False, *, rtol=_UNSET):
    if not tracing():
        return np.linalg.pinv(a, rcond, hermitian, **({} if rtol is _UNSET else {"rtol": rtol}))
    a = _matrices("pinv", a, square=False)
    if rcond is None:
        m, n = core.get_aval(a).shape[-2:]
        rcond = (1e-15 if rtol is _UNSET else
                 max(m, n) * np.finfo(core.get_aval(a).dtype).eps if rtol is None else rtol)
    elif rtol is not _UNSET:
        raise ValueError("pinv: `rtol` and `rcond` can't be both set.")
    return lp.pinv(a, _static_scalar("pinv", rcond))


def _static_scalar(name: str, x) -> float:
    if isinstance(x, core.Tracer) or np.ndim(x) != 0:
        raise NotImplementedError(f"{name}: under funcgrad transforms the tolerance must be a "
                                  f"Python or NumPy scalar, got {x!r:.60}")
    return float(x)


def matrix_rank(A, tol=None, hermitian: bool = False, *, rtol=None):
    if not tracing():
        return np.linalg.matrix_rank(A, tol, hermitian, rtol=rtol)
    A = operand(A)
    if core.get_aval(A).ndim < 2:
        return astype(red.any(uf.not_equal(A, 0)), np.intp)
    s = svdvals(A)
    if tol is None:
        if rtol is None:
            rtol = max(core.get_aval(A).shape[-2:]) * np.finfo(s.dtype).eps
        else:
            rtol = _shape.expand_dims(operand(rtol), -1)
        tol = uf.multiply(red.max(s, axis=-1, keepdims=True), rtol)
    else:
        tol = _shape.expand_dims(operand(tol), -1)
    return red.count_nonzero(uf.greater(s, tol), axis=-1)


def lstsq(a, b, rcond=None):
    """Least squares through the pseudo-inverse. Returns (x, residuals, rank, s)."""
    if not tracing():
        return np.linalg.lstsq(a, b, rcond)
    a, b = _matrices("lstsq", a, square=False), operand(b)
    dtype = _linalg_dtype("lstsq", a, b)
    a, b = astype(a, dtype), astype(b, dtype)
    a_shape, b_shape = core.get_aval(a).shape, core.get_aval(b).shape
    if len(a_shape) != 2 or len(b_shape) not in (1, 2):
        raise _error(LinAlgError, "lstsq", "a must be 2-dimensional and b 1- or 2-dimensional",
                     a, b)
    m, n = a_shape
    if b_shape[0] != m:
        raise _error(LinAlgError, "lstsq", f"incompatible dimensions: a has {m} rows, "
                     f"b {b_shape[0]}", a, b)
    if rcond is None:
        rcond = np.finfo(dtype).eps * max(m, n)
    rcond = _static_scalar("lstsq", rcond)
    x = _dot.dot(lp.pinv(a, rcond), b)
    s = svdvals(a)
    rank = red.count_nonzero(uf.greater(s, uf.multiply(red.max(s), rcond))) if s.size else 0
    if m > n:
        resid = red.sum(uf.square(uf.subtract(b, _dot.dot(a, x))), axis=0)
        resid = st.reshape(resid, (1,)) if len(b_shape) == 1 else resid
    else:
        resid = np.zeros((0,), dtype)
    return x, resid, rank, s


def multi_dot(arrays: Sequence, *, out=None):
    """Chained dot product in the cheapest association order (dynamic programming)."""
    if not tracing():
        return np.linalg.multi_dot(arrays, out=out)
    arrays = [operand(x) for x in arrays]
    if len(arrays) < 2:
        raise ValueError("multi_dot: expecting at least two arrays")
    if len(arrays) == 2:
        return _dot.dot(*arrays)
    first_1d, last_1d = core.get_aval(arrays[0]).ndim == 1, core.get_aval(arrays[-1]).ndim == 1
    if first_1d:
        arrays[0] = st.reshape(arrays[0], (1,) + core.get_aval(arrays[0]).shape)
    if last_1d:
        arrays[-1] = st.reshape(arrays[-1], core.get_aval(arrays[-1]).shape + (1,))
    shapes = [core.get_aval(x).shape for x in arrays]
    if any(len(s) != 2 for s in shapes):
        raise _error(ValueError, "multi_dot", "all arrays but the first and last must be "
                     "2-dimensional (those may be 1-dimensional)", *arrays)
    split = _chain_order([s[0] for s in shapes] + [shapes[-1][1]])

    def product(i, j):
        if i == j:
            return arrays[i]
        k = split[i][j]
        return _dot.dot(product(i, k), product(k + 1, j))

    result = product(0, len(arrays) - 1)
    shape = core.get_aval(result).shape
    keep = tuple(d for d, drop in zip(shape, (first_1d, last_1d)) if not drop)
    return st.reshape(result, keep)


def _chain_order(dims: Sequence[int]) -> list[list[int]]:
    """Matrix-chain order: split[i][j] is where the product of matrices i..j splits."""
    count = len(dims) - 1
    cost = [[0] * count for _ in range(count)]
    split = [[0] * count for _ in range(count)]
    for length in range(1, count):
        for i in range(count - length):
            j = i + length
            cost[i][j] = float("inf")
            for k in range(i, j):
                c = cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1]
                if c < cost[i][j]:
                    cost[i][j], split[i][j] = c, k
    return split


# ---------------------------------------------------------------------------------------------
# Norms


def _float_operand(x):
    """Norms compute in the input's float dtype (float64 for integers and booleans)."""
    x = operand(x)
    dtype = core.get_aval(x).dtype
    if dtype.kind == "c":
        raise NotImplementedError("funcgrad.numpy.linalg: norms of complex arrays are only "
                                  "supported outside transforms")
    return x if dtype.kind == "f" else astype(x, np.float64)


def _root(total, p: float):
    """``total ** (1/p)`` with derivative 0 where total == 0 (the "double where" trick: the
    untaken branch never sees the 0, so no inf * 0 = NaN reaches the gradient)."""
    zero = uf.equal(total, 0)
    safe = uf.where(zero, 1, total)
    root = uf.sqrt(safe) if p == 2 else uf.power(safe, 1 / p)
    return uf.where(zero, 0, root)


def _vector_norm(x, axes: tuple[int, ...], ord, keepdims: bool):
    absx = lambda: uf.absolute(x)
    if ord == np.inf:
        return red.max(absx(), axis=axes, keepdims=keepdims)
    if ord == -np.inf:
        return red.min(absx(), axis=axes, keepdims=keepdims)
    if ord == 0:
        nonzero = astype(uf.not_equal(x, 0), core.get_aval(x).dtype)
        return red.sum(nonzero, axis=axes, keepdims=keepdims)
    if ord == 1:
        return red.sum(absx(), axis=axes, keepdims=keepdims)
    if ord is None or ord == 2:
        return _root(red.sum(uf.multiply(x, x), axis=axes, keepdims=keepdims), 2)
    if isinstance(ord, str):
        raise ValueError(f"norm: invalid norm order {ord!r} for vectors")
    p = float(ord)
    return _root(red.sum(uf.power(absx(), p), axis=axes, keepdims=keepdims), p)


def _matrix_norm(x, row: int, col: int, ord, keepdims: bool):
    if ord in (2, -2, "nuc"):
        s = svdvals(_shape.moveaxis(x, (row, col), (-2, -1)))
        out = (red.max if ord == 2 else red.min if ord == -2 else red.sum)(s, axis=-1)
    elif ord in (1, -1, np.inf, -np.inf):
        # 1: the largest column sum; inf: the largest row sum
        summed, then = (row, col) if ord in (1, -1) else (col, row)
        sums = red.sum(uf.absolute(x), axis=summed)
        out = (red.max if ord > 0 else red.min)(sums, axis=then - (then > summed))
    elif ord in (None, "fro", "f"):
        out = _root(red.sum(uf.multiply(x, x), axis=(row, col)), 2)
    else:
        raise ValueError(f"norm: invalid norm order {ord!r} for matrices")
    if keepdims:
        shape = list(core.get_aval(x).shape)
        shape[row] = shape[col] = 1
        out = st.reshape(out, tuple(shape))
    return out


def norm(x, ord=None, axis=None, keepdims: bool = False):
    """Vector or matrix norm with NumPy's rules for ``ord`` and ``axis``."""
    if not tracing():
        return np.linalg.norm(x, ord, axis, keepdims)
    x = _float_operand(x)
    nd = core.get_aval(x).ndim
    if axis is None:
        if ord is None or (ord in ("f", "fro") and nd == 2) or (ord == 2 and nd == 1):
            return _vector_norm(x, tuple(range(nd)), None, keepdims)
        axis = tuple(range(nd))
    elif not isinstance(axis, tuple):
        try:
            axis = (operator.index(axis),)
        except TypeError:
            raise TypeError("norm: 'axis' must be None, an integer or a tuple of "
                            "integers") from None
    axes = tuple(normalize_axis(a, nd) for a in axis)
    if len(axes) == 1:
        return _vector_norm(x, axes, ord, keepdims)
    if len(axes) == 2:
        if axes[0] == axes[1]:
            raise ValueError("norm: duplicate axes given")
        return _matrix_norm(x, axes[0], axes[1], ord, keepdims)
    raise _error(ValueError, "norm", f"improper number of dimensions to norm: axis={axis}", x)


def vector_norm(x, /, *, axis=None, keepdims: bool = False, ord=2):
    """Array-API vector norm: over all axes (flattened), one axis, or a tuple of axes."""
    if not tracing():
        return np.linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=ord)
    x = _float_operand(x)
    nd = core.get_aval(x).ndim
    axes = (tuple(range(nd)) if axis is None else
            tuple(normalize_axis(a, nd) for a in (axis if isinstance(axis, tuple) else (axis,))))
    return _vector_norm(x, axes, ord, keepdims)


def matrix_norm(x, /, *, keepdims: bool = False, ord="fro"):
    """Array-API matrix norm over the last two axes."""
    if not tracing():
        return np.linalg.matrix_norm(x, keepdims=keepdims, ord=ord)
    x = _float_operand(x)
    nd = core.get_aval(x).ndim
    if nd < 2:
        raise _error(ValueError, "matrix_norm", "expected a (stack of) matrices", x)
    return _matrix_norm(x, nd - 2, nd - 1, ord, keepdims)


def cond(x, p=None):
    """Condition number: the ratio of extreme singular values (p None, 2, -2), else
    ``norm(x, p) * norm(inv(x), p)``."""
    if not tracing():
        return np.linalg.cond(x, p)
    x = _matrices("cond", x, square=p not in (None, 2, -2))
    if p in (None, 2, -2):
        s = svdvals(x)
        big, small = red.max(s, axis=-1), red.min(s, axis=-1)
        return uf.divide(big, small) if p != -2 else uf.divide(small, big)
    return uf.multiply(norm(x, p, axis=(-2, -1)), norm(inv(x), p, axis=(-2, -1)))
