"""Products: matmul, dot, tensordot, inner, outer, vdot (through dot_general), and kron,
vecdot, cross and polyval (elementwise products and sums)."""
from __future__ import annotations

import numpy as np

from .. import core
from ..primitives import linalg, structural as st
from ._array import normalize_axis, operand, promote, tracing


def _prep(a, b):
    a, b = promote(operand(a), operand(b))
    return a, b, core.get_aval(a), core.get_aval(b)


def matmul(a, b):
    """numpy.matmul: stacks of matrices broadcast over leading axes; a 1-D operand is a
    vector whose axis is contracted (numpy's added-then-removed axis never appears)."""
    if not tracing():
        return np.matmul(a, b)
    a, b, av, bv = _prep(a, b)
    if av.ndim == 0 or bv.ndim == 0:
        raise ValueError("matmul: input operand does not have enough dimensions")
    rc = max(bv.ndim - 2, 0)
    if av.shape[-1] != bv.shape[rc]:
        raise core.type_error("matmul", f"contracting sizes differ: {av.shape[-1]} (from "
                              f"{av.shape}) vs {bv.shape[rc]} (from {bv.shape})", [av, bv])
    if av.ndim == 1 or bv.ndim == 1:
        # The result's axes are the other operand's remaining ones, as numpy's are.
        return linalg.dot_general(a, b, (((av.ndim - 1,), (rc,)), ((), ())))
    sa, sb = av.shape, bv.shape
    batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    nb = len(batch)
    # Unbatched operands contract without broadcasting (BLAS sees one large matrix).
    if len(sb) == 2:
        return linalg.dot_general(a, b, (((len(sa) - 1,), (0,)), ((), ())))
    if len(sa) == 2:
        out = linalg.dot_general(a, b, (((1,), (len(sb) - 2,)), ((), ())))
        # out: (m, batch..., n) -> (batch..., m, n)
        return st.transpose(out, tuple(range(1, nb + 1)) + (0, nb + 1))
    a3 = st.broadcast_to(a, batch + sa[-2:])
    b3 = st.broadcast_to(b, batch + sb[-2:])
    bd = tuple(range(nb))
    return linalg.dot_general(a3, b3, (((nb + 1,), (nb,)), (bd, bd)))


def dot(a, b):
    """numpy.dot: sum over the last axis of a and the second-to-last of b."""
    if not tracing():
        return np.dot(a, b)
    a, b, av, bv = _prep(a, b)
    if av.ndim == 0 or bv.ndim == 0:
        from ._ufuncs import multiply
        return multiply(a, b)
    rc = 0 if bv.ndim == 1 else bv.ndim - 2
    return linalg.dot_general(a, b, (((av.ndim - 1,), (rc,)), ((), ())))


def vdot(a, b):
    from ._shape import ravel
    return dot(ravel(a), ravel(b)) if tracing() else np.vdot(a, b)


def inner(a, b):
    if not tracing():
        return np.inner(a, b)
    a, b, av, bv = _prep(a, b)
    if av.ndim == 0 or bv.ndim == 0:
        from ._ufuncs import multiply
        return multiply(a, b)
    return linalg.dot_general(a, b, (((av.ndim - 1,), (bv.ndim - 1,)), ((), ())))


def outer(a, b):
    if not tracing():
        return np.outer(a, b)
    from ._shape import ravel
    a, b = promote(ravel(a), ravel(b))
    return linalg.dot_general(a, b, (((), ()), ((), ())))


def tensordot(a, b, axes=2):
    if not tracing():
        return np.tensordot(a, b, axes)
    a, b, av, bv = _prep(a, b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        ca, cb = tuple(range(av.ndim - n, av.ndim)), tuple(range(n))
    else:
        ca, cb = axes
        ca = (ca,) if isinstance(ca, (int, np.integer)) else tuple(ca)
        cb = (cb,) if isinstance(cb, (int, np.integer)) else tuple(cb)
        ca = tuple(normalize_axis(x, av.ndim) for x in ca)
        cb = tuple(normalize_axis(x, bv.ndim) for x in cb)
    return linalg.dot_general(a, b, ((ca, cb), ((), ())))


def kron(a, b):
    if not tracing():
        return np.kron(a, b)
    a, b, av, bv = _prep(a, b)
    nd = max(av.ndim, bv.ndim)
    a = st.reshape(a, (1,) * (nd - av.ndim) + av.shape)
    b = st.reshape(b, (1,) * (nd - bv.ndim) + bv.shape)
    sa, sb = core.get_aval(a).shape, core.get_aval(b).shape
    a_exp = st.reshape(a, tuple(x for n in sa for x in (n, 1)))
    b_exp = st.reshape(b, tuple(x for n in sb for x in (1, n)))
    from ._ufuncs import multiply
    prod = multiply(a_exp, b_exp)
    return st.reshape(prod, tuple(m * n for m, n in zip(sa, sb)))


def vecdot(x1, x2, /, *, axis=-1):
    """Dot products of vectors along ``axis`` (broadcasting over the other axes)."""
    if not tracing():
        return np.vecdot(x1, x2, axis=axis)
    from ._reductions import sum
    from ._ufuncs import multiply
    x1, x2, a1, a2 = _prep(x1, x2)
    if a1.ndim == 0 or a2.ndim == 0:
        raise ValueError("vecdot: input operands must have at least one dimension")
    if a1.shape[axis] != a2.shape[axis]:
        raise ValueError(f"vecdot: vector lengths differ: {a1.shape} and {a2.shape}")
    prod = multiply(x1, x2)
    return sum(prod, axis=axis, dtype=prod.dtype)


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """Cross products of 3-vectors (or 2-vectors, taken as having a zero third component)
    along ``axisa``/``axisb``, the components of the result along ``axisc``."""
    if not tracing():
        return np.cross(a, b, axisa, axisb, axisc, axis)
    from ._shape import moveaxis
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b, av, bv = _prep(a, b)
    if av.ndim < 1 or bv.ndim < 1:
        raise ValueError("At least one array has zero dimension")
    a, b = moveaxis(a, axisa, -1), moveaxis(b, axisb, -1)
    na, nb = a.shape[-1], b.shape[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n(dimension must be 2 or 3)")
    comp = lambda x, i: st.squeeze(st.slice_in_dim(x, i, i + 1, 1, x.ndim - 1), (x.ndim - 1,))
    a0, a1, b0, b1 = comp(a, 0), comp(a, 1), comp(b, 0), comp(b, 1)
    cp2 = a0 * b1 - a1 * b0
    if na == 2 and nb == 2:
        return cp2
    if na == 2:
        b2 = comp(b, 2)
        cp0, cp1 = a1 * b2, -(a0 * b2)
    elif nb == 2:
        a2 = comp(a, 2)
        cp0, cp1 = -(a2 * b1), a2 * b0
    else:
        a2, b2 = comp(a, 2), comp(b, 2)
        cp0, cp1 = a1 * b2 - a2 * b1, a2 * b0 - a0 * b2
    shape = np.broadcast_shapes(a0.shape, b0.shape)
    cp = st.concatenate([st.expand_dims(st.broadcast_to(c, shape), (len(shape),))
                         for c in (cp0, cp1, cp2)], len(shape))
    return moveaxis(cp, -1, axisc)


def polyval(p, x):
    """The polynomial with coefficients ``p`` (highest power first) at ``x``, by Horner's
    rule as NumPy: ``y = y * x + p[i]`` starting from ``zeros_like(x)``."""
    if not tracing():
        return np.polyval(p, x)
    from ._ufuncs import add, multiply
    p, x = operand(p), operand(x)
    if p.ndim == 0:
        raise TypeError("iteration over a 0-d array")
    y = st.full(x.shape, 0, x.dtype)
    for i in range(p.shape[0]):
        pv = st.squeeze(st.slice_in_dim(p, i, i + 1, 1, 0), (0,))
        y = add(multiply(y, x), pv)
    return y
