"""Indexing primitives: gather, scatter, dynamic_slice, dynamic_update_slice, sort.

* ``gather(operand, indices, axes)`` is NumPy advanced indexing on ``axes``: ``indices`` has
  shape ``S + (len(axes),)`` and the result has shape ``S + (operand's other axes, in order)``.
* ``scatter(operand, indices, updates, axes, mode)`` is its inverse: ``updates`` has the shape
  gather would return and is written into a copy of ``operand`` (``set``: the last write wins,
  as NumPy's ``x[idx] = v``) or combined with it (``add``, ``mul``, ``min``, ``max``: repeated
  indices accumulate, as ``np.add.at``).
* ``dynamic_slice`` / ``dynamic_update_slice`` take (possibly traced) scalar start indices,
  clamped so that the window stays inside the operand (as XLA does).
* ``sort`` sorts several operands along one axis by the first ``num_keys`` of them, stably.

Indices follow NumPy, not XLA: negative indices count from the end, and out-of-range indices
raise ``IndexError`` when the impl runs (JAX clamps or drops them instead). Batching rules fold
the batch into the indices (an iota over the batch axis); none loops over the batch.
"""
from __future__ import annotations

import numpy as np

from .. import core, dtypes
from ..core import ShapedArray
from ..interpreters import ad, batching
from ..interpreters.ad import Zero, is_undefined
from . import elementwise as ew, structural as st

SCATTER_MODES = ("set", "add", "mul", "min", "max")
_UFUNC_OF_MODE = {"add": "add", "mul": "multiply", "min": "minimum", "max": "maximum"}
INDEX_DTYPE = dtypes.int64    # iotas, permutations and windows (numpy's intp)


def _aval(x) -> ShapedArray:
    return x.aval if is_undefined(x) else core.get_aval(x)


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _moved(xp, x, axes):
    """A view of ``x`` with ``axes`` first, in order (writes go through to ``x``)."""
    k = len(axes)
    return x if axes == tuple(range(k)) else xp.moveaxis(x, axes, tuple(range(k)))


def _index_tuple(indices, k: int) -> tuple:
    return tuple(indices[..., j] for j in range(k))


def _check_bounds(xp, prim: str, shape, indices, axes) -> None:
    """Raise NumPy's IndexError for out-of-range indices on array modules that do not: CuPy
    wraps them around (no device sync); this check costs one."""
    if xp is not np:
        limits = xp.asarray([shape[a] for a in axes], dtype=indices.dtype)
        if bool(((indices < -limits) | (indices >= limits)).any()):
            raise _bounds_error(prim, shape, indices.get(), axes)


def _bounds_error(prim: str, shape, indices, axes) -> IndexError:
    """NumPy's message, naming the operand's own axis (not the axis of a moved view)."""
    idx = np.asarray(indices)
    for j, a in enumerate(axes):
        col = idx[..., j]
        bad = (col < -shape[a]) | (col >= shape[a])
        if bad.any():
            return IndexError(f"{prim}: index {int(col[bad].flat[0])} is out of bounds for "
                              f"axis {a} with size {shape[a]}")
    return IndexError(f"{prim}: index out of bounds for shape {tuple(shape)}")


def _check_indices(name: str, operand: ShapedArray, indices: ShapedArray, axes, avals) -> None:
    if not dtypes.is_integer(indices.dtype):
        raise core.type_error(name, "indices must be an integer array", avals)
    if not axes or indices.ndim < 1 or indices.shape[-1] != len(axes):
        raise core.type_error(name, f"indices must have shape S + ({len(axes)},) for "
                              f"axes={axes} (at least one axis)", avals)
    if any(not 0 <= a < operand.ndim for a in axes) or len(set(axes)) != len(axes):
        raise core.type_error(name, f"axes={axes} must be distinct axes of the operand", avals)


def _gathered_shape(operand_shape, indices_shape, axes) -> tuple[int, ...]:
    rest = tuple(n for i, n in enumerate(operand_shape) if i not in axes)
    return tuple(indices_shape[:-1]) + rest


def _prepend_batch_index(indices):
    """``indices`` batched along axis 0, shape ``(B, ..., k)`` -> ``(B, ..., k + 1)`` whose
    first index is the batch position: the batch becomes one more indexed operand axis."""
    aval = core.get_aval(indices)
    if np.iinfo(aval.dtype).max < aval.shape[0]:
        indices = ew.convert_element_type(indices, INDEX_DTYPE)
        aval = core.get_aval(indices)
    iota = st.broadcasted_iota(aval.dtype, aval.shape[:-1] + (1,), 0)
    return st.concatenate([iota, indices], aval.ndim - 1)


def _shift_axes(axes, d: int) -> tuple[int, ...]:
    """Per-example operand axes -> axes of the operand batched at ``d``."""
    return tuple(a + (a >= d) for a in axes)


def _batch_position_in_rest(axes, d: int, n_index: int) -> int:
    """Where the batch axis ``d`` of the operand lands in a gather result (or scatter update)
    when it is not an indexed axis: after the index axes, among the remaining axes."""
    return n_index + d - sum(a < d for a in axes)


# ---------------------------------------------------------------------------------------------
# gather(operand, indices, axes)


def _gather_impl(xp, operand, indices, *, axes):
    _check_bounds(xp, "gather", operand.shape, indices, axes)
    try:
        return _moved(xp, operand, axes)[_index_tuple(indices, len(axes))]
    except IndexError:
        raise _bounds_error("gather", operand.shape, indices, axes) from None


def _gather_abstract(operand, indices, *, axes):
    _check_indices("gather", operand, indices, axes, [operand, indices])
    return ShapedArray(_gathered_shape(operand.shape, indices.shape, axes), operand.dtype,
                       operand.weak_type)


def _gather_jvp(primals, tangents, *, axes):
    (operand, indices), (t, _) = primals, tangents
    out = gather(operand, indices, axes)
    return out, (Zero.like(out) if type(t) is Zero else gather(t, indices, axes))


def _gather_transpose(ct, operand, indices, *, axes):
    if type(ct) is Zero:
        return [None, None]
    return [scatter_add(ad.zeros(operand.aval), indices, ct, axes), None]


def _gather_batch(args, dims, *, axes):
    (operand, indices), (d, di) = args, dims
    n_index = core.get_aval(indices).ndim - 1
    if di is None:                       # batch axis: one of the operand axes taken whole
        axes = _shift_axes(axes, d)
        return gather(operand, indices, axes), _batch_position_in_rest(axes, d, n_index)
    if d is None:                        # batch axis: one of the index axes
        if di == n_index:                # (it was last, after the index vector: move it)
            indices, di = batching.moveaxis(indices, di, 0), 0
        return gather(operand, indices, axes), di
    operand = batching.moveaxis(operand, d, 0)
    indices = _prepend_batch_index(batching.moveaxis(indices, di, 0))
    return gather(operand, indices, (0,) + _shift_axes(axes, 0)), 0


gather_p = core.Primitive("gather")
gather_p.impl = _gather_impl
gather_p.abstract_eval = _gather_abstract
gather_p.jvp = _gather_jvp
gather_p.transpose = _gather_transpose
gather_p.batch = _gather_batch

# ---------------------------------------------------------------------------------------------
# scatter(operand, indices, updates, axes, mode)


def _scatter_impl(xp, operand, indices, updates, *, axes, mode):
    _check_bounds(xp, f"scatter-{mode}", operand.shape, indices, axes)
    out = xp.array(operand, order="C")   # a copy (inputs are never mutated), C-contiguous
    try:
        if mode == "set":
            _moved(xp, out, axes)[_index_tuple(indices, len(axes))] = updates
        else:
            _ufunc_at(xp, getattr(xp, _UFUNC_OF_MODE[mode]), out, indices, updates, axes)
    except IndexError:
        raise _bounds_error(f"scatter-{mode}", operand.shape, indices, axes) from None
    return out


def _ufunc_at(xp, ufunc, out, indices, updates, axes) -> None:
    """``ufunc.at`` in place. NumPy's ``ufunc.at`` is several times faster on 1-D data, so
    updates that span whole rows (embedding gradients) go into the flattened array; a single
    index (``x[i]``'s gradient) cannot repeat, so it is an ordinary in-place update."""
    if indices.ndim == 1:
        view = _moved(xp, out, axes)
        where = _index_tuple(indices, len(axes))
        view[where] = ufunc(view[where], updates)
        return
    rest = [i for i in range(out.ndim) if i not in axes]
    if not rest or xp is not np:
        ufunc.at(_moved(xp, out, axes), _index_tuple(indices, len(axes)), updates)
        return
    strides = np.cumprod((1,) + out.shape[:0:-1])[::-1]
    flat = np.zeros(indices.shape[:-1], np.intp)
    for j, a in enumerate(axes):
        col, n = indices[..., j], out.shape[a]
        if col.size and (col.min() < -n or col.max() >= n):
            raise IndexError
        flat += np.where(col < 0, col + n, col) * strides[a]
    for r in rest:
        flat = flat[..., None] + np.arange(out.shape[r]) * strides[r]
    ufunc.at(out.reshape(-1), flat.reshape(-1), np.broadcast_to(updates, flat.shape).reshape(-1))


def _scatter_abstract(operand, indices, updates, *, axes, mode):
    avals = [operand, indices, updates]
    if mode not in SCATTER_MODES:
        raise core.type_error("scatter", f"mode {mode!r} is not one of {SCATTER_MODES}", avals)
    _check_indices(f"scatter-{mode}", operand, indices, axes, avals)
    expected = _gathered_shape(operand.shape, indices.shape, axes)
    if updates.shape != expected or updates.dtype != operand.dtype:
        raise core.type_error(f"scatter-{mode}", f"updates must have the operand's dtype and "
                              f"shape {expected} (index shape + the operand's other axes)", avals)
    return ShapedArray(operand.shape, operand.dtype, operand.weak_type)


def _zeros_like_aval(x):
    return ad.zeros(_aval(x))


def _add_jvp(out, operand, indices, updates, t_op, t_up, axes):
    if type(t_up) is Zero:
        return t_op
    return scatter_add(ad.instantiate(t_op), indices, t_up, axes)


def _set_jvp(out, operand, indices, updates, t_op, t_up, axes):
    return scatter(ad.instantiate(t_op), indices, ad.instantiate(t_up), axes, "set")


def _mul_jvp(out, operand, indices, updates, t_op, t_up, axes):
    """d out = t_op * (product of the updates at each position)
             + sum over updates u of operand * t_u * (product of the other updates at u's place).
    """
    ones = ew.ones_like(operand)
    tangent = None
    if type(t_op) is not Zero:
        tangent = ew.mul(t_op, scatter_mul(ones, indices, updates, axes))
    if type(t_up) is not Zero:
        others = _product_of_others(indices, updates, ones, axes)
        weight = ew.mul(gather(operand, indices, axes), others)
        part = scatter_add(ew.zeros_like(operand), indices, ew.mul(t_up, weight), axes)
        tangent = part if tangent is None else ew.add(tangent, part)
    return tangent


def _product_of_others(indices, updates, ones, axes):
    """For each update, the product of the other updates written to its position, without
    dividing by zero: from the product P of the others' nonzero values, the number Z of the
    others that are zero, and the sum S of those (whose value is 0 but whose derivative is the
    sum of their derivatives): P if Z == 0, S * P if Z == 1, else 0. Its value is exact, and
    so is its derivative (second derivatives of scatter-mul are exact everywhere)."""
    def per_update(values, mode):       # combine at each position, read back per update
        return gather(scatter(ones if mode == "mul" else ew.zeros_like(ones), indices, values,
                              axes, mode), indices, axes)

    nonzero = ew.ne(updates, 0)
    safe = ew.select(nonzero, updates, ew.ones_like(updates))
    zero_part = ew.select(nonzero, ew.zeros_like(updates), updates)     # value 0
    is_zero = ew.convert_element_type(ew.bitwise_not(nonzero), core.get_aval(updates).dtype)
    p = ew.div(per_update(safe, "mul"), safe)
    z = ew.sub(per_update(is_zero, "add"), is_zero)
    s = ew.sub(per_update(zero_part, "add"), zero_part)
    return ew.select(ew.eq(z, 0), p, ew.select(ew.eq(z, 1), ew.mul(s, p), ew.zeros_like(updates)))


def _extremum_jvp(out, operand, indices, updates, t_op, t_up, axes):
    """The tangent of whichever of operand and updates attains the extremum; ties share it
    equally (as reduce_max does)."""
    dtype = core.get_aval(operand).dtype
    op_wins = ew.convert_element_type(ew.eq(operand, out), dtype)
    up_wins = ew.convert_element_type(ew.eq(updates, gather(out, indices, axes)), dtype)
    count = ew.add(op_wins, scatter_add(ew.zeros_like(operand), indices, up_wins, axes))
    total = None
    if type(t_op) is not Zero:
        total = ew.mul(t_op, op_wins)
    if type(t_up) is not Zero:
        part = scatter_add(ew.zeros_like(operand), indices, ew.mul(t_up, up_wins), axes)
        total = part if total is None else ew.add(total, part)
    return ew.div(total, count)


_SCATTER_JVPS = {"add": _add_jvp, "set": _set_jvp, "mul": _mul_jvp, "min": _extremum_jvp,
                 "max": _extremum_jvp}


def _scatter_jvp(primals, tangents, *, axes, mode):
    (operand, indices, updates), (t_op, _, t_up) = primals, tangents
    out = scatter(operand, indices, updates, axes, mode)
    if type(t_op) is Zero and type(t_up) is Zero:
        return out, Zero.like(out)
    return out, _SCATTER_JVPS[mode](out, operand, indices, updates, t_op, t_up, axes)


def _last_writers(indices, updates_aval: ShapedArray, operand_shape, axes):
    """For scatter-set: which entries of ``updates`` are the last write to their position."""
    ids = st.reshape(st.iota(INDEX_DTYPE, updates_aval.size), updates_aval.shape)
    last = scatter(st.full(operand_shape, -1, INDEX_DTYPE), indices, ids, axes, "set")
    return ew.eq(gather(last, indices, axes), ids)


def _scatter_transpose(ct, operand, indices, updates, *, axes, mode):
    if mode not in ("add", "set"):
        raise NotImplementedError(f"scatter-{mode} is not linear: it has no transpose")
    if type(ct) is Zero:
        return [None, None, None]
    ct_op = ct_up = None
    if mode == "add":
        ct_op = ct if is_undefined(operand) else None
        if is_undefined(updates):
            ct_up = gather(ct, indices, axes)
        return [ct_op, None, ct_up]
    if is_undefined(operand):            # overwritten positions get nothing
        ct_op = scatter(ct, indices, _zeros_like_aval(updates), axes, "set")
    if is_undefined(updates):            # only the last write to a position is seen
        up_aval = _aval(updates)
        winners = _last_writers(indices, up_aval, _aval(operand).shape, axes)
        ct_up = ew.select(winners, gather(ct, indices, axes), ad.zeros(up_aval))
    return [ct_op, None, ct_up]


def _scatter_batch(args, dims, *, axes, mode):
    (operand, indices, updates), (d, di, du) = args, dims
    size = batching.batch_size(args, dims)
    if di is None:       # the batch is one more operand axis that every update spans
        if d is None:
            operand, d = batching.broadcast_batch(operand, size, 0), 0
        axes = _shift_axes(axes, d)
        n_index = core.get_aval(indices).ndim - 1
        position = _batch_position_in_rest(axes, d, n_index)
        updates = batching.match_out_dim(updates, du, position, size)
        return scatter(operand, indices, updates, axes, mode), d
    operand = batching.move_to_front_or_broadcast(operand, d, size)
    indices = _prepend_batch_index(batching.moveaxis(indices, di, 0))
    updates = batching.move_to_front_or_broadcast(updates, du, size)
    return scatter(operand, indices, updates, (0,) + _shift_axes(axes, 0), mode), 0


scatter_p = core.Primitive("scatter")
scatter_p.impl = _scatter_impl
scatter_p.abstract_eval = _scatter_abstract
scatter_p.jvp = _scatter_jvp
scatter_p.transpose = _scatter_transpose
scatter_p.batch = _scatter_batch

# ---------------------------------------------------------------------------------------------
# dynamic_slice(operand, *start_indices, slice_sizes) and
# dynamic_update_slice(operand, update, *start_indices)


def _clamped_window(starts, shape, sizes) -> tuple:
    return tuple(slice(c, c + k) for c, k in
                 ((min(max(int(s), 0), n - k), k) for s, n, k in zip(starts, shape, sizes)))


def _check_starts(name: str, operand: ShapedArray, starts, avals) -> None:
    if len(starts) != operand.ndim:
        raise core.type_error(name, f"needs one start index per operand axis ({operand.ndim}), "
                              f"got {len(starts)}", avals)
    if any(s.shape != () or not dtypes.is_integer(s.dtype) for s in starts):
        raise core.type_error(name, "start indices must be integer scalars", avals)


def _ds_impl(xp, operand, *starts, slice_sizes):
    return operand[_clamped_window(starts, operand.shape, slice_sizes)]


def _ds_abstract(operand, *starts, slice_sizes):
    avals = [operand, *starts]
    _check_starts("dynamic_slice", operand, starts, avals)
    if len(slice_sizes) != operand.ndim or any(
            not 0 <= k <= n for k, n in zip(slice_sizes, operand.shape)):
        raise core.type_error("dynamic_slice", f"slice_sizes {slice_sizes} must fit in the "
                              "operand", avals)
    return ShapedArray(slice_sizes, operand.dtype, operand.weak_type)


def _ds_jvp(primals, tangents, *, slice_sizes):
    (operand, *starts), t = primals, tangents[0]
    out = dynamic_slice(operand, starts, slice_sizes)
    return out, (Zero.like(out) if type(t) is Zero else dynamic_slice(t, starts, slice_sizes))


def _ds_transpose(ct, operand, *starts, slice_sizes):
    if type(ct) is Zero:
        return [None] * (1 + len(starts))
    return [dynamic_update_slice(ad.zeros(operand.aval), ct, starts)] + [None] * len(starts)


def _window_indices(starts, start_dims, shape, sizes, size: int):
    """Indices (batch first) of the windows at batched start indices, for gather/scatter:
    ``(indices of shape (B, *window) + (len(axes),), axes)`` over the axes the window does
    not cover whole. Starts are clamped as dynamic_slice clamps them."""
    axes = tuple(i for i, (n, k) in enumerate(zip(shape, sizes)) if k < n)
    window = (size,) + tuple(sizes[i] for i in axes)
    columns = []
    for j, i in enumerate(axes):
        s = ew.convert_element_type(starts[i], INDEX_DTYPE)
        if start_dims[i] is not None:
            s = batching.moveaxis(s, start_dims[i], 0)
        s = ew.clamp(s, 0, shape[i] - sizes[i])
        s = st.broadcast_in_dim(s, window, (0,) if start_dims[i] is not None else ())
        pos = ew.add(s, st.broadcasted_iota(INDEX_DTYPE, window, j + 1))
        columns.append(st.reshape(pos, window + (1,)))
    return (st.concatenate(columns, len(window)) if columns else None), axes


def _window_layout(axes, ndim: int) -> tuple[int, ...]:
    """Per-example axes in gather-result order: the window axes, then the others."""
    return tuple(axes) + tuple(i for i in range(ndim) if i not in axes)


def _ds_batch(args, dims, *, slice_sizes):
    (operand, *starts), (d, *start_dims) = args, dims
    size = batching.batch_size(args, dims)
    if all(sd is None for sd in start_dims):
        starts.insert(d, 0)
        sizes = slice_sizes[:d] + (size,) + slice_sizes[d:]
        return dynamic_slice_p.bind(operand, *starts, slice_sizes=sizes), d
    shape = core.get_aval(operand).shape
    if d is not None:
        operand = batching.moveaxis(operand, d, 0)
        shape = shape[:d] + shape[d + 1:]
    indices, axes = _window_indices(starts, start_dims, shape, slice_sizes, size)
    if indices is None:                  # every axis is taken whole: the operand itself
        return operand, (None if d is None else 0)
    if d is None:
        out = gather(operand, indices, axes)
    else:
        out = gather(operand, _prepend_batch_index(indices), (0,) + _shift_axes(axes, 0))
    layout = _window_layout(axes, len(shape))
    return st.transpose(out, (0,) + tuple(1 + layout.index(i) for i in range(len(shape)))), 0


dynamic_slice_p = core.Primitive("dynamic_slice")
dynamic_slice_p.impl = _ds_impl
dynamic_slice_p.abstract_eval = _ds_abstract
dynamic_slice_p.jvp = _ds_jvp
dynamic_slice_p.transpose = _ds_transpose
dynamic_slice_p.batch = _ds_batch


def _dus_impl(xp, operand, update, *starts):
    out = xp.array(operand)
    out[_clamped_window(starts, operand.shape, update.shape)] = update
    return out


def _dus_abstract(operand, update, *starts):
    avals = [operand, update, *starts]
    _check_starts("dynamic_update_slice", operand, starts, avals)
    if update.dtype != operand.dtype or update.ndim != operand.ndim or any(
            k > n for k, n in zip(update.shape, operand.shape)):
        raise core.type_error("dynamic_update_slice", "the update must have the operand's dtype "
                              "and rank, and fit inside it", avals)
    return ShapedArray(operand.shape, operand.dtype, operand.weak_type)


def _dus_jvp(primals, tangents):
    (operand, update, *starts), (t_op, t_up) = primals, tangents[:2]
    out = dynamic_update_slice(operand, update, starts)
    if type(t_op) is Zero and type(t_up) is Zero:
        return out, Zero.like(out)
    return out, dynamic_update_slice(ad.instantiate(t_op), ad.instantiate(t_up), starts)


def _dus_transpose(ct, operand, update, *starts):
    if type(ct) is Zero:
        return [None] * (2 + len(starts))
    ct_op = ct_up = None
    if is_undefined(operand):
        ct_op = dynamic_update_slice(ct, _zeros_like_aval(update), starts)
    if is_undefined(update):
        ct_up = dynamic_slice(ct, starts, _aval(update).shape)
    return [ct_op, ct_up] + [None] * len(starts)


def _dus_batch(args, dims):
    (operand, update, *starts), (d, du, *start_dims) = args, dims
    size = batching.batch_size(args, dims)
    shape = core.get_aval(operand).shape
    if d is not None:
        shape = shape[:d] + shape[d + 1:]
    operand = batching.move_to_front_or_broadcast(operand, d, size)
    update = batching.move_to_front_or_broadcast(update, du, size)
    if all(sd is None for sd in start_dims):
        return dynamic_update_slice(operand, update, [0] + starts), 0
    sizes = core.get_aval(update).shape[1:]
    indices, axes = _window_indices(starts, start_dims, shape, sizes, size)
    if indices is None:                  # the update covers the whole operand
        return update, 0
    layout = _window_layout(axes, len(shape))
    update = st.transpose(update, (0,) + tuple(1 + i for i in layout))
    return scatter(operand, _prepend_batch_index(indices), update, (0,) + _shift_axes(axes, 0),
                   "set"), 0


dynamic_update_slice_p = core.Primitive("dynamic_update_slice")
dynamic_update_slice_p.impl = _dus_impl
dynamic_update_slice_p.abstract_eval = _dus_abstract
dynamic_update_slice_p.jvp = _dus_jvp
dynamic_update_slice_p.transpose = _dus_transpose
dynamic_update_slice_p.batch = _dus_batch

# ---------------------------------------------------------------------------------------------
# sort(*operands, dimension, num_keys): stable, lexicographic by the first num_keys operands


def _sort_impl(xp, *operands, dimension, num_keys):
    stable = {"kind": "stable"} if xp is np else {}
    if len(operands) == 1:
        return [xp.sort(operands[0], axis=dimension, **stable)]
    if num_keys == 1:
        perm = xp.argsort(operands[0], axis=dimension, **stable)
    else:
        perm = xp.lexsort(operands[num_keys - 1::-1], axis=dimension)  # last key is primary
    return [xp.take_along_axis(x, perm, axis=dimension) for x in operands]


def _sort_abstract(*operands, dimension, num_keys):
    if not operands:
        raise core.type_error("sort", "needs at least one operand")
    shape = operands[0].shape
    if any(x.shape != shape for x in operands):
        raise core.type_error("sort", "operands must have equal shapes", operands)
    if not 0 <= dimension < len(shape):
        raise core.type_error("sort", f"dimension {dimension} is out of range", operands)
    if not 1 <= num_keys <= len(operands):
        raise core.type_error("sort", f"num_keys={num_keys} must be in [1, {len(operands)}]",
                              operands)
    return list(operands)


def _sort_jvp(primals, tangents, *, dimension, num_keys):
    if all(type(t) is Zero for t in tangents):
        outs = sort_p.bind(*primals, dimension=dimension, num_keys=num_keys)
        return outs, [Zero.like(o) for o in outs]
    shape = core.get_aval(primals[0]).shape
    iota = st.broadcasted_iota(INDEX_DTYPE, shape, dimension)
    *outs, perm = sort_p.bind(*primals, iota, dimension=dimension, num_keys=num_keys)
    return outs, [Zero.like(o) if type(t) is Zero else take_along_axis(t, perm, dimension)
                  for o, t in zip(outs, tangents)]


def _sort_batch(args, dims, *, dimension, num_keys):
    size = batching.batch_size(args, dims)
    moved = [batching.move_to_front_or_broadcast(x, d, size) for x, d in zip(args, dims)]
    return sort_p.bind(*moved, dimension=dimension + 1, num_keys=num_keys), [0] * len(args)


sort_p = core.Primitive("sort", multiple_results=True)
sort_p.impl = _sort_impl
sort_p.abstract_eval = _sort_abstract
sort_p.jvp = _sort_jvp
sort_p.batch = _sort_batch

# ---------------------------------------------------------------------------------------------
# lax-level functions


def gather(operand, indices, axes):
    """``operand[idx]`` with ``indices[..., j]`` indexing ``axes[j]``; see the module doc."""
    return gather_p.bind(operand, indices, axes=tuple(int(a) for a in axes))


def scatter(operand, indices, updates, axes, mode: str = "set"):
    """A copy of ``operand`` with ``updates`` written (or combined, per ``mode``) at the
    positions ``gather(operand, indices, axes)`` reads."""
    return scatter_p.bind(operand, indices, updates, axes=tuple(int(a) for a in axes), mode=mode)


def scatter_add(operand, indices, updates, axes):
    return scatter(operand, indices, updates, axes, "add")


def scatter_mul(operand, indices, updates, axes):
    return scatter(operand, indices, updates, axes, "mul")


def scatter_min(operand, indices, updates, axes):
    return scatter(operand, indices, updates, axes, "min")


def scatter_max(operand, indices, updates, axes):
    return scatter(operand, indices, updates, axes, "max")


def index_take(src, idxs, axes):
    """``src`` indexed on ``axes[j]`` by the (equally shaped) integer arrays ``idxs[j]``."""
    cols = [st.reshape(i, core.get_aval(i).shape + (1,)) for i in idxs]
    return gather(src, st.concatenate(cols, core.get_aval(cols[0]).ndim - 1), axes)


def dynamic_slice(operand, start_indices, slice_sizes):
    """The window of ``slice_sizes`` at ``start_indices`` (clamped to stay in bounds)."""
    return dynamic_slice_p.bind(operand, *start_indices,
                                slice_sizes=tuple(int(k) for k in slice_sizes))


def dynamic_update_slice(operand, update, start_indices):
    """``operand`` with the window at ``start_indices`` (clamped) replaced by ``update``."""
    return dynamic_update_slice_p.bind(operand, update, *start_indices)


def _in_dim(operand, index, axis: int):
    nd = core.get_aval(operand).ndim
    axis = int(axis) % nd
    return [0] * axis + [index] + [0] * (nd - axis - 1), axis


def dynamic_slice_in_dim(operand, start_index, slice_size: int, axis: int = 0):
    starts, axis = _in_dim(operand, start_index, axis)
    sizes = list(core.get_aval(operand).shape)
    sizes[axis] = slice_size
    return dynamic_slice(operand, starts, sizes)


def dynamic_index_in_dim(operand, index, axis: int = 0, keepdims: bool = True):
    out = dynamic_slice_in_dim(operand, index, 1, axis)
    return out if keepdims else st.squeeze(out, (axis,))


def dynamic_update_slice_in_dim(operand, update, start_index, axis: int):
    starts, _ = _in_dim(operand, start_index, axis)
    return dynamic_update_slice(operand, update, starts)


def dynamic_update_index_in_dim(operand, update, index, axis: int):
    nd = core.get_aval(operand).ndim
    if core.get_aval(update).ndim == nd - 1:
        update = st.expand_dims(update, (int(axis) % nd,))
    return dynamic_update_slice_in_dim(operand, update, index, axis)


def sort(operand, dimension: int = -1, num_keys: int = 1):
    """Sort an array, or a sequence of equally shaped arrays by their first ``num_keys``
    (lexicographically, stably) along ``dimension``."""
    single = not isinstance(operand, (list, tuple))
    operands = [operand] if single else list(operand)
    nd = core.get_aval(operands[0]).ndim
    if not -nd <= dimension < nd:
        raise core.type_error("sort", f"dimension {dimension} is out of range for rank {nd}",
                              [core.get_aval(x) for x in operands])
    outs = sort_p.bind(*operands, dimension=int(dimension) % nd, num_keys=int(num_keys))
    return outs[0] if single else tuple(outs)


def sort_key_val(keys, values, dimension: int = -1):
    return sort([keys, values], dimension)


def argsort(operand, dimension: int = -1):
    """Stable argsort: the permutation (int64) that sorts ``operand`` along ``dimension``."""
    nd = core.get_aval(operand).ndim
    dimension = int(dimension) % nd
    iota = st.broadcasted_iota(INDEX_DTYPE, core.get_aval(operand).shape, dimension)
    return sort([operand, iota], dimension)[1]


def take_along_axis(x, indices, axis: int):
    """``numpy.take_along_axis``: ``indices`` broadcasts against ``x`` except along ``axis``.

    Folds every other axis into one row axis so that the gather index has two columns."""
    x_aval, i_aval = core.get_aval(x), core.get_aval(indices)
    if x_aval.ndim != i_aval.ndim or x_aval.ndim == 0 or not dtypes.is_integer(i_aval.dtype):
        raise core.type_error("take_along_axis", "indices must be an integer array of the "
                              "operand's rank", [x_aval, i_aval])
    axis = int(axis) % x_aval.ndim
    x = batching.moveaxis(x, axis, -1)
    indices = batching.moveaxis(indices, axis, -1)
    n, m = x_aval.shape[axis], i_aval.shape[axis]
    lead = np.broadcast_shapes(core.get_aval(x).shape[:-1], core.get_aval(indices).shape[:-1])
    rows = int(np.prod(lead, dtype=np.int64))
    x = st.reshape(st.broadcast_to(x, lead + (n,)), (rows, n))
    indices = ew.convert_element_type(indices, INDEX_DTYPE)
    indices = st.reshape(st.broadcast_to(indices, lead + (m,)), (rows, m, 1))
    row_index = st.broadcasted_iota(INDEX_DTYPE, (rows, m, 1), 0)
    out = gather(x, st.concatenate([row_index, indices], 2), (0, 1))
    return batching.moveaxis(st.reshape(out, lead + (m,)), -1, axis)
