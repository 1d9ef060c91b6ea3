"""dot_general: the one contraction primitive (matmul, dot, tensordot, einsum, batched
products all lower to it). Its output axes are: batch axes, then the lhs free axes, then the
rhs free axes. The impl goes to BLAS through tensordot/matmul.
"""
from __future__ import annotations

import numpy as np

from .. import core
from ..core import ShapedArray
from ..interpreters import ad
from ..interpreters.ad import Zero
from . import structural as st


def _free(ndim, contract, batch):
    return tuple(i for i in range(ndim) if i not in contract and i not in batch)


def _dot_general_impl(xp, lhs, rhs, *, dimension_numbers, preferred_element_type=None):
    (lc, rc), (lb, rb) = dimension_numbers
    if not lb:
        out = xp.tensordot(lhs, rhs, axes=(lc, rc))
    else:
        lf, rf = _free(lhs.ndim, lc, lb), _free(rhs.ndim, rc, rb)
        bshape = tuple(lhs.shape[i] for i in lb)
        lfs, rfs = tuple(lhs.shape[i] for i in lf), tuple(rhs.shape[i] for i in rf)
        k = int(np.prod([lhs.shape[i] for i in lc], dtype=np.int64))
        b = int(np.prod(bshape, dtype=np.int64))
        l2 = xp.transpose(lhs, lb + lf + lc).reshape(b, int(np.prod(lfs, dtype=np.int64)), k)
        r2 = xp.transpose(rhs, rb + rc + rf).reshape(b, k, int(np.prod(rfs, dtype=np.int64)))
        out = xp.matmul(l2, r2).reshape(bshape + lfs + rfs)
    if preferred_element_type is not None and out.dtype != preferred_element_type:
        out = out.astype(preferred_element_type)
    return out


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
    dtype = preferred_element_type or lhs.dtype
    return ShapedArray(shape, dtype, lhs.weak_type and rhs.weak_type)


def _transpose_side(ct, other, other_aval, mine_aval, my_c, my_b, other_c, other_b, ct_free_start, ct_free_n,
                    preferred):
    """Cotangent of one operand: contract ct with the other operand over the other's free axes,
    then permute the result back into this operand's axis order."""
    nb = len(my_b)
    other_free = _free(other_aval.ndim, other_c, other_b)
    ct_axes = tuple(range(ct_free_start, ct_free_start + ct_free_n))
    dims = ((ct_axes, other_free), (tuple(range(nb)), other_b))
    res = dot_general(ct, other, dims, preferred)
    # res axes: batch, my free axes (in order), then the other's contracting axes in sorted order
    my_free = _free(mine_aval.ndim, my_c, my_b)
    sorted_other_c = sorted(other_c)
    pos = {}
    for i, a in enumerate(my_b):
        pos[a] = i
    for j, a in enumerate(my_free):
        pos[a] = nb + j
    for a, oc in zip(my_c, other_c):
        pos[a] = nb + len(my_free) + sorted_other_c.index(oc)
    perm = tuple(pos[a] for a in range(mine_aval.ndim))
    res = st.transpose(res, perm)
    dtype = mine_aval.dtype
    if core.get_aval(res).dtype != dtype:
        from .elementwise import convert_element_type
        res = convert_element_type(res, dtype)
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
        ct_l = _transpose_side(ct, rhs, r_aval, l_aval, lc, lb, rc, rb, nb + n_lf, n_rf, preferred_element_type)
    if ad.is_undefined(rhs):
        ct_r = _transpose_side(ct, lhs, l_aval, r_aval, rc, rb, lc, lb, nb, n_lf, preferred_element_type)
    return [ct_l, ct_r]


def _dot_general_batch(args, dims, *, dimension_numbers, preferred_element_type=None):
    (lhs, rhs), (dl, dr) = args, dims
    (lc, rc), (lb, rb) = dimension_numbers
    shift = lambda axes, d: tuple(a + (a >= d) for a in axes)
    if dl is not None and dr is not None:
        # Both batched: the vmapped axis becomes a new leading batch axis of the product.
        from ..interpreters.batching import moveaxis
        lhs, rhs = moveaxis(lhs, dl, 0), moveaxis(rhs, dr, 0)
        dnums = ((shift(lc, 0), shift(rc, 0)), ((0,) + shift(lb, 0), (0,) + shift(rb, 0)))
        return dot_general(lhs, rhs, dnums, preferred_element_type), 0
    nb = len(lb)
    if dl is not None:
        lc2, lb2 = shift(lc, dl), shift(lb, dl)
        lhs_nd = core.get_aval(lhs).ndim
        free = _free(lhs_nd, lc2, lb2)
        out_d = nb + free.index(dl)
        return dot_general(lhs, rhs, ((lc2, rc), (lb2, rb)), preferred_element_type), out_d
    rc2, rb2 = shift(rc, dr), shift(rb, dr)
    rhs_nd = core.get_aval(rhs).ndim
    lhs_aval = core.get_aval(lhs)
    n_lf = len(_free(lhs_aval.ndim, lc, lb))
    free = _free(rhs_nd, rc2, rb2)
    out_d = nb + n_lf + free.index(dr)
    return dot_general(lhs, rhs, ((lc, rc2), (lb, rb2)), preferred_element_type), out_d


def _dot_general_jvp(primals, tangents, *, dimension_numbers, preferred_element_type=None):
    lhs, rhs = primals
    tl, tr = tangents
    ans = dot_general(lhs, rhs, dimension_numbers, preferred_element_type)
    out = None
    if type(tl) is not Zero:
        out = dot_general(tl, rhs, dimension_numbers, preferred_element_type)
    if type(tr) is not Zero:
        t = dot_general(lhs, tr, dimension_numbers, preferred_element_type)
        out = t if out is None else ad.add_tangents(out, t)
    return ans, (Zero.like(ans) if out is None else out)


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
