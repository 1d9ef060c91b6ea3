"""Reductions (sum, max, min, prod, argmax, argmin, and, or) and cumulative ops
(cumsum, cumprod, cummax, cummin). All keep the operand's dtype; ``funcgrad.numpy`` applies
NumPy's accumulator-dtype rules (e.g. int32 sums to int64) before calling them.
"""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..core import ShapedArray
from ..interpreters.ad import Zero, defjvp, defjvp_zero, deflinear
from . import elementwise as ew, structural as st


def _reduced_shape(name, x, axes):
    if any(not 0 <= a < x.ndim for a in axes) or len(set(axes)) != len(axes):
        raise core.type_error(name, f"invalid axes {axes} for rank {x.ndim}", [x])
    return tuple(n for i, n in enumerate(x.shape) if i not in axes)


def _reduce_abstract(name: str, kinds: str, out_dtype=None, needs_identity=False):
    def abstract_eval(x, *, axes):
        if x.dtype.kind not in kinds:
            raise core.type_error(name, "unsupported operand dtype", [x])
        if needs_identity and any(x.shape[a] == 0 for a in axes if 0 <= a < x.ndim):
            raise core.type_error(name, "zero-size reduction has no identity", [x])
        return ShapedArray(_reduced_shape(name, x, axes), out_dtype or x.dtype,
                           x.weak_type and out_dtype is None)
    return abstract_eval


def _batch_axes(axes, d):
    """Per-example reduction axes -> axes of the batched operand (batch axis at ``d``)."""
    return tuple(a + (a >= d) for a in axes)


def _reduce_batch(prim):
    def batch(args, dims, *, axes, **params):
        (x,), (d,) = args, dims
        new_axes = _batch_axes(axes, d)
        out_d = d - sum(a < d for a in new_axes)
        return prim.bind(x, axes=new_axes, **params), out_d
    return batch


def _define(name, impl, kinds, out_dtype=None, needs_identity=False):
    p = core.Primitive(name)
    p.impl = impl
    p.abstract_eval = _reduce_abstract(name, kinds, out_dtype, needs_identity)
    p.batch = _reduce_batch(p)
    return p


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _broadcast_back(y, x_aval, axes):
    """Broadcast a reduced value back over the reduced axes of ``x``."""
    kept = tuple(i for i in range(x_aval.ndim) if i not in axes)
    return st.broadcast_in_dim(y, x_aval.shape, kept)


# ---------------------------------------------------------------------------------------------
# reduce_sum: linear

def _sum_transpose(ct, x, *, axes):
    if type(ct) is Zero:
        return [None]
    return [_broadcast_back(ct, x.aval, axes)]


reduce_sum_p = _define("reduce_sum", lambda xp, x, *, axes: xp.sum(x, axis=axes, dtype=x.dtype),
                       "iufc")
deflinear(reduce_sum_p, _sum_transpose)

# ---------------------------------------------------------------------------------------------
# reduce_max / reduce_min: the tangent at the extremum, shared equally between ties (as JAX)


def _extremum_jvp(g, ans, x, *, axes):
    aval = core.get_aval(x)
    at_ext = ew.eq(x, _broadcast_back(ans, aval, axes))
    weights = ew.convert_element_type(at_ext, aval.dtype)
    count = reduce_sum(weights, axes)
    return reduce_sum(ew.mul(g, weights), axes) / count


reduce_max_p = _define("reduce_max", lambda xp, x, *, axes: xp.max(x, axis=axes), "biuf",
                       needs_identity=True)
reduce_min_p = _define("reduce_min", lambda xp, x, *, axes: xp.min(x, axis=axes), "biuf",
                       needs_identity=True)
defjvp(reduce_max_p, _extremum_jvp)
defjvp(reduce_min_p, _extremum_jvp)

# ---------------------------------------------------------------------------------------------
# reduce_prod: d prod / d x_i = product of the others (exclusive prefix * suffix products,
# which stays exact where some x_j are zero)


def _prod_jvp(g, ans, x, *, axes):
    aval = core.get_aval(x)
    kept = tuple(i for i in range(aval.ndim) if i not in axes)
    n = int(np.prod([aval.shape[a] for a in axes], dtype=np.int64))
    lead = tuple(aval.shape[i] for i in kept)
    to_flat = lambda v: st.reshape(st.transpose(v, kept + tuple(axes)), lead + (n,))
    return reduce_sum(ew.mul(to_flat(g), _exclusive_products(to_flat(x))), (len(kept),))


def _exclusive_products(x):
    """For each position along the last axis, the product of all the other entries."""
    aval = core.get_aval(x)
    n = aval.shape[-1]
    one = np.ones((), aval.dtype)
    nd = aval.ndim
    ones_cfg = lambda lo, hi: tuple((0, 0, 0) for _ in range(nd - 1)) + ((lo, hi, 0),)
    before = st.pad(cumprod(x, nd - 1), one, ones_cfg(1, -1)) if n else x
    after = st.pad(cumprod(x, nd - 1, reverse=True), one, ones_cfg(-1, 1)) if n else x
    return ew.mul(before, after)


reduce_prod_p = _define("reduce_prod", lambda xp, x, *, axes: xp.prod(x, axis=axes, dtype=x.dtype),
                        "iufc")
defjvp(reduce_prod_p, _prod_jvp)

# ---------------------------------------------------------------------------------------------
# reduce_and / reduce_or (bool), argmax / argmin (integer results): not differentiable

reduce_and_p = _define("reduce_and", lambda xp, x, *, axes: xp.all(x, axis=axes), "b")
reduce_or_p = _define("reduce_or", lambda xp, x, *, axes: xp.any(x, axis=axes), "b")
defjvp_zero(reduce_and_p)
defjvp_zero(reduce_or_p)


def _arg_abstract(name):
    def abstract_eval(x, *, axis, index_dtype):
        if not 0 <= axis < x.ndim:
            raise core.type_error(name, f"axis {axis} out of range", [x])
        if x.shape[axis] == 0:
            raise core.type_error(name, "attempt to get the index of an empty sequence", [x])
        return ShapedArray(_reduced_shape(name, x, (axis,)), index_dtype)
    return abstract_eval


def _arg_batch(prim):
    def batch(args, dims, *, axis, index_dtype):
        (x,), (d,) = args, dims
        a = axis + (axis >= d)
        return prim.bind(x, axis=a, index_dtype=index_dtype), d - (a < d)
    return batch


def _arg_prim(name, np_name):
    p = core.Primitive(name)
    p.impl = lambda xp, x, *, axis, index_dtype: getattr(xp, np_name)(x, axis=axis).astype(index_dtype, copy=False)
    p.abstract_eval = _arg_abstract(name)
    p.batch = _arg_batch(p)
    defjvp_zero(p)
    return p


argmax_p = _arg_prim("argmax", "argmax")
argmin_p = _arg_prim("argmin", "argmin")

# ---------------------------------------------------------------------------------------------
# Cumulative ops along one axis, optionally from the end


def _cum_impl(name: str, accumulate: bool):
    """cumsum/cumprod keep the dtype; cummax/cummin are ufunc accumulations."""
    def impl(xp, x, *, axis, reverse):
        if reverse:
            x = xp.flip(x, axis)
        fn = getattr(xp, name)
        out = fn.accumulate(x, axis=axis) if accumulate else fn(x, axis=axis, dtype=x.dtype)
        return xp.flip(out, axis) if reverse else out
    return impl


def _cum_abstract(name):
    def abstract_eval(x, *, axis, reverse):
        if not 0 <= axis < x.ndim:
            raise core.type_error(name, f"axis {axis} out of range", [x])
        if x.dtype.kind == "b":
            raise core.type_error(name, "boolean operands are not supported", [x])
        return x
    return abstract_eval


def _cum_prim(name, xp_name, accumulate):
    p = core.Primitive(name)
    p.impl = _cum_impl(xp_name, accumulate)
    p.abstract_eval = _cum_abstract(name)
    p.batch = lambda args, dims, *, axis, reverse: (
        p.bind(args[0], axis=axis + (axis >= dims[0]), reverse=reverse), dims[0])
    return p


cumsum_p = _cum_prim("cumsum", "cumsum", False)
cumprod_p = _cum_prim("cumprod", "cumprod", False)
cummax_p = _cum_prim("cummax", "maximum", True)
cummin_p = _cum_prim("cummin", "minimum", True)

deflinear(cumsum_p, lambda ct, x, *, axis, reverse: [
    None if type(ct) is Zero else cumsum(ct, axis, not reverse)])


def _cumprod_jvp(primals, tangents, *, axis, reverse):
    """Zero-safe: scan the pairs (x, t) with (p1, d1) . (p2, d2) = (p1 p2, d1 p2 + p1 d2)."""
    (x,), (t,) = primals, tangents
    ans = cumprod(x, axis, reverse)
    if type(t) is Zero:
        return ans, Zero.like(ans)
    _, dt = associative_scan(lambda a, b: (ew.mul(a[0], b[0]), ew.mul(a[1], b[0]) + ew.mul(a[0], b[1])),
                             (x, t), reverse, axis)
    return ans, dt


cumprod_p.jvp = _cumprod_jvp


def _cum_extremum_jvp(primals, tangents, *, axis, reverse, prim):
    """The tangent at the latest position attaining the running extremum."""
    (x,), (t,) = primals, tangents
    ans = prim.bind(x, axis=axis, reverse=reverse)
    if type(t) is Zero:
        return ans, Zero.like(ans)
    running = ans
    if reverse:  # work in scan order
        x, t, running = (st.rev(v, (axis,)) for v in (x, t, ans))
    aval = core.get_aval(x)
    pos = st.broadcasted_iota(dtypes.int64, aval.shape, axis)
    latest = cummax(ew.select(ew.eq(x, running), pos, ew.full_like(pos, -1)), axis)
    from . import indexing
    out = indexing.take_along_axis(t, latest, axis)
    return ans, st.rev(out, (axis,)) if reverse else out


cummax_p.jvp = lambda p, t, **kw: _cum_extremum_jvp(p, t, prim=cummax_p, **kw)
cummin_p.jvp = lambda p, t, **kw: _cum_extremum_jvp(p, t, prim=cummin_p, **kw)


def associative_scan(fn, elems, reverse: bool = False, axis: int = 0):
    """``lax.associative_scan``: the inclusive scan of an associative ``fn`` over a pytree of
    arrays along ``axis`` (every leaf has the same length there), in O(log n) vectorized
    steps (Hillis-Steele doubling). ``fn`` takes and returns pytrees shaped like ``elems``.
    Differentiable."""
    from ..tree_util import tree_flatten, tree_unflatten     # tree_util imports numpy: us
    leaves, tree = tree_flatten(elems)
    if not leaves:
        raise ValueError("associative_scan: elems holds no arrays")
    shapes = [core.get_aval(e).shape for e in leaves]
    nd = len(shapes[0])
    if not -nd <= axis < nd or len({s[axis % nd] if len(s) == nd else None for s in shapes}) != 1:
        raise ValueError(f"associative_scan: every leaf of elems needs the same length along "
                         f"axis {axis}, got shapes {shapes}")
    axis %= nd
    n = shapes[0][axis]
    if reverse:
        leaves = [st.rev(e, (axis,)) for e in leaves]

    def combine(prev, cur):
        out, out_tree = tree_flatten(fn(tree_unflatten(tree, prev), tree_unflatten(tree, cur)))
        if out_tree != tree:
            raise TypeError(f"associative_scan: fn must return the structure of elems, {tree}; "
                            f"got {out_tree}")
        return out

    shift = 1
    while shift < n:
        combined = combine([st.slice_in_dim(e, 0, n - shift, 1, axis) for e in leaves],
                           [st.slice_in_dim(e, shift, n, 1, axis) for e in leaves])
        leaves = [st.concatenate([st.slice_in_dim(e, 0, shift, 1, axis), c], axis)
                  for e, c in zip(leaves, combined)]
        shift *= 2
    if reverse:
        leaves = [st.rev(e, (axis,)) for e in leaves]
    return tree_unflatten(tree, leaves)


# ---------------------------------------------------------------------------------------------
# lax-level functions

def _axes(x, axes):
    nd = core.get_aval(x).ndim
    if axes is None:
        return tuple(range(nd))
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(sorted(a % nd if nd else a for a in axes))


def _reducer(prim):
    def fn(x, axes=None):
        axes = _axes(x, axes)
        return prim.bind(x, axes=axes) if axes else x
    fn.__name__ = prim.name
    return fn


reduce_sum = _reducer(reduce_sum_p)
reduce_max = _reducer(reduce_max_p)
reduce_min = _reducer(reduce_min_p)
reduce_prod = _reducer(reduce_prod_p)
reduce_and = _reducer(reduce_and_p)
reduce_or = _reducer(reduce_or_p)


def argmax(x, axis: int, index_dtype=dtypes.int64):
    return argmax_p.bind(x, axis=int(axis) % core.get_aval(x).ndim, index_dtype=np.dtype(index_dtype))


def argmin(x, axis: int, index_dtype=dtypes.int64):
    return argmin_p.bind(x, axis=int(axis) % core.get_aval(x).ndim, index_dtype=np.dtype(index_dtype))


def _cum(prim):
    def fn(x, axis: int = 0, reverse: bool = False):
        return prim.bind(x, axis=int(axis) % core.get_aval(x).ndim, reverse=bool(reverse))
    fn.__name__ = prim.name
    return fn


cumsum, cumprod, cummax, cummin = _cum(cumsum_p), _cum(cumprod_p), _cum(cummax_p), _cum(cummin_p)
