"""Shape manipulation: reshape, transpose, stacking, splitting, tiling, flipping, padding."""
from __future__ import annotations

import builtins

import numpy as np

from .. import core
from ..primitives import elementwise as ew, structural as st
from ._array import asarray, normalize_axes, normalize_axis, operand, promote, shape, tracing, value


def _infer_shape(newshape, size: int) -> tuple[int, ...]:
    if isinstance(newshape, (int, np.integer)):
        newshape = (int(newshape),)
    newshape = [int(value(s)) for s in newshape]
    if newshape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if -1 in newshape:
        known = int(np.prod([s for s in newshape if s != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape array of size {size} into shape {tuple(newshape)}")
        newshape[newshape.index(-1)] = size // known
    if int(np.prod(newshape, dtype=np.int64)) != size:
        raise ValueError(f"cannot reshape array of size {size} into shape {tuple(newshape)}")
    return tuple(newshape)


def reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    shape = newshape if shape is None else shape
    if not tracing():
        return np.reshape(a, shape, order=order)
    if order != "C":
        raise NotImplementedError("funcgrad.numpy.reshape supports order='C' only")
    a = operand(a)
    return st.reshape(a, _infer_shape(shape, core.get_aval(a).size))


def ravel(a, order="C"):
    return reshape(a, (-1,), order)


def transpose(a, axes=None):
    if not tracing():
        return np.transpose(a, axes)
    a = operand(a)
    nd = core.get_aval(a).ndim
    axes = tuple(reversed(range(nd))) if axes is None else tuple(normalize_axis(x, nd) for x in axes)
    return st.transpose(a, axes)


def permute_dims(a, axes=None):
    return transpose(a, axes)


def matrix_transpose(x):
    nd = len(shape(x))
    if nd < 2:
        raise ValueError("matrix_transpose needs an array of rank >= 2")
    return swapaxes(x, -1, -2)


def moveaxis(a, source, destination):
    if not tracing():
        return np.moveaxis(a, source, destination)
    a = operand(a)
    nd = core.get_aval(a).ndim
    src = normalize_axes(source, nd)
    dst = normalize_axes(destination, nd)
    if len(src) != len(dst):
        raise ValueError("source and destination must have the same number of elements")
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return st.transpose(a, tuple(order))


def swapaxes(a, axis1, axis2):
    if not tracing():
        return np.swapaxes(a, axis1, axis2)
    a = operand(a)
    nd = core.get_aval(a).ndim
    perm = list(range(nd))
    i, j = normalize_axis(axis1, nd), normalize_axis(axis2, nd)
    perm[i], perm[j] = perm[j], perm[i]
    return st.transpose(a, tuple(perm))


def rollaxis(a, axis, start=0):
    nd = len(shape(a))
    axis = normalize_axis(axis, nd)
    start = start % (nd + 1) if start < 0 else start
    if axis < start:
        start -= 1
    return moveaxis(a, axis, start)


def squeeze(a, axis=None):
    if not tracing():
        return np.squeeze(a, axis)
    a = operand(a)
    s = core.get_aval(a).shape
    if axis is None:
        axes = tuple(i for i, n in enumerate(s) if n == 1)
    else:
        axes = normalize_axes(axis, len(s))
        if any(s[i] != 1 for i in axes):
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return st.squeeze(a, axes)


def expand_dims(a, axis):
    if not tracing():
        return np.expand_dims(a, axis)
    a = operand(a)
    n_new = 1 if isinstance(axis, (int, np.integer)) else len(axis)
    axes = normalize_axes(axis, core.get_aval(a).ndim + n_new)
    return st.expand_dims(a, axes)


def broadcast_shapes(*shapes):
    return np.broadcast_shapes(*shapes)


def broadcast_to(array, shape):
    if not tracing():
        return np.broadcast_to(array, shape)
    a = operand(array)
    shape = tuple(int(s) for s in ((shape,) if isinstance(shape, int) else shape))
    np.broadcast_shapes(core.get_aval(a).shape, shape)  # raises numpy's error on mismatch
    if len(shape) < core.get_aval(a).ndim or np.broadcast_shapes(core.get_aval(a).shape, shape) != shape:
        raise ValueError(f"cannot broadcast a {core.get_aval(a).shape} array to shape {shape}")
    return st.broadcast_to(a, shape)


def broadcast_arrays(*args):
    if not tracing():
        return np.broadcast_arrays(*args)
    args = [operand(a) for a in args]
    target = np.broadcast_shapes(*(core.get_aval(a).shape for a in args))
    return [st.broadcast_to(a, target) for a in args]


def _atleast(arys, nd, fn):
    out = [fn(operand(a)) if tracing() else getattr(np, f"atleast_{nd}d")(a) for a in arys]
    return out[0] if len(out) == 1 else out


def atleast_1d(*arys):
    return _atleast(arys, 1, lambda a: st.reshape(a, (1,)) if core.get_aval(a).ndim == 0 else a)


def atleast_2d(*arys):
    def fn(a):
        s = core.get_aval(a).shape
        return st.reshape(a, (1,) * (2 - len(s)) + s) if len(s) < 2 else a
    return _atleast(arys, 2, fn)


def atleast_3d(*arys):
    def fn(a):
        s = core.get_aval(a).shape
        if len(s) == 0:
            return st.reshape(a, (1, 1, 1))
        if len(s) == 1:
            return st.reshape(a, (1,) + s + (1,))
        if len(s) == 2:
            return st.reshape(a, s + (1,))
        return a
    return _atleast(arys, 3, fn)


def concatenate(arrays, axis=0, dtype=None):
    if not tracing():
        return np.concatenate(arrays, axis=axis, dtype=dtype)
    arrays = [operand(a) for a in arrays]
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    arrays = promote(*arrays)
    if dtype is not None:
        arrays = [ew.convert_element_type(a, dtype) for a in arrays]
    nd = core.get_aval(arrays[0]).ndim
    if nd == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    return st.concatenate(arrays, normalize_axis(axis, nd))


concat = concatenate


def stack(arrays, axis=0, dtype=None):
    if not tracing():
        return np.stack(arrays, axis=axis, dtype=dtype)
    arrays = [operand(a) for a in arrays]
    if not arrays:
        raise ValueError("need at least one array to stack")
    shapes = {core.get_aval(a).shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError("all input arrays must have the same shape")
    nd = core.get_aval(arrays[0]).ndim + 1
    ax = normalize_axis(axis, nd)
    return concatenate([st.expand_dims(a, (ax,)) for a in arrays], axis=ax, dtype=dtype)


def hstack(tup, dtype=None):
    if not tracing():
        return np.hstack(tup, dtype=dtype)
    arrs = [atleast_1d(a) for a in tup]
    return concatenate(arrs, axis=0 if core.get_aval(arrs[0]).ndim == 1 else 1, dtype=dtype)


def vstack(tup, dtype=None):
    if not tracing():
        return np.vstack(tup, dtype=dtype)
    return concatenate([atleast_2d(a) for a in tup], axis=0, dtype=dtype)


row_stack = vstack


def dstack(tup, dtype=None):
    if not tracing():
        return np.dstack(tup)
    return concatenate([atleast_3d(a) for a in tup], axis=2, dtype=dtype)


def column_stack(tup):
    if not tracing():
        return np.column_stack(tup)
    cols = []
    for a in tup:
        a = operand(a)
        cols.append(st.reshape(a, (core.get_aval(a).shape[0], 1)) if core.get_aval(a).ndim < 2 else a)
    return concatenate(cols, axis=1)


def _split_points(n: int, indices_or_sections, strict: bool) -> list[int]:
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError("number sections must be larger than 0.")
        if strict and n % sections:
            raise ValueError("array split does not result in an equal division")
        each, extra = divmod(n, sections)
        sizes = [each + 1] * extra + [each] * (sections - extra)
        return list(np.cumsum([0] + sizes))
    idx = [builtins.min(builtins.max(int(i) if i >= 0 else n + int(i), 0), n) for i in indices_or_sections]
    return [0] + idx + [n]


def split(ary, indices_or_sections, axis=0):
    return _split(ary, indices_or_sections, axis, strict=True)


def array_split(ary, indices_or_sections, axis=0):
    return _split(ary, indices_or_sections, axis, strict=False)


def _split(ary, indices_or_sections, axis, strict):
    if not tracing():
        fn = np.split if strict else np.array_split
        return fn(ary, indices_or_sections, axis)
    a = operand(ary)
    s = core.get_aval(a).shape
    ax = normalize_axis(axis, len(s))
    pts = _split_points(s[ax], indices_or_sections, strict)
    return [st.slice_in_dim(a, builtins.min(p, q), q, 1, ax) for p, q in zip(pts[:-1], pts[1:])]


def hsplit(ary, indices_or_sections):
    return split(ary, indices_or_sections, axis=1 if len(shape(ary)) > 1 else 0)


def vsplit(ary, indices_or_sections):
    return split(ary, indices_or_sections, axis=0)


def tile(A, reps):
    if not tracing():
        return np.tile(A, reps)
    a = operand(A)
    reps = (int(reps),) if isinstance(reps, (int, np.integer)) else tuple(int(r) for r in reps)
    s = core.get_aval(a).shape
    nd = builtins.max(len(s), len(reps))
    s = (1,) * (nd - len(s)) + s
    reps = (1,) * (nd - len(reps)) + reps
    a = st.reshape(a, s)
    # Broadcast to (r0, s0, r1, s1, ...) then merge pairs.
    inter = tuple(x for r, n in zip(reps, s) for x in (r, n))
    b = st.broadcast_in_dim(a, inter, tuple(range(1, 2 * nd, 2)))
    return st.reshape(b, tuple(r * n for r, n in zip(reps, s)))


def repeat(a, repeats, axis=None, *, total_repeat_length=None):
    if not tracing():
        return np.repeat(a, repeats, axis)
    a = operand(a)
    if axis is None:
        a, axis = ravel(a), 0
    s = core.get_aval(a).shape
    ax = normalize_axis(axis, len(s))
    reps = value(repeats)
    if np.ndim(reps) == 0:
        r = int(reps)
        b = st.broadcast_in_dim(a, s[:ax + 1] + (r,) + s[ax + 1:], tuple(i for i in range(len(s) + 1) if i != ax + 1))
        return st.reshape(b, s[:ax] + (s[ax] * r,) + s[ax + 1:])
    reps = np.asarray(reps)
    idx = np.repeat(np.arange(s[ax]), reps)
    from ._indexing import take
    return take(a, idx, axis=ax)


def flip(m, axis=None):
    if not tracing():
        return np.flip(m, axis)
    m = operand(m)
    return st.rev(m, normalize_axes(axis, core.get_aval(m).ndim))


def fliplr(m):
    return flip(m, 1)


def flipud(m):
    return flip(m, 0)


def roll(a, shift, axis=None):
    if not tracing():
        return np.roll(a, shift, axis)
    a = operand(a)
    if axis is None:
        return reshape(roll(ravel(a), shift, 0), core.get_aval(a).shape)
    shifts = (shift,) if isinstance(shift, (int, np.integer)) else tuple(shift)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    s = core.get_aval(a).shape
    for sh, ax in zip(shifts, axes):
        ax = normalize_axis(ax, len(s))
        n = s[ax]
        if n == 0:
            continue
        k = int(value(sh)) % n
        if k:
            a = st.concatenate([st.slice_in_dim(a, n - k, n, 1, ax), st.slice_in_dim(a, 0, n - k, 1, ax)], ax)
    return a


def rot90(m, k=1, axes=(0, 1)):
    if not tracing():
        return np.rot90(m, k, axes)
    k %= 4
    a0, a1 = axes
    if k == 0:
        return operand(m)
    if k == 2:
        return flip(flip(m, a0), a1)
    if k == 1:
        return swapaxes(flip(m, a1), a0, a1)
    return flip(swapaxes(m, a0, a1), a1)


def _pad_widths(pad_width, nd):
    pw = np.broadcast_to(np.asarray(value(pad_width), dtype=np.int64).reshape(-1, 2)
                         if np.ndim(value(pad_width)) > 0 else np.int64(value(pad_width)), (nd, 2))
    return [(int(lo), int(hi)) for lo, hi in pw]


def pad(array, pad_width, mode="constant", *, constant_values=0):
    """numpy.pad for modes constant, edge, reflect, symmetric and wrap."""
    if not tracing():
        kw = {"constant_values": constant_values} if mode == "constant" else {}
        return np.pad(array, pad_width, mode, **kw)
    a = operand(array)
    nd = core.get_aval(a).ndim
    widths = _pad_widths(pad_width, nd)
    if mode == "constant":
        cv = np.asarray(value(constant_values)) if not isinstance(constant_values, core.Tracer) else constant_values
        if np.ndim(cv) == 0 or isinstance(cv, core.Tracer):
            return st.pad(a, ew.convert_element_type(cv, core.get_aval(a).dtype) if isinstance(cv, core.Tracer)
                          else np.asarray(cv, core.get_aval(a).dtype), [(lo, hi, 0) for lo, hi in widths])
        cvs = np.broadcast_to(cv.reshape(-1, 2) if cv.ndim else cv, (nd, 2))
        for ax, (lo, hi) in enumerate(widths):
            cfg = [(0, 0, 0)] * nd
            cfg[ax] = (lo, 0, 0)
            a = st.pad(a, np.asarray(cvs[ax][0], core.get_aval(a).dtype), cfg)
            cfg[ax] = (0, hi, 0)
            a = st.pad(a, np.asarray(cvs[ax][1], core.get_aval(a).dtype), cfg)
        return a
    for ax, (lo, hi) in enumerate(widths):
        a = _pad_axis(a, ax, lo, hi, mode)
    return a


def _pad_axis(a, ax, lo, hi, mode):
    n = core.get_aval(a).shape[ax]
    if lo == hi == 0:
        return a
    sl = lambda s, e: st.slice_in_dim(a, s, e, 1, ax)
    if mode == "edge":
        pieces = [sl(0, 1)] * lo + [a] + [sl(n - 1, n)] * hi
        return st.concatenate(pieces, ax)
    if mode == "wrap":
        idx = np.arange(-lo, n + hi) % n
    elif mode == "reflect":
        period = 2 * (n - 1) if n > 1 else 1
        idx = np.abs(np.arange(-lo, n + hi)) % period if n > 1 else np.zeros(lo + n + hi, np.int64)
        idx = np.where(idx >= n, period - idx, idx) if n > 1 else idx
    elif mode == "symmetric":
        period = 2 * n
        j = np.arange(-lo, n + hi) % period
        idx = np.where(j >= n, period - 1 - j, j)
    else:
        raise NotImplementedError(f"pad mode {mode!r} is not supported")
    from ._indexing import take
    return take(a, idx, axis=ax)


def diff(a, n=1, axis=-1, prepend=None, append=None):
    if not tracing():
        kw = {k: v for k, v in (("prepend", prepend), ("append", append)) if v is not None}
        return np.diff(a, n, axis, **kw)
    a = operand(a)
    nd = core.get_aval(a).ndim
    ax = normalize_axis(axis, nd)
    parts = []
    for extra in (prepend,):
        if extra is not None:
            parts.append(_match_for_diff(extra, a, ax))
    parts.append(a)
    if append is not None:
        parts.append(_match_for_diff(append, a, ax))
    if len(parts) > 1:
        a = concatenate(parts, axis=ax)
    from ._ufuncs import not_equal, subtract
    for _ in range(n):
        m = core.get_aval(a).shape[ax]
        hi, lo = st.slice_in_dim(a, 1, m, 1, ax), st.slice_in_dim(a, 0, m - 1, 1, ax)
        a = not_equal(hi, lo) if core.get_aval(a).dtype == np.bool_ else subtract(hi, lo)
    return a


def _match_for_diff(v, a, ax):
    v = operand(v)
    s = list(core.get_aval(a).shape)
    if core.get_aval(v).ndim == 0:
        s[ax] = 1
        return st.broadcast_to(v, tuple(s))
    return v


def ediff1d(ary, to_end=None, to_begin=None):
    a = ravel(ary)
    d = diff(a)
    parts = ([ravel(asarray(to_begin))] if to_begin is not None else []) + [d] + \
            ([ravel(asarray(to_end))] if to_end is not None else [])
    return concatenate(parts) if len(parts) > 1 else d
