"""Shape manipulation: reshape, transpose, stacking, splitting, tiling, flipping, padding.

Everything here is structural (reshape, transpose, broadcast, slice, concatenate, pad, rev,
gather with static indices), so it differentiates and batches through those primitives.
Sizes, counts and shifts must be static: a traced one is concretized (outside ``jit``).
"""
from __future__ import annotations

import builtins

import numpy as np

from .. import core
from ..core import Tracer
from ..primitives import elementwise as ew, indexing as ix, structural as st
from ._array import normalize_axes, normalize_axis, operand, promote, shape, static, tracing


def _ints(xs, what: str) -> tuple[int, ...]:
    """A static int or sequence of ints (traced entries concretized) as a tuple."""
    xs = static(xs, what)
    if isinstance(xs, (list, tuple)) or np.ndim(xs):
        return tuple(int(static(x, what)) for x in xs)
    return (int(xs),)


def _infer_shape(newshape, aval) -> tuple[int, ...]:
    """The requested shape with a -1 resolved; a trace-time error if it does not fit."""
    newshape = list(_ints(newshape, "a shape"))
    if newshape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    size = aval.size
    if -1 in newshape:
        known = int(np.prod([s for s in newshape if s != -1], dtype=np.int64))
        if known and not size % known:
            newshape[newshape.index(-1)] = size // known
    if -1 in newshape or int(np.prod(newshape, dtype=np.int64)) != size:
        raise core.type_error("reshape", f"cannot reshape an array of size {size} into shape "
                              f"{tuple(newshape)}", [aval])
    return tuple(newshape)


def reshape(a, /, shape=None, order="C", *, newshape=None, copy=None):
    """numpy.reshape (order 'C' or 'F')."""
    shape = newshape if shape is None else shape
    if not tracing():
        return np.reshape(a, shape, order=order, copy=copy)
    a = operand(a)
    if order == "F":
        out = st.reshape(st.transpose(a, tuple(reversed(range(a.ndim)))),
                         tuple(reversed(_infer_shape(shape, core.get_aval(a)))))
        return st.transpose(out, tuple(reversed(range(out.ndim))))
    if order not in ("C", "A"):
        raise NotImplementedError(f"reshape: order={order!r} is not supported")
    return st.reshape(a, _infer_shape(shape, core.get_aval(a)))


def ravel(a, order="C"):
    if not tracing():
        return np.ravel(a, order)
    return reshape(a, (-1,), order)


def transpose(a, axes=None):
    if not tracing():
        return np.transpose(a, axes)
    a = operand(a)
    if axes is None:
        return st.transpose(a, tuple(reversed(range(a.ndim))))
    axes = _ints(axes, "an axis")
    if len(axes) != a.ndim:
        raise ValueError("axes don't match array")
    return st.transpose(a, normalize_axes(axes, a.ndim))


def permute_dims(a, axes=None):
    return transpose(a, axes)


def matrix_transpose(x, /):
    if not tracing():
        return np.matrix_transpose(x)
    x = operand(x)
    if x.ndim < 2:
        raise ValueError("Input array must be at least 2-dimensional")
    return swapaxes(x, -1, -2)


def moveaxis(a, source, destination):
    if not tracing():
        return np.moveaxis(a, source, destination)
    a = operand(a)
    src, dst = normalize_axes(source, a.ndim), normalize_axes(destination, a.ndim)
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number of "
                         "elements")
    order = [i for i in range(a.ndim) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return st.transpose(a, tuple(order))


def swapaxes(a, axis1, axis2):
    if not tracing():
        return np.swapaxes(a, axis1, axis2)
    a = operand(a)
    perm = list(range(a.ndim))
    i, j = normalize_axis(axis1, a.ndim), normalize_axis(axis2, a.ndim)
    perm[i], perm[j] = perm[j], perm[i]
    return st.transpose(a, tuple(perm))


def rollaxis(a, axis, start=0):
    if not tracing():
        return np.rollaxis(a, axis, start)
    a = operand(a)
    n = a.ndim
    axis = normalize_axis(axis, n)
    if start < 0:
        start += n
    if not 0 <= start < n + 1:
        raise np.exceptions.AxisError(f"'start' arg requires {-n} <= start < {n + 1}, but "
                                      f"{start} was passed in")
    if axis < start:
        start -= 1
    perm = [i for i in range(n) if i != axis]
    perm.insert(start, axis)
    return st.transpose(a, tuple(perm))


def squeeze(a, axis=None):
    if not tracing():
        return np.squeeze(a, axis)
    a = operand(a)
    if axis is None:
        axes = tuple(i for i, n in enumerate(a.shape) if n == 1)
    else:
        axes = normalize_axes(axis, a.ndim)
        if builtins.any(a.shape[i] != 1 for i in axes):
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return st.squeeze(a, axes)


def expand_dims(a, axis):
    if not tracing():
        return np.expand_dims(a, axis)
    a = operand(a)
    n_new = 1 if isinstance(axis, (int, np.integer)) else len(axis)
    return st.expand_dims(a, normalize_axes(axis, a.ndim + n_new))


def broadcast_shapes(*shapes):
    return np.broadcast_shapes(*shapes)


def broadcast_to(array, shape):
    if not tracing():
        return np.broadcast_to(array, shape)
    a = operand(array)
    shape = _ints(shape, "a shape")
    if len(shape) < a.ndim or np.broadcast_shapes(a.shape, shape) != shape:
        raise ValueError(f"operands could not be broadcast together with remapped shapes "
                         f"[original->remapped]: {a.shape} and requested shape {shape}")
    return st.broadcast_to(a, shape)


def broadcast_arrays(*args):
    if not tracing():
        return np.broadcast_arrays(*args)
    args = [operand(a) for a in args]
    target = np.broadcast_shapes(*(a.shape for a in args))
    return tuple(st.broadcast_to(a, target) for a in args)


def _atleast(np_fn, arys, to_shape):
    if not tracing():
        return np_fn(*arys)
    out = tuple(st.reshape(a, to_shape(a.shape)) for a in map(operand, arys))
    return out[0] if len(out) == 1 else out


def atleast_1d(*arys):
    return _atleast(np.atleast_1d, arys, lambda s: s or (1,))


def atleast_2d(*arys):
    return _atleast(np.atleast_2d, arys, lambda s: (1,) * (2 - len(s)) + s if len(s) < 2 else s)


def atleast_3d(*arys):
    def to_shape(s):
        return {0: (1, 1, 1), 1: (1,) + s + (1,), 2: s + (1,)}.get(len(s), s)
    return _atleast(np.atleast_3d, arys, to_shape)


def concatenate(arrays, /, axis=0, out=None, *, dtype=None, casting="same_kind"):
    if not tracing():
        return np.concatenate(arrays, axis=axis, out=out, dtype=dtype, casting=casting)
    if out is not None:
        raise TypeError("concatenate: out= is not supported on traced values")
    arrays = [operand(a) for a in arrays]
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    if axis is None:
        arrays, axis = [st.reshape(a, (a.size,)) for a in arrays], 0
    if arrays[0].ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    arrays = promote(*arrays)
    if dtype is not None:
        arrays = [ew.convert_element_type(a, dtype) for a in arrays]
    return st.concatenate(arrays, normalize_axis(axis, arrays[0].ndim))


concat = concatenate


def stack(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    if not tracing():
        return np.stack(arrays, axis=axis, out=out, dtype=dtype, casting=casting)
    arrays = [operand(a) for a in arrays]
    if not arrays:
        raise ValueError("need at least one array to stack")
    if len({a.shape for a in arrays}) != 1:
        raise ValueError("all input arrays must have the same shape")
    ax = normalize_axis(axis, arrays[0].ndim + 1)
    return concatenate([st.expand_dims(a, (ax,)) for a in arrays], axis=ax, out=out, dtype=dtype)


def unstack(x, /, *, axis=0):
    """The slices of ``x`` along ``axis``, as a tuple."""
    if not tracing():
        return np.unstack(x, axis=axis)
    x = operand(x)
    ax = normalize_axis(axis, x.ndim)
    return tuple(st.squeeze(st.slice_in_dim(x, i, i + 1, 1, ax), (ax,)) for i in range(x.shape[ax]))


def hstack(tup, *, dtype=None, casting="same_kind"):
    if not tracing():
        return np.hstack(tup, dtype=dtype, casting=casting)
    arrs = [atleast_1d(a) for a in tup]
    return concatenate(arrs, axis=0 if arrs and arrs[0].ndim == 1 else 1, dtype=dtype)


def vstack(tup, *, dtype=None, casting="same_kind"):
    if not tracing():
        return np.vstack(tup, dtype=dtype, casting=casting)
    return concatenate([atleast_2d(a) for a in tup], axis=0, dtype=dtype)


row_stack = vstack


def dstack(tup):
    if not tracing():
        return np.dstack(tup)
    return concatenate([atleast_3d(a) for a in tup], axis=2)


def column_stack(tup):
    if not tracing():
        return np.column_stack(tup)
    cols = [operand(a) for a in tup]
    cols = [st.reshape(a, (a.size, 1)) if a.ndim < 2 else a for a in cols]
    return concatenate(cols, axis=1)


def append(arr, values, axis=None):
    """``concatenate((arr, values), axis)``; with ``axis=None`` both are flattened."""
    if not tracing():
        return np.append(arr, values, axis)
    return concatenate([operand(arr), operand(values)], axis=axis)


def _split_points(n: int, indices_or_sections, strict: bool) -> list[tuple[int, int]]:
    if np.ndim(indices_or_sections) == 0:
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError("number sections must be larger than 0.")
        if strict and n % sections:
            raise ValueError("array split does not result in an equal division")
        each, extra = builtins.divmod(n, sections)
        bounds = np.cumsum([0] + [each + 1] * extra + [each] * (sections - extra)).tolist()
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [n]
    # Each piece is the Python slice bounds[i]:bounds[i+1] (negative and out-of-range
    # indices resolved separately for each piece, as NumPy's sary[st:end]).
    pieces = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        start, stop, _ = builtins.slice(lo, hi).indices(n)
        pieces.append((start, builtins.max(start, stop)))
    return pieces


def _split(ary, indices_or_sections, axis, strict):
    a = operand(ary)
    ax = normalize_axis(axis, a.ndim)
    pieces = _split_points(a.shape[ax], static(indices_or_sections, "split points"), strict)
    return [st.slice_in_dim(a, lo, hi, 1, ax) for lo, hi in pieces]


def split(ary, indices_or_sections, axis=0):
    if not tracing():
        return np.split(ary, indices_or_sections, axis)
    return _split(ary, indices_or_sections, axis, strict=True)


def array_split(ary, indices_or_sections, axis=0):
    if not tracing():
        return np.array_split(ary, indices_or_sections, axis)
    return _split(ary, indices_or_sections, axis, strict=False)


def hsplit(ary, indices_or_sections):
    if not tracing():
        return np.hsplit(ary, indices_or_sections)
    if len(shape(ary)) == 0:
        raise ValueError("hsplit only works on arrays of 1 or more dimensions")
    return split(ary, indices_or_sections, axis=1 if len(shape(ary)) > 1 else 0)


def vsplit(ary, indices_or_sections):
    if not tracing():
        return np.vsplit(ary, indices_or_sections)
    if len(shape(ary)) < 2:
        raise ValueError("vsplit only works on arrays of 2 or more dimensions")
    return split(ary, indices_or_sections, axis=0)


def dsplit(ary, indices_or_sections):
    if not tracing():
        return np.dsplit(ary, indices_or_sections)
    if len(shape(ary)) < 3:
        raise ValueError("dsplit only works on arrays of 3 or more dimensions")
    return split(ary, indices_or_sections, axis=2)


def tile(A, reps):
    if not tracing():
        return np.tile(A, reps)
    a = operand(A)
    reps = _ints(reps, "tile repetitions")
    nd = builtins.max(a.ndim, len(reps))
    s = (1,) * (nd - a.ndim) + a.shape
    reps = (1,) * (nd - len(reps)) + reps
    # Broadcast to (r0, s0, r1, s1, ...) then merge the pairs.
    b = st.broadcast_in_dim(st.reshape(a, s), tuple(x for r, n in zip(reps, s) for x in (r, n)),
                            tuple(range(1, 2 * nd, 2)))
    return st.reshape(b, tuple(r * n for r, n in zip(reps, s)))


def _take_static(a, idx, axis: int):
    """``np.take(a, idx, axis)`` for a static integer index vector ``idx``."""
    idx = np.asarray(idx, np.int64)
    if idx.size == a.shape[axis] and np.array_equal(idx, np.arange(idx.size)):
        return a
    out = ix.gather(a, idx[:, None], (axis,))    # the gathered axis comes first
    return moveaxis(out, 0, axis) if axis else out


def repeat(a, repeats, axis=None):
    if not tracing():
        return np.repeat(a, repeats, axis)
    a = operand(a)
    if axis is None:
        a, axis = st.reshape(a, (a.size,)), 0
    ax = normalize_axis(axis, a.ndim)
    reps = np.asarray(static(repeats, "the repeat counts"))
    if reps.ndim == 0:
        r = int(reps)
        if r < 0:
            raise ValueError("repeats may not contain negative values.")
        s = a.shape
        b = st.broadcast_in_dim(a, s[:ax + 1] + (r,) + s[ax + 1:],
                                tuple(i for i in range(len(s) + 1) if i != ax + 1))
        return st.reshape(b, s[:ax] + (s[ax] * r,) + s[ax + 1:])
    return _take_static(a, np.repeat(np.arange(a.shape[ax]), reps), ax)


def flip(m, axis=None):
    if not tracing():
        return np.flip(m, axis)
    m = operand(m)
    return st.rev(m, normalize_axes(axis, m.ndim))


def fliplr(m):
    if not tracing():
        return np.fliplr(m)
    if len(shape(m)) < 2:
        raise ValueError("Input must be >= 2-d.")
    return flip(m, 1)


def flipud(m):
    if not tracing():
        return np.flipud(m)
    if len(shape(m)) < 1:
        raise ValueError("Input must be >= 1-d.")
    return flip(m, 0)


def roll(a, shift, axis=None):
    if not tracing():
        return np.roll(a, shift, axis)
    a = operand(a)
    if axis is None:
        return st.reshape(roll(st.reshape(a, (a.size,)), shift, 0), a.shape)
    pairs = np.broadcast(np.asarray(static(shift, "the roll shift")), np.asarray(axis))
    shifts = [0] * a.ndim
    for sh, ax in pairs:
        shifts[normalize_axis(ax, a.ndim)] += int(sh)
    for ax, sh in enumerate(shifts):
        n = a.shape[ax]
        k = sh % n if n else 0
        if k:
            a = st.concatenate([st.slice_in_dim(a, n - k, n, 1, ax),
                                st.slice_in_dim(a, 0, n - k, 1, ax)], ax)
    return a


def rot90(m, k=1, axes=(0, 1)):
    if not tracing():
        return np.rot90(m, k, axes)
    m = operand(m)
    axes = tuple(axes)
    if len(axes) != 2:
        raise ValueError("len(axes) must be 2.")
    a0, a1 = (normalize_axis(x, m.ndim) for x in axes)
    if a0 == a1:
        raise ValueError("Axes must be different.")
    k %= 4
    if k == 0:
        return m
    if k == 2:
        return flip(flip(m, a0), a1)
    if k == 1:
        return swapaxes(flip(m, a1), a0, a1)
    return flip(swapaxes(m, a0, a1), a1)


# --- padding ------------------------------------------------------------------------------------


def _pad_widths(pad_width, nd) -> list[tuple[int, int]]:
    pw = np.asarray(static(pad_width, "pad widths"))
    if pw.dtype.kind not in "iu":
        raise TypeError("`pad_width` must be of integral type.")
    pw = np.broadcast_to(pw.reshape(-1, 2) if pw.ndim else pw, (nd, 2))
    if np.any(pw < 0):
        raise ValueError("index can't contain negative values")
    return [(int(lo), int(hi)) for lo, hi in pw]


def _pad_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Which source position fills each position of an axis padded by (lo, hi)."""
    k = np.arange(-lo, n + hi)
    if mode == "wrap":
        return k % n
    if mode == "symmetric":
        j = k % (2 * n)
        return np.where(j >= n, 2 * n - 1 - j, j)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(k)
        period = 2 * (n - 1)
        j = np.abs(k) % period
        return np.where(j >= n, period - j, j)
    raise AssertionError(mode)


def _pad_stat(a, ax, lo, hi, mode, stat_length):
    """Pad axis ``ax`` with a statistic (maximum, minimum, mean) of the edge region."""
    from . import _reductions as red_fns
    n = a.shape[ax]
    lengths = _pad_widths(n if stat_length is None else stat_length, a.ndim)[ax]
    parts = []
    for width, (start, stop) in ((lo, (0, builtins.min(lengths[0], n))),
                                 (hi, (n - builtins.min(lengths[1], n), n))):
        if stop <= start and mode != "mean":
            raise ValueError("stat_length of 0 yields no value for padding")
        region = st.slice_in_dim(a, start, stop, 1, ax)
        if mode == "mean":
            stat = _round_if_int(red_fns.mean(region, axis=ax, keepdims=True), a.dtype)
        else:
            stat = getattr(red_fns, mode[:3])(region, axis=ax, keepdims=True)
        shape = a.shape[:ax] + (width,) + a.shape[ax + 1:]
        parts.append(st.broadcast_to(stat, shape))
    return st.concatenate([parts[0], a, parts[1]], ax)


def _round_if_int(x, dtype):
    if dtype.kind in "iu":
        x = ew.round(x)
    return ew.convert_element_type(x, dtype)


def pad(array, pad_width, mode="constant", **kwargs):
    """numpy.pad for the modes constant, edge, reflect, symmetric, wrap, maximum, minimum,
    mean and empty (which pads with zeros)."""
    if not tracing():
        return np.pad(array, pad_width, mode, **kwargs)
    a = operand(array)
    widths = _pad_widths(pad_width, a.ndim)
    if mode in ("constant", "empty"):
        value = kwargs.get("constant_values", 0) if mode == "constant" else 0
        return _pad_constant(a, widths, value)
    if kwargs.get("reflect_type", "even") != "even":
        raise NotImplementedError("pad: reflect_type='odd' is not supported on traced values")
    for ax, (lo, hi) in enumerate(widths):
        if lo == hi == 0:
            continue
        n = a.shape[ax]
        if n == 0:
            raise ValueError(f"can't extend empty axis {ax} using modes other than 'constant' "
                             "or 'empty'")
        if mode == "edge":
            first, last = st.slice_in_dim(a, 0, 1, 1, ax), st.slice_in_dim(a, n - 1, n, 1, ax)
            grow = lambda edge, w: st.broadcast_to(edge, a.shape[:ax] + (w,) + a.shape[ax + 1:])
            a = st.concatenate([grow(first, lo), a, grow(last, hi)], ax)
        elif mode in ("wrap", "reflect", "symmetric"):
            a = _take_static(a, _pad_index(n, lo, hi, mode), ax)
        elif mode in ("maximum", "minimum", "mean"):
            a = _pad_stat(a, ax, lo, hi, mode, kwargs.get("stat_length"))
        else:
            raise NotImplementedError(f"pad mode {mode!r} is not supported on traced values")
    return a


def _pad_constant(a, widths, constant_values):
    if type(constant_values) is Tracer:
        cv = ew.convert_element_type(constant_values, a.dtype)
        if cv.ndim:
            raise NotImplementedError("pad: traced constant_values must be a scalar")
        return st.pad(a, cv, [(lo, hi, 0) for lo, hi in widths])
    cv = np.asarray(constant_values)
    if cv.ndim == 0:
        return st.pad(a, cv.astype(a.dtype), [(lo, hi, 0) for lo, hi in widths])
    # Per-axis (before, after) values: pad one axis at a time (later axes fill the corners).
    cvs = np.broadcast_to(cv.reshape(-1, 2), (a.ndim, 2)).astype(a.dtype)
    for ax, (lo, hi) in enumerate(widths):
        for value, config in ((cvs[ax][0], (lo, 0, 0)), (cvs[ax][1], (0, hi, 0))):
            cfg = [(0, 0, 0)] * a.ndim
            cfg[ax] = config
            a = st.pad(a, value, cfg)
    return a


# --- differences --------------------------------------------------------------------------------


def diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    if not tracing():
        return np.diff(a, n, axis, prepend, append)
    if n == 0:
        return a
    if n < 0:
        raise ValueError("order must be non-negative but got " + repr(n))
    a = operand(a)
    if a.ndim == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    ax = normalize_axis(axis, a.ndim)
    parts = [_diff_edge(v, a, ax) for v in (prepend,) if v is not np._NoValue] + [a] + \
            [_diff_edge(v, a, ax) for v in (append,) if v is not np._NoValue]
    if len(parts) > 1:
        a = concatenate(parts, axis=ax)
    for _ in range(n):
        m = a.shape[ax]
        hi = st.slice_in_dim(a, builtins.min(1, m), m, 1, ax)
        lo = st.slice_in_dim(a, 0, builtins.max(m - 1, 0), 1, ax)
        a = ew.ne(hi, lo) if a.dtype.kind == "b" else ew.sub(hi, lo)
    return a


def _diff_edge(v, a, ax):
    v = operand(v)
    if v.ndim == 0:
        return st.broadcast_to(v, a.shape[:ax] + (1,) + a.shape[ax + 1:])
    return v


def ediff1d(ary, to_end=None, to_begin=None):
    """Differences of the flattened array, with optional values before and after (cast to
    the array's dtype)."""
    if not tracing():
        return np.ediff1d(ary, to_end, to_begin)
    a = operand(ary)
    a = st.reshape(a, (a.size,))
    d = ew.sub(st.slice_in_dim(a, builtins.min(1, a.size), a.size, 1, 0),
               st.slice_in_dim(a, 0, builtins.max(a.size - 1, 0), 1, 0))
    extra = lambda v: ew.convert_element_type(ravel(operand(v)), a.dtype)
    parts = ([extra(to_begin)] if to_begin is not None else []) + [d] + \
            ([extra(to_end)] if to_end is not None else [])
    return st.concatenate(parts, 0)
