"""Structural primitives: they move, copy or rearrange elements without arithmetic.

broadcast_in_dim, reshape, transpose, squeeze, expand_dims, rev, slice, pad, concatenate,
iota. All are linear, so each has a transpose rule; each entry below gives impl, shape rule,
transpose and batching rule together. (Indexing primitives -- gather, scatter,
dynamic_slice, dynamic_update_slice -- and sort live in ``indexing.py``.)
"""
from __future__ import annotations

import builtins

import numpy as np

from .. import core, dtypes
from ..core import ShapedArray
from ..interpreters import ad
from ..interpreters.ad import Zero, deflinear, defjvp_zero
from . import elementwise as ew, reduction


def _prim(name: str, impl, abstract_eval, transpose, batch) -> core.Primitive:
    p = core.Primitive(name)
    p.impl, p.abstract_eval, p.batch = impl, abstract_eval, batch
    deflinear(p, transpose)
    return p


def _norm_axes(name: str, axes, ndim: int, avals=()) -> tuple[int, ...]:
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise core.type_error(name, f"axis {a} is out of range for rank {ndim}", avals)
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise core.type_error(name, f"repeated axis in {tuple(axes)}", avals)
    return tuple(out)


def _zero_ct(ct):
    return type(ct) is Zero


def _zero_scalar(x):
    """A scalar 0 of ``x``'s dtype (a literal under tracing)."""
    return np.zeros((), core.get_aval(x).dtype)


# ---------------------------------------------------------------------------------------------
# broadcast_in_dim(x, shape, broadcast_dimensions): x's axis i becomes output axis dims[i].

def _bid_impl(xp, x, *, shape, broadcast_dimensions):
    x = xp.asarray(x)
    expanded = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        expanded[d] = x.shape[i]
    return xp.broadcast_to(x.reshape(expanded), shape)


def _bid_abstract(x, *, shape, broadcast_dimensions):
    if len(broadcast_dimensions) != x.ndim:
        raise core.type_error("broadcast_in_dim", f"broadcast_dimensions {broadcast_dimensions} "
                              f"must have one entry per operand axis", [x])
    if any(not 0 <= d < len(shape) for d in broadcast_dimensions) or \
            list(broadcast_dimensions) != sorted(set(broadcast_dimensions)):
        raise core.type_error("broadcast_in_dim", f"broadcast_dimensions {broadcast_dimensions} "
                              f"must be increasing axes of the output shape {shape}", [x])
    for i, d in enumerate(broadcast_dimensions):
        if x.shape[i] not in (1, shape[d]):
            raise core.type_error("broadcast_in_dim", f"operand axis {i} of size {x.shape[i]} "
                                  f"cannot broadcast to size {shape[d]} of shape {shape}", [x])
    return ShapedArray(shape, x.dtype, x.weak_type)


def _bid_transpose(ct, x, *, shape, broadcast_dimensions):
    if _zero_ct(ct):
        return [None]
    kept = set(broadcast_dimensions)
    summed = tuple(i for i in range(len(shape)) if i not in kept)
    ones = tuple(d for i, d in enumerate(broadcast_dimensions)
                 if x.aval.shape[i] == 1 and shape[d] != 1)
    out = reduction.reduce_sum(ct, summed + ones) if summed or ones else ct
    return [reshape(out, x.aval.shape)]


def _bid_batch(args, dims, *, shape, broadcast_dimensions):
    (x,), (d,) = args, dims
    x_shape = core.get_aval(x).shape
    # Output batch axis goes first; operand axes shift by one.
    new_dims = [0 if i == d else broadcast_dimensions[i - (i > d)] + 1 for i in range(len(x_shape))]
    order = sorted(range(len(x_shape)), key=lambda i: new_dims[i])
    if order != list(range(len(x_shape))):
        x = transpose(x, tuple(order))
        new_dims = [new_dims[i] for i in order]
    return broadcast_in_dim(x, (x_shape[d],) + tuple(shape), tuple(new_dims)), 0


broadcast_in_dim_p = _prim("broadcast_in_dim", _bid_impl, _bid_abstract, _bid_transpose, _bid_batch)


def broadcast_in_dim(x, shape, broadcast_dimensions):
    shape, dims = tuple(int(s) for s in shape), tuple(int(d) for d in broadcast_dimensions)
    if core.get_aval(x).shape == shape and dims == tuple(range(len(shape))):
        return x
    return broadcast_in_dim_p.bind(x, shape=shape, broadcast_dimensions=dims)


def broadcast_to(x, shape):
    """numpy.broadcast_to semantics (trailing alignment)."""
    shape = tuple(shape)
    nd = core.get_aval(x).ndim
    return broadcast_in_dim(x, shape, tuple(range(len(shape) - nd, len(shape))))


def full(shape, value, dtype):
    """An array of ``shape`` filled with ``value``: a broadcast scalar under tracing."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if not core.is_tracing():
        return np.full(shape, value, dtype)
    scalar = np.asarray(value, dtype) if not isinstance(value, core.Tracer) else \
        ew.convert_element_type(value, dtype)
    return broadcast_in_dim(scalar, shape, ())


# ---------------------------------------------------------------------------------------------
# reshape(x, new_sizes)

def _reshape_abstract(x, *, new_sizes):
    if int(np.prod(new_sizes, dtype=np.int64)) != x.size or any(s < 0 for s in new_sizes):
        raise core.type_error("reshape", f"cannot reshape to {new_sizes}", [x])
    return ShapedArray(new_sizes, x.dtype, x.weak_type)


def _reshape_batch(args, dims, *, new_sizes):
    (x,), (d,) = args, dims
    from ..interpreters.batching import moveaxis
    x = moveaxis(x, d, 0)
    return reshape(x, (core.get_aval(x).shape[0],) + new_sizes), 0


reshape_p = _prim("reshape", lambda xp, x, *, new_sizes: xp.reshape(x, new_sizes), _reshape_abstract,
                  lambda ct, x, *, new_sizes: [None if _zero_ct(ct) else reshape(ct, x.aval.shape)],
                  _reshape_batch)


def reshape(x, new_sizes):
    new_sizes = tuple(int(s) for s in new_sizes)
    if core.get_aval(x).shape == new_sizes:
        return x
    return reshape_p.bind(x, new_sizes=new_sizes)


# ---------------------------------------------------------------------------------------------
# transpose(x, permutation)

def _transpose_abstract(x, *, permutation):
    if sorted(permutation) != list(range(x.ndim)):
        raise core.type_error("transpose", f"{permutation} is not a permutation of the axes", [x])
    return ShapedArray(tuple(x.shape[p] for p in permutation), x.dtype, x.weak_type)


def _transpose_transpose(ct, x, *, permutation):
    if _zero_ct(ct):
        return [None]
    return [transpose(ct, tuple(np.argsort(permutation)))]


def _transpose_batch(args, dims, *, permutation):
    (x,), (d,) = args, dims
    perm = (d,) + tuple(p + (p >= d) for p in permutation)
    return transpose(x, perm), 0


transpose_p = _prim("transpose", lambda xp, x, *, permutation: xp.transpose(x, permutation),
                    _transpose_abstract, _transpose_transpose, _transpose_batch)


def transpose(x, permutation):
    permutation = tuple(int(p) for p in permutation)
    if permutation == tuple(range(len(permutation))):
        return x
    return transpose_p.bind(x, permutation=permutation)


# ---------------------------------------------------------------------------------------------
# squeeze(x, dimensions) and expand_dims(x, dimensions): inverse reshapes of each other.

def _squeeze_abstract(x, *, dimensions):
    dims = _norm_axes("squeeze", dimensions, x.ndim, [x])
    if any(x.shape[d] != 1 for d in dims):
        raise core.type_error("squeeze", f"cannot squeeze axes {dimensions} of size != 1", [x])
    return ShapedArray(tuple(s for i, s in enumerate(x.shape) if i not in dims), x.dtype, x.weak_type)


def _expand_dims_abstract(x, *, dimensions):
    nd = x.ndim + len(dimensions)
    dims = _norm_axes("expand_dims", dimensions, nd, [x])
    shape = iter(x.shape)
    return ShapedArray(tuple(1 if i in dims else next(shape) for i in range(nd)), x.dtype, x.weak_type)


def _shift_dims(dimensions, d_out_batch):
    return tuple(a + (a >= d_out_batch) for a in dimensions)


def _squeeze_batch(args, dims, *, dimensions):
    (x,), (d,) = args, dims
    nd = core.get_aval(x).ndim - 1
    axes = tuple(a % nd for a in dimensions)
    from ..interpreters.batching import moveaxis
    x = moveaxis(x, d, 0)
    return squeeze(x, tuple(a + 1 for a in axes)), 0


def _expand_dims_batch(args, dims, *, dimensions):
    (x,), (d,) = args, dims
    nd = core.get_aval(x).ndim - 1 + len(dimensions)
    axes = tuple(a % nd for a in dimensions)
    from ..interpreters.batching import moveaxis
    x = moveaxis(x, d, 0)
    return expand_dims(x, tuple(a + 1 for a in axes)), 0


squeeze_p = _prim("squeeze", lambda xp, x, *, dimensions: xp.squeeze(x, dimensions), _squeeze_abstract,
                  lambda ct, x, *, dimensions: [None if _zero_ct(ct) else reshape(ct, x.aval.shape)],
                  _squeeze_batch)
expand_dims_p = _prim("expand_dims", lambda xp, x, *, dimensions: xp.expand_dims(x, dimensions),
                      _expand_dims_abstract,
                      lambda ct, x, *, dimensions: [None if _zero_ct(ct) else reshape(ct, x.aval.shape)],
                      _expand_dims_batch)


def squeeze(x, dimensions):
    dims = _norm_axes("squeeze", tuple(dimensions), core.get_aval(x).ndim)
    return squeeze_p.bind(x, dimensions=dims) if dims else x


def expand_dims(x, dimensions):
    dims = _norm_axes("expand_dims", tuple(dimensions), core.get_aval(x).ndim + len(tuple(dimensions)))
    return expand_dims_p.bind(x, dimensions=dims) if dims else x


# ---------------------------------------------------------------------------------------------
# rev(x, dimensions): reverse the order along axes

def _rev_abstract(x, *, dimensions):
    _norm_axes("rev", dimensions, x.ndim, [x])
    return x


rev_p = _prim("rev", lambda xp, x, *, dimensions: xp.flip(x, dimensions), _rev_abstract,
              lambda ct, x, *, dimensions: [None if _zero_ct(ct) else rev(ct, dimensions)],
              lambda args, dims, *, dimensions: (rev(args[0], _shift_dims(dimensions, dims[0])), dims[0]))


def rev(x, dimensions):
    dims = _norm_axes("rev", tuple(dimensions), core.get_aval(x).ndim)
    return rev_p.bind(x, dimensions=dims) if dims else x


# ---------------------------------------------------------------------------------------------
# slice(x, start_indices, limit_indices, strides): static strided slicing

def _slice_impl(xp, x, *, start_indices, limit_indices, strides):
    return x[tuple(builtins.slice(s, l, st) for s, l, st in zip(start_indices, limit_indices, strides))]


def _slice_abstract(x, *, start_indices, limit_indices, strides):
    if not (len(start_indices) == len(limit_indices) == len(strides) == x.ndim):
        raise core.type_error("slice", "start/limit/strides need one entry per axis", [x])
    shape = []
    for s, l, st, n in zip(start_indices, limit_indices, strides, x.shape):
        if not (0 <= s <= l <= n) or st < 1:
            raise core.type_error("slice", f"invalid slice {s}:{l}:{st} of an axis of size {n}", [x])
        shape.append((l - s + st - 1) // st)
    return ShapedArray(tuple(shape), x.dtype, x.weak_type)


def _slice_transpose(ct, x, *, start_indices, limit_indices, strides):
    if _zero_ct(ct):
        return [None]
    out_shape = core.get_aval(ct).shape
    config = []
    for s, st, n, m in zip(start_indices, strides, x.aval.shape, out_shape):
        used = s + (m - 1) * st + 1 if m else s
        config.append((s, n - used, st - 1) if m else (s, n - s, 0))
    return [pad(ct, _zero_scalar(ct), tuple(config))]


def _slice_batch(args, dims, *, start_indices, limit_indices, strides):
    (x,), (d,) = args, dims
    n = core.get_aval(x).shape[d]
    ins = lambda t, v: t[:d] + (v,) + t[d:]
    return slice_p.bind(x, start_indices=ins(start_indices, 0), limit_indices=ins(limit_indices, n),
                        strides=ins(strides, 1)), d


slice_p = _prim("slice", _slice_impl, _slice_abstract, _slice_transpose, _slice_batch)


def slice(x, start_indices, limit_indices, strides=None):
    shape = core.get_aval(x).shape
    start = tuple(int(s) for s in start_indices)
    limit = tuple(int(l) for l in limit_indices)
    strides = (1,) * len(shape) if strides is None else tuple(int(s) for s in strides)
    if start == (0,) * len(shape) and limit == shape and strides == (1,) * len(shape):
        return x
    return slice_p.bind(x, start_indices=start, limit_indices=limit, strides=strides)


def slice_in_dim(x, start: int, limit: int, stride: int = 1, axis: int = 0):
    shape = core.get_aval(x).shape
    starts = [0] * len(shape)
    limits = list(shape)
    strides = [1] * len(shape)
    starts[axis], limits[axis], strides[axis] = start, limit, stride
    return slice(x, starts, limits, strides)


# ---------------------------------------------------------------------------------------------
# pad(x, padding_value, padding_config): per axis (lo, hi, interior); lo/hi may be negative.

def _pad_impl(xp, x, padding_value, *, padding_config):
    shape = _pad_shape(x.shape, padding_config)
    # Pad with the non-negative parts, then crop the negative ones.
    grown = [max(lo, 0) + (n - 1) * (i + 1) + 1 + max(hi, 0) if n else max(lo, 0) + max(hi, 0)
             for n, (lo, hi, i) in zip(x.shape, padding_config)]
    out = xp.full(grown, padding_value, dtype=x.dtype)
    if x.size:
        out[tuple(builtins.slice(max(lo, 0), max(lo, 0) + (n - 1) * (i + 1) + 1, i + 1)
                  for n, (lo, hi, i) in zip(x.shape, padding_config))] = x
    crop = tuple(builtins.slice(-min(lo, 0), -min(lo, 0) + s)
                 for s, (lo, hi, i) in zip(shape, padding_config))
    return out[crop]


def _pad_shape(shape, config):
    return tuple(lo + hi + n + max(n - 1, 0) * i for n, (lo, hi, i) in zip(shape, config))


def _pad_abstract(x, padding_value, *, padding_config):
    if padding_value.shape != () or padding_value.dtype != x.dtype:
        raise core.type_error("pad", "padding value must be a scalar of the operand's dtype",
                              [x, padding_value])
    if len(padding_config) != x.ndim or any(i < 0 for _, _, i in padding_config):
        raise core.type_error("pad", f"bad padding_config {padding_config}", [x])
    shape = _pad_shape(x.shape, padding_config)
    if any(s < 0 for s in shape):
        raise core.type_error("pad", f"padding_config {padding_config} gives negative sizes", [x])
    return ShapedArray(shape, x.dtype, x.weak_type)


def _pad_transpose(ct, x, padding_value, *, padding_config):
    if _zero_ct(ct):
        return [None, None]
    # The operand's share: undo the edge padding (re-adding cropped parts as zeros), then
    # drop the interior padding with a strided slice. The padding value gets the rest.
    unpadded = pad(ct, _zero_scalar(ct), tuple((-lo, -hi, 0) for lo, hi, _ in padding_config))
    shape = core.get_aval(unpadded).shape
    part = slice(unpadded, (0,) * len(shape), shape, tuple(i + 1 for _, _, i in padding_config))
    ct_pv = None
    if ad.is_undefined(padding_value):
        everything = tuple(range(len(shape)))
        ct_pv = reduction.reduce_sum(ct, everything) - reduction.reduce_sum(part, everything)
    return [part if ad.is_undefined(x) else None, ct_pv]


def _pad_batch(args, dims, *, padding_config):
    (x, pv), (d, dpv) = args, dims
    if dpv is None:
        config = padding_config[:d] + ((0, 0, 0),) + padding_config[d:]
        return pad(x, pv, config), d
    # A batched padding value: pad with zeros, then select the per-row value where padded.
    from ..interpreters.batching import move_to_front_or_broadcast
    size = core.get_aval(pv).shape[dpv]
    x = move_to_front_or_broadcast(x, d, size)
    config = ((0, 0, 0),) + padding_config
    padded = pad(x, _zero_scalar(x), config)
    mask = pad(full(core.get_aval(x).shape, False, dtypes.bool_), np.bool_(True), config)
    out_shape = core.get_aval(padded).shape
    pv = broadcast_in_dim(move_to_front_or_broadcast(pv, dpv, size), out_shape, (0,))
    return ew.select(mask, pv, padded), 0


pad_p = _prim("pad", _pad_impl, _pad_abstract, _pad_transpose, _pad_batch)


def pad(x, padding_value, padding_config):
    config = tuple((int(lo), int(hi), int(i)) for lo, hi, i in padding_config)
    return pad_p.bind(x, padding_value, padding_config=config)


# ---------------------------------------------------------------------------------------------
# concatenate(*xs, dimension)

def _concat_abstract(*xs, dimension):
    if not xs:
        raise core.type_error("concatenate", "needs at least one operand")
    x0 = xs[0]
    if not 0 <= dimension < max(x0.ndim, 1):
        raise core.type_error("concatenate", f"dimension {dimension} out of range", xs)
    for x in xs:
        if x.ndim != x0.ndim or x.dtype != x0.dtype or any(
                a != b for i, (a, b) in enumerate(zip(x.shape, x0.shape)) if i != dimension):
            raise core.type_error("concatenate", "operands must have equal dtypes and equal "
                                  f"shapes except along dimension {dimension}", xs)
    shape = list(x0.shape)
    shape[dimension] = sum(x.shape[dimension] for x in xs)
    return ShapedArray(tuple(shape), x0.dtype, all(x.weak_type for x in xs))


def _concat_transpose(ct, *xs, dimension):
    if _zero_ct(ct):
        return [None] * len(xs)
    out, start = [], 0
    for x in xs:
        n = (x.aval if ad.is_undefined(x) else core.get_aval(x)).shape[dimension]
        out.append(slice_in_dim(ct, start, start + n, 1, dimension) if ad.is_undefined(x) else None)
        start += n
    return out


def _concat_batch(args, dims, *, dimension):
    from ..interpreters.batching import batch_size, move_to_front_or_broadcast
    size = batch_size(args, dims)
    moved = [move_to_front_or_broadcast(x, d, size) for x, d in zip(args, dims)]
    return concatenate(moved, dimension + 1), 0


concatenate_p = _prim("concatenate", lambda xp, *xs, dimension: xp.concatenate(xs, axis=dimension),
                      _concat_abstract, _concat_transpose, _concat_batch)


def concatenate(xs, dimension: int):
    xs = list(xs)
    if len(xs) == 1:
        return xs[0]
    return concatenate_p.bind(*xs, dimension=int(dimension))


# ---------------------------------------------------------------------------------------------
# iota(dtype, shape, dimension): 0, 1, 2, ... along one axis

def _iota_impl(xp, *, dtype, shape, dimension):
    r = xp.arange(shape[dimension], dtype=dtype)
    return xp.broadcast_to(r.reshape([n if i == dimension else 1 for i, n in enumerate(shape)]), shape)


def _iota_abstract(*, dtype, shape, dimension):
    if not 0 <= dimension < len(shape):
        raise core.type_error("iota", f"dimension {dimension} out of range for shape {shape}")
    return ShapedArray(shape, dtype)


iota_p = core.Primitive("iota")
iota_p.impl = _iota_impl
iota_p.abstract_eval = _iota_abstract
iota_p.batch = lambda args, dims, **params: (iota_p.bind(**params), None)  # never has inputs
defjvp_zero(iota_p)


def iota(dtype, size: int):
    return iota_p.bind(dtype=np.dtype(dtype), shape=(int(size),), dimension=0)


def broadcasted_iota(dtype, shape, dimension: int):
    return iota_p.bind(dtype=np.dtype(dtype), shape=tuple(int(s) for s in shape), dimension=int(dimension))
