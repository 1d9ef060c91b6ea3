"""Sliding-window primitives: conv_general_dilated and the reduce_window family (pooling).

Both slide a window over the spatial axes of an operand that is first *dilated* (``d - 1``
fill values between neighbours) and *padded* (``(lo, hi)`` per axis, negative values crop).
The numpy impls work on a strided *window view* of that operand, which copies nothing:

* conv: copy the view once into patch matrices (im2col) and contract them with the kernel in
  batched BLAS matmuls, in which feature groups and batch groups are matmul batch axes; or,
  when that buffer would be the larger one (fewer output than input features, as in input
  gradients), multiply the kernel into the undilated input first and add the products into
  place, one add per kernel offset (col2im). Where the window's positions walk the input
  itself (unit strides, outputs the size of the input: "SAME" convs and their gradients),
  every patch row is the whole input plane shifted by one offset, so im2col and col2im move
  whole planes with one flat slice each instead of short strided runs;
* reduce_window: windows are boxes, so reduce one axis at a time with one vectorized
  operation per window offset; max/min pooling's gradient scatters with one masked copy per
  offset where windows do not overlap.

Gradients are again windowed primitives: a conv's transposes are convs (the identities are
derived next to the rules), sum pooling transposes to sum pooling, and max/min pooling
differentiates through the position of the chosen element (``window_gather``, whose transpose
is ``window_scatter_add``). So reverse mode stays BLAS-backed, and vmap folds the batch into
batch, feature or group dimensions (or a size-1 window axis) instead of looping.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

from .. import core, dtypes
from ..core import ShapedArray
from ..interpreters import ad
from ..interpreters.ad import Zero, defjvp, defjvp_zero, deflinear, is_undefined
from ..interpreters.batching import batch_size, move_to_front_or_broadcast, moveaxis
from . import elementwise as ew, structural as st

# ---------------------------------------------------------------------------------------------
# Window geometry, shared by every primitive here (sizes along one axis)


def _dilated(n: int, d: int) -> int:
    """Size of an axis of ``n`` elements with ``d - 1`` holes between neighbours."""
    return 0 if n == 0 else (n - 1) * d + 1


def _num_windows(padded: int, k: int, stride: int, window_dilation: int) -> int:
    """Window positions along an axis of ``padded`` elements (0 if the window does not fit)."""
    return max(0, (padded - _dilated(k, window_dilation)) // stride + 1)


def _window_out_size(name: str, avals, axis: str, n: int, k: int, stride: int, pad: tuple[int, int],
                     base_dilation: int, window_dilation: int) -> int:
    """Number of window positions along one axis; a trace-time error if a non-empty axis has
    none (an empty axis gives an empty result)."""
    padded = _dilated(n, base_dilation) + pad[0] + pad[1]
    window = _dilated(k, window_dilation)
    if k < 1 or (padded < window and n > 0):
        raise core.type_error(name, f"along {axis}, the window (size {k}, dilated to {window}) is "
                              f"larger than the padded, dilated input (size {n}, padded to "
                              f"{padded})", avals)
    return _num_windows(padded, k, stride, window_dilation)


def _transpose_padding(n: int, out: int, k: int, stride: int, lo: int, base_dilation: int,
                       window_dilation: int) -> tuple[int, int]:
    """Padding of the window op that carries an output cotangent back to the input.

    Output ``t`` reads input ``h`` through window offset ``j`` when
    ``t*stride + j*window_dilation - lo == h*base_dilation``. Dilating the cotangent by
    ``stride``, padding it by ``lo' = (k-1)*window_dilation - lo`` in front, and sliding the
    flipped window with stride ``base_dilation`` visits exactly those pairs; ``hi'`` makes
    the result ``n`` long (it may be negative: trailing outputs that read only padding)."""
    window = _dilated(k, window_dilation)
    lo_t = window - 1 - lo
    hi_t = (n - 1) * base_dilation + window - _dilated(out, stride) - lo_t
    return lo_t, hi_t


def padding_pairs(name: str, padding, in_sizes: Sequence[int], window_sizes: Sequence[int],
                  strides: Sequence[int], base_dilation: Sequence[int] | None = None,
                  window_dilation: Sequence[int] | None = None) -> tuple[tuple[int, int], ...]:
    """``(lo, hi)`` per windowed axis from explicit pairs or "SAME" / "SAME_LOWER" / "VALID".

    SAME pads so that ``out = ceil(in / stride)`` (on the dilated input), with the odd
    element at the end (SAME) or at the start (SAME_LOWER); VALID does not pad."""
    n = len(in_sizes)
    base_dilation = base_dilation or (1,) * n
    window_dilation = window_dilation or (1,) * n
    if isinstance(padding, str):
        kind = padding.upper()
        if kind == "VALID":
            return ((0, 0),) * n
        if kind not in ("SAME", "SAME_LOWER"):
            raise ValueError(f"{name}: padding must be 'SAME', 'SAME_LOWER', 'VALID' or a sequence "
                             f"of (low, high) pairs, got {padding!r}")
        pairs = []
        for size, k, s, bd, wd in zip(in_sizes, window_sizes, strides, base_dilation,
                                      window_dilation):
            size, window = _dilated(size, bd), _dilated(k, wd)
            total = max((-(-size // s) - 1) * s + window - size, 0)
            lo = total // 2 if kind == "SAME" else total - total // 2
            pairs.append((lo, total - lo))
        return tuple(pairs)
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: padding must be a string or a sequence of (low, high) pairs, "
                         f"got {padding!r}") from None
    if len(pairs) != n:
        raise ValueError(f"{name}: padding {padding!r} needs {n} (low, high) pairs, one per "
                         "windowed axis")
    return pairs


def _ints(name: str, what: str, values, n: int, per: str = "spatial axis") -> tuple[int, ...]:
    """``values`` as a tuple of ``n`` ints (all 1 when None)."""
    if values is None:
        return (1,) * n
    values = tuple(int(v) for v in values)
    if len(values) != n:
        raise ValueError(f"{name}: {what} {values} needs one entry per {per} ({n})")
    return values


# ---------------------------------------------------------------------------------------------
# Array helpers of the impls (numpy or cupy through ``xp``)


def _embedding(shape, axes, padding, dilation):
    """Where an array of ``shape`` lands when dilated and padded along ``axes``: the result's
    shape, and slices ``src`` (of the array) and ``dst`` (of the result) with
    ``result[dst] = array[src]``. Negative padding crops, so ``src`` may be partial."""
    out_shape = list(shape)
    src = [slice(None)] * len(shape)
    dst = [slice(None)] * len(shape)
    for ax, (lo, hi), d in zip(axes, padding, dilation):
        n = shape[ax]
        size = _dilated(n, d) + lo + hi
        first = max(0, -(lo // d))                 # first element at a position >= 0
        last = min(n - 1, (size - 1 - lo) // d)    # last element at a position < size
        out_shape[ax] = size
        if last < first:
            src[ax] = dst[ax] = slice(0, 0)
        else:
            src[ax] = slice(first, last + 1)
            dst[ax] = slice(lo + first * d, lo + last * d + 1, d)
    return tuple(out_shape), tuple(src), tuple(dst)


def _pad_and_dilate(xp, x, axes, padding, dilation, fill):
    if all(p == (0, 0) for p in padding) and all(d == 1 for d in dilation):
        return x
    shape, src, dst = _embedding(x.shape, axes, padding, dilation)
    out = xp.full(shape, fill, dtype=x.dtype)
    out[dst] = x[src]
    return out


def _window_view(xp, x, axes, window, strides, window_dilation):
    """A strided view of ``x`` (no copy): each axis in ``axes`` indexes window positions, and
    one trailing axis per window dimension indexes the offset inside the window."""
    shape, strides_b = list(x.shape), list(x.strides)
    for ax, k, s, d in zip(axes, window, strides, window_dilation):
        shape[ax] = _num_windows(x.shape[ax], k, s, d)
        strides_b[ax] = x.strides[ax] * s
    shape += list(window)
    strides_b += [x.strides[ax] * d for ax, d in zip(axes, window_dilation)]
    return xp.lib.stride_tricks.as_strided(x, tuple(shape), tuple(strides_b))


def _inverse(perm: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


# ---------------------------------------------------------------------------------------------
# conv_general_dilated(lhs, rhs)
#
# In canonical layout, lhs x[n, c, *s], rhs w[o, i, *k], out y[n, o, *t]:
#   y[n, o, t] = sum_{i, k} xp[n', g*I + i, t*stride + k*rhs_dilation] * w[o, i, k]
# where xp is x dilated by lhs_dilation and padded, g = o // (O / feature_group_count) is the
# feature group of o, and n' = b*N_out + n with b = o // (O / batch_group_count) the batch
# group of o. At most one of the two group counts exceeds 1.


class ConvDimensionNumbers(NamedTuple):
    """Axis positions. lhs_spec: (batch, feature, *spatial); rhs_spec: (out feature,
    in feature, *spatial); out_spec: (batch, feature, *spatial). Spatial axes correspond in
    order."""
    lhs_spec: tuple[int, ...]
    rhs_spec: tuple[int, ...]
    out_spec: tuple[int, ...]


def conv_dimension_numbers(ndim: int, dimension_numbers=None) -> ConvDimensionNumbers:
    """Normalize dimension numbers: None (NCHW, OIHW, NCHW for any rank), three layout strings
    such as ``("NHWC", "HWIO", "NHWC")`` (spatial letters matched by name, in the rhs's order),
    or a ConvDimensionNumbers."""
    name = "conv_general_dilated"
    if dimension_numbers is None:
        spec = tuple(range(ndim))
        return ConvDimensionNumbers(spec, spec, spec)
    if isinstance(dimension_numbers, ConvDimensionNumbers):
        dn = ConvDimensionNumbers(*(tuple(int(a) for a in s) for s in dimension_numbers))
    elif len(dimension_numbers) == 3 and all(isinstance(s, str) for s in dimension_numbers):
        lhs, rhs, out = dimension_numbers
        spatial = [c for c in rhs if c not in "OI"]
        for layout, special in ((lhs, "NC"), (rhs, "OI"), (out, "NC")):
            if (len(layout) != ndim or len(set(layout)) != ndim
                    or sorted(layout) != sorted(special + "".join(spatial))):
                raise ValueError(f"{name}: dimension_numbers {dimension_numbers} are not layouts "
                                 f"of rank {ndim} with the same spatial letters (lhs needs N, C; "
                                 "rhs O, I; out N, C)")
        dn = ConvDimensionNumbers(*(tuple(layout.index(c) for c in special + "".join(spatial))
                                    for layout, special in ((lhs, "NC"), (rhs, "OI"), (out, "NC"))))
    else:
        raise ValueError(f"{name}: dimension_numbers must be None, three layout strings or a "
                         f"ConvDimensionNumbers, got {dimension_numbers!r}")
    if any(sorted(s) != list(range(ndim)) for s in dn):
        raise ValueError(f"{name}: dimension_numbers {dn} are not permutations of {ndim} axes")
    return dn


def _conv_impl(xp, lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation,
               dimension_numbers, feature_group_count, batch_group_count, preferred_element_type,
               planes: "_Planes | None" = None):
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    if preferred_element_type is not None and lhs.dtype != preferred_element_type:
        lhs, rhs = lhs.astype(preferred_element_type), rhs.astype(preferred_element_type)
    x, w = xp.transpose(lhs, lhs_spec), xp.transpose(rhs, rhs_spec)   # (N, C, *S), (O, I, *K)
    geo = _Geometry.of(x.shape[2:], w.shape[2:], window_strides, padding, lhs_dilation,
                       rhs_dilation)
    b, g = batch_group_count, feature_group_count
    (n, _), (o, i) = x.shape[:2], w.shape[:2]
    # Two BLAS formulations; take the one whose intermediate buffer is smaller (per example
    # and kernel offset): patches hold in-features x outputs, scatter terms out-features x inputs.
    if (o // (b * g)) * math.prod(geo.s) < i * math.prod(geo.t):
        out = _conv_by_scatter(xp, x, w, geo, g, b, planes or _NUMPY_PLANES)
    else:
        out = _conv_by_patches(xp, x, w, geo, g, b, planes or _NUMPY_PLANES)
    if b > 1:                     # (B, N/B, G, O/(BG), *T): batch groups index out-features
        out = xp.swapaxes(out, 0, 1)
    return xp.transpose(out.reshape((n // b, o) + geo.t), _inverse(out_spec))


class _Geometry(NamedTuple):
    """The spatial side of a conv in canonical layout: input sizes ``s``, kernel sizes ``k``,
    output sizes ``t`` and the params. Kernel offset k of output t reads the dilated, padded
    input at ``t*stride + k*rhs_dilation``, i.e. input ``(t*stride + k*rhs_dilation - lo) /
    lhs_dilation``."""
    s: tuple[int, ...]
    k: tuple[int, ...]
    t: tuple[int, ...]
    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]

    @classmethod
    def of(cls, s, k, strides, padding, lhs_dilation, rhs_dilation) -> "_Geometry":
        t = tuple(_num_windows(_dilated(n, ld) + lo + hi, kk, st, rd)
                  for n, kk, st, (lo, hi), ld, rd
                  in zip(s, k, strides, padding, lhs_dilation, rhs_dilation))
        return cls(tuple(s), tuple(k), t, strides, padding, lhs_dilation, rhs_dilation)

    def shifts(self, grid: str) -> list[tuple[int, ...]] | None:
        """Whether the ``grid`` axis of the patches ("t": output positions, "k": kernel
        offsets) walks the input itself (unit steps, no lhs dilation, the input's sizes); if
        so, the input offset of each element of the other axis, in row-major order: then
        every patch row is the input shifted by an offset (see :func:`_shift_copy`)."""
        ones = (1,) * len(self.s)
        if self.lhs_dilation != ones:
            return None
        lo = [p[0] for p in self.padding]
        if grid == "t" and self.strides == ones and self.t == self.s:
            return [tuple(j * d - p for j, d, p in zip(k, self.rhs_dilation, lo))
                    for k in np.ndindex(*self.k)]
        if grid == "k" and self.rhs_dilation == ones and self.k == self.s:
            return [tuple(j * st - p for j, st, p in zip(t, self.strides, lo))
                    for t in np.ndindex(*self.t)]
        return None


# Shifted copies stream whole planes but cost a few array operations and one pass over the
# destination per kernel offset; a strided window copy is one operation that moves one run
# per grid row. Measured with cold caches (as inside a training step), the shifted form wins
# where those runs are short and many.
_SHIFT_MAX_ROW = 16           # grid rows of at most this many elements
_SHIFT_MIN_RUNS = 64          # at least this many of them per offset


def _shift_pays(rows: int, sizes: Sequence[int]) -> bool:
    """Whether shifted copies beat the strided copy for ``rows`` planes of grid ``sizes``."""
    return (rows > 0 and math.prod(sizes) > 0 and sizes[-1] <= _SHIFT_MAX_ROW
            and rows * math.prod(sizes[:-1]) >= _SHIFT_MIN_RUNS)


def _flat_shift(sizes: Sequence[int], delta: Sequence[int]):
    """Moving ``a[p] <- b[p + delta]`` over a row-major grid of ``sizes``, flattened: the box
    of positions p whose source lies in the grid (a (lo, hi) range per axis), the flat shift,
    and the flat range [start, stop) to move: the box's rows along the first axis, clipped to
    sources inside the flat grid. Positions in that range but outside the box read a
    neighbouring row (the shift wrapped around); callers neutralize them. None when the box
    is empty."""
    box = tuple((max(0, -d), min(n, n - d)) for n, d in zip(sizes, delta))
    if any(lo >= hi for lo, hi in box):
        return None
    size = math.prod(sizes)
    row = size // sizes[0]
    shift = sum(d * math.prod(sizes[a + 1:]) for a, d in enumerate(delta))
    return box, shift, max(box[0][0] * row, -shift), min(box[0][1] * row, size - shift)


def _zero_outside(a, sizes: Sequence[int], box) -> None:
    """Zero the grid of ``a`` (flattened in its last axis) outside ``box`` along every grid
    axis but the first."""
    grid = a.reshape(a.shape[:-1] + tuple(sizes))        # a view: the last axis only splits
    lead = a.ndim - 1
    for axis, (lo, hi), n in zip(range(lead + 1, grid.ndim), box[1:], sizes[1:]):
        for part in ([slice(0, lo)] if lo > 0 else []) + ([slice(hi, n)] if hi < n else []):
            grid[(slice(None),) * axis + (part,)] = 0


def _shift_copy(dst, src, sizes: Sequence[int], delta: Sequence[int]) -> None:
    """``dst[..., p] = src[..., p + delta]``, 0 where ``p + delta`` leaves the grid of
    ``sizes`` (flattened in both arrays' last axis): one flat copy, then zeros where the
    flat shift wrapped around."""
    flat = _flat_shift(sizes, delta)
    if flat is None:
        dst[...] = 0
        return
    box, shift, start, stop = flat
    dst[..., start:stop] = src[..., start + shift:stop + shift]
    dst[..., :start] = 0
    dst[..., stop:] = 0
    _zero_outside(dst, sizes, box)


def _shift_add(dst, src, sizes: Sequence[int], delta: Sequence[int]) -> None:
    """``dst[..., p] += src[..., p + delta]`` where ``p + delta`` lies in the grid (the
    accumulating :func:`_shift_copy`). ``src`` is first zeroed where no p reads it, so the
    flat add's wrapped-around reads add zeros; it is overwritten."""
    flat = _flat_shift(sizes, delta)
    if flat is None:
        return
    box, shift, start, stop = flat
    _zero_outside(src, sizes, [(lo + d, hi + d) for (lo, hi), d in zip(box, delta)])
    dst[..., start:stop] += src[..., start + shift:stop + shift]


def _shifted_copies(xp, src, sizes: Sequence[int], shifts):
    """im2col of unit-stride convs: ``out[a, j, b] = src[a, b]`` shifted by ``shifts[j]``
    (see :func:`_shift_copy`), for ``src`` of shape (A, B, grid)."""
    a, b, size = src.shape
    out = xp.empty((a, len(shifts), b, size), src.dtype)
    for j, delta in enumerate(shifts):
        _shift_copy(out[:, j], src, sizes, delta)
    return out


def _shifted_sum(xp, z, sizes: Sequence[int], shifts):
    """col2im of unit-stride convs: ``out[a] = sum_j z[a, j]`` shifted by ``shifts[j]``, for
    ``z`` of shape (A, J, grid), which it overwrites."""
    out = xp.empty(z.shape[:1] + z.shape[2:], z.dtype)
    _shift_copy(out, z[:, 0], sizes, shifts[0])
    for j, delta in enumerate(shifts[1:], 1):
        _shift_add(out, z[:, j], sizes, delta)
    return out


class _Planes(NamedTuple):
    """How the conv impl copies and sums shifted planes: ``copies`` and ``sums`` as
    :func:`_shifted_copies` and :func:`_shifted_sum`, and ``pays(planes, sizes)``, whether
    they beat strided window copies for that many planes of a grid of ``sizes``. numpy
    operations here; the C backend brings C++ ones (see ``_conv_c_kernel``)."""
    copies: Callable
    sums: Callable
    pays: Callable


_NUMPY_PLANES = _Planes(_shifted_copies, _shifted_sum, _shift_pays)


def _patches(xp, x, geo: _Geometry, pre: tuple[int, ...], post: tuple[int, ...], grid: str,
             planes: _Planes):
    """The patches of ``x`` (lead axes, then the spatial ones) as a fresh array
    ``x.shape[pre] + (offsets,) + x.shape[post] + (grid,)``: with grid "t", element
    ``[.., k, .., t]`` is the padded, dilated input at ``t*stride + k*rhs_dilation`` (the
    im2col matrix); grid "k" swaps the roles of k and t."""
    nsp = len(geo.s)
    lead = x.ndim - nsp
    spatial = tuple(range(lead, x.ndim))
    pre_shape, post_shape = tuple(x.shape[a] for a in pre), tuple(x.shape[a] for a in post)
    offsets, sizes = (geo.k, geo.t) if grid == "t" else (geo.t, geo.k)
    shape = pre_shape + (math.prod(offsets),) + post_shape + (math.prod(sizes),)
    shifts = geo.shifts(grid)
    if shifts is not None and planes.pays(math.prod(pre_shape + post_shape), sizes):
        src = xp.transpose(x, pre + post + spatial).reshape(
            (math.prod(pre_shape), math.prod(post_shape), -1))
        return planes.copies(xp, src, sizes, shifts).reshape(shape)
    x = _pad_and_dilate(xp, x, spatial, geo.padding, geo.lhs_dilation, 0)
    win = _window_view(xp, x, spatial, geo.k, geo.strides, geo.rhs_dilation)  # (.., *T, *K)
    t_axes, k_axes = spatial, tuple(range(x.ndim, x.ndim + nsp))
    middle, last = (k_axes, t_axes) if grid == "t" else (t_axes, k_axes)
    return xp.transpose(win, pre + middle + post + last).reshape(shape)


def _conv_by_patches(xp, x, w, geo: _Geometry, g: int, b: int, planes: _Planes):
    """im2col: copy each window of the dilated, padded input once into patch matrices, then
    BLAS products with the kernel, in which groups are matmul batch axes: per example where
    there are many output positions; else (kernel gradients) one product per group, or, with
    few channels and a large window, one per in-feature, summed. Returns
    (B, N/B, G, O/(BG), *T)."""
    n, o = x.shape[0], w.shape[0]
    k_size, t_size = math.prod(geo.k), math.prod(geo.t)
    if t_size >= k_size:
        return _per_example_products(xp, x, w, geo, g, b, planes)
    if b == g == 1 and o * n * t_size <= k_size:
        return _per_feature_products(xp, x, w, geo, planes)
    return _per_group_products(xp, x, w, geo, g, b, planes)


def _per_example_products(xp, x, w, geo: _Geometry, g: int, b: int, planes: _Planes):
    """Per example and group, (O/G, I*K) kernel @ (I*K, T) patches: many output positions."""
    n, (o, i) = x.shape[0], w.shape[:2]
    og, k_size, t_size = o // (b * g), math.prod(geo.k), math.prod(geo.t)
    x = x.reshape((b, n // b, g, i) + geo.s)                     # a view: axes only split
    patches = _patches(xp, x, geo, (0, 1, 2, 3), (), "t", planes)  # (B, N/B, G, I, K, T)
    out = xp.matmul(w.reshape(b, 1, g, og, i * k_size),
                    patches.reshape(b, n // b, g, i * k_size, t_size))
    return out.reshape(out.shape[:4] + geo.t)


def _per_group_products(xp, x, w, geo: _Geometry, g: int, b: int, planes: _Planes):
    """Per group, one large (N/B*T, I*K) patches @ (I*K, O/G) kernel product: few output
    positions (kernel gradients), so examples and positions share the row axis."""
    n, (o, i) = x.shape[0], w.shape[:2]
    og, k_size, t_size = o // (b * g), math.prod(geo.k), math.prod(geo.t)
    x = x.reshape((b, n // b, g, i) + geo.s)
    patches = _patches(xp, x, geo, (0, 2, 1), (3,), "k", planes)  # (B, G, N/B, T, I, K)
    out = xp.matmul(patches.reshape(b, g, (n // b) * t_size, i * k_size),
                    xp.swapaxes(w.reshape(b, g, og, i * k_size), -1, -2))
    out = xp.transpose(out.reshape(b, g, n // b, t_size, og), (0, 2, 1, 4, 3))
    return out.reshape(out.shape[:4] + geo.t)


def _per_feature_products(xp, x, w, geo: _Geometry, planes: _Planes):
    """Per in-feature, (N*T, K) patches @ (K, O) kernel, summed over in-features: few output
    positions and products small next to the window (kernel gradients of wide inputs with
    few channels), where one product over all in-features would be a thin matrix of an
    enormous inner size. No groups."""
    n, (o, i) = x.shape[0], w.shape[:2]
    k_size, t_size = math.prod(geo.k), math.prod(geo.t)
    patches = _patches(xp, x, geo, (1, 0), (), "k", planes)      # (I, N, T, K)
    kernel = xp.transpose(w.reshape(o, i, k_size), (1, 2, 0))   # (I, K, O)
    out = xp.matmul(patches.reshape(i, n * t_size, k_size), kernel)
    out = out.sum(axis=0, dtype=out.dtype)          # (small integers would widen)
    out = xp.transpose(out.reshape(1, n, 1, t_size, o), (0, 1, 2, 4, 3))
    return out.reshape(out.shape[:4] + geo.t)


def _scatter_slices(q_size: int, t_size: int, stride: int, lhs_dilation: int, c: int):
    """The inputs q and outputs t with ``t*stride == q*lhs_dilation + c`` (0 <= q < q_size,
    0 <= t < t_size), as a pair of slices, or None. They step together: q by
    stride/gcd, t by lhs_dilation/gcd."""
    gcd = math.gcd(lhs_dilation, stride)
    if c % gcd:
        return None
    dq, dt = stride // gcd, lhs_dilation // gcd
    residue = (-(c // gcd) * pow(dt, -1, dq)) % dq       # q*dt = -c/gcd (mod dq)
    first = max(0, -(c // lhs_dilation))                 # t >= 0
    q0 = first + (residue - first) % dq
    t0 = (q0 * lhs_dilation + c) // stride
    count = min(-(-(q_size - q0) // dq), -(-(t_size - t0) // dt))
    if count <= 0:
        return None
    return slice(q0, q0 + (count - 1) * dq + 1, dq), slice(t0, t0 + (count - 1) * dt + 1, dt)


def _conv_by_scatter(xp, x, w, geo: _Geometry, g: int, b: int, planes: _Planes):
    """col2im: z[k, q] = w[:, :, k] @ x[:, :, q] in one batched matmul on the undilated,
    unpadded input, then one add per kernel offset k of z[k] into the outputs its inputs
    reach (``t*stride == q*lhs_dilation + lo - k*rhs_dilation``): a flat shifted add when
    outputs and inputs share one grid, else a strided add. Cheaper than patches when there
    are fewer output than input features, as in input gradients."""
    nsp = x.ndim - 2
    n, (o, i) = x.shape[0], w.shape[:2]
    og, k_size, q_size = o // (b * g), math.prod(geo.k), math.prod(geo.s)
    kernel = xp.transpose(w, (0,) + tuple(range(2, 2 + nsp)) + (1,))
    kernel = kernel.reshape(b, 1, g, og * k_size, i)
    z = xp.matmul(kernel, x.reshape(b, n // b, g, i, q_size))      # (B, N/B, G, O/G*K, Q)
    shifts = geo.shifts("t")
    if shifts is not None and planes.pays(n * og * g, geo.t):
        out = planes.sums(xp, z.reshape(-1, k_size, q_size), geo.s, shifts)
        return out.reshape((b, n // b, g, og) + geo.t)
    z = z.reshape((b, n // b, g, og) + geo.k + geo.s)
    out = xp.zeros((b, n // b, g, og) + geo.t, z.dtype)
    for k in np.ndindex(*geo.k):
        pairs = [_scatter_slices(q, t, s, ld, lo - j * rd) for q, t, s, ld, (lo, _), j, rd
                 in zip(geo.s, geo.t, geo.strides, geo.lhs_dilation, geo.padding, k,
                        geo.rhs_dilation)]
        if None not in pairs:
            q_slices, t_slices = zip(*pairs)
            out[(Ellipsis,) + t_slices] += z[(Ellipsis,) + k + q_slices]
    return out


def _conv_abstract(lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation,
                   dimension_numbers, feature_group_count, batch_group_count,
                   preferred_element_type):
    name, avals = "conv_general_dilated", [lhs, rhs]
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    if lhs.dtype != rhs.dtype or lhs.dtype.kind not in "iufc":
        raise core.type_error(name, "lhs and rhs must be numeric arrays of the same dtype", avals)
    if lhs.ndim != rhs.ndim or lhs.ndim != len(lhs_spec) or lhs.ndim < 2:
        raise core.type_error(name, f"lhs and rhs must both have rank {len(lhs_spec)} (batch, "
                              f"feature and {len(lhs_spec) - 2} spatial axes) as the "
                              f"dimension_numbers {tuple(dimension_numbers)} say", avals)
    nsp = lhs.ndim - 2
    for what, v in (("window_strides", window_strides), ("padding", padding),
                    ("lhs_dilation", lhs_dilation), ("rhs_dilation", rhs_dilation)):
        if len(v) != nsp:
            raise core.type_error(name, f"{what} {v} needs one entry per spatial axis ({nsp})",
                                  avals)
    if any(s < 1 for s in window_strides + lhs_dilation + rhs_dilation):
        raise core.type_error(name, "window_strides and dilations must be positive", avals)
    g, b = feature_group_count, batch_group_count
    if g < 1 or b < 1 or (g > 1 and b > 1):
        raise core.type_error(name, f"feature_group_count ({g}) and batch_group_count ({b}) must "
                              "be positive, and at most one of them may exceed 1", avals)
    n, c = lhs.shape[lhs_spec[0]], lhs.shape[lhs_spec[1]]
    o, i = rhs.shape[rhs_spec[0]], rhs.shape[rhs_spec[1]]
    if c != i * g:
        raise core.type_error(name, f"lhs feature axis {lhs_spec[1]} has size {c}, but the rhs "
                              f"input-feature axis {rhs_spec[1]} has size {i} and "
                              f"feature_group_count is {g} (need {c} == {i} * {g})", avals)
    if o % (g * b) or n % b:
        raise core.type_error(name, f"the rhs output features ({o}) must divide into "
                              f"feature_group_count * batch_group_count ({g * b}) groups and "
                              f"the lhs batch ({n}) into batch_group_count ({b})", avals)
    shape = [0] * lhs.ndim
    shape[out_spec[0]], shape[out_spec[1]] = n // b, o
    for j in range(nsp):
        shape[out_spec[2 + j]] = _window_out_size(
            name, avals, f"spatial axis {j}", lhs.shape[lhs_spec[2 + j]],
            rhs.shape[rhs_spec[2 + j]], window_strides[j], padding[j], lhs_dilation[j],
            rhs_dilation[j])
    dtype = preferred_element_type or lhs.dtype
    return ShapedArray(tuple(shape), dtype, lhs.weak_type and rhs.weak_type)


def _spatial(shape, spec):
    return tuple(shape[a] for a in spec[2:])


def _regroup(x, src: int, dst: int, groups: int):
    """Split axis ``src`` into (groups, rest), keep ``rest`` there and make ``groups`` the
    major factor of axis ``dst``."""
    if groups == 1:
        return x
    shape = core.get_aval(x).shape
    x = st.reshape(x, shape[:src] + (groups, shape[src] // groups) + shape[src + 1:])
    d = dst + (dst > src)
    x = moveaxis(x, src, d - 1 if d > src else d)
    new = list(shape)
    new[src] //= groups
    new[dst] *= groups
    return st.reshape(x, tuple(new))


def _in_dtype(x, dtype):
    return x if core.get_aval(x).dtype == dtype else ew.convert_element_type(x, dtype)


def _conv_transpose_lhs(ct, rhs, lhs_aval: ShapedArray, *, window_strides, padding, lhs_dilation,
                        rhs_dilation, dimension_numbers, feature_group_count, batch_group_count):
    """x_bar[n, c, h] = sum_{o, j} ct~[n, o, h*lhs_dilation + j*rhs_dilation] w[o, c, K-1-j]:
    a conv of the stride-dilated, re-padded cotangent with the flipped kernel whose in/out
    feature roles are swapped; feature groups stay groups. Batch groups become feature groups
    whose outputs are then moved from the feature axis to the batch axis."""
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    rhs_aval, ct_aval = core.get_aval(rhs), core.get_aval(ct)
    if ct_aval.size == 0 or lhs_aval.size == 0:
        return ad.zeros(lhs_aval)
    groups = feature_group_count * batch_group_count
    pads = tuple(_transpose_padding(n, t, k, s, lo, ld, rd) for n, t, k, s, (lo, _), ld, rd in zip(
        _spatial(lhs_aval.shape, lhs_spec), _spatial(ct_aval.shape, out_spec),
        _spatial(rhs_aval.shape, rhs_spec), window_strides, padding, lhs_dilation, rhs_dilation))
    kernel = st.rev(_regroup(rhs, rhs_spec[0], rhs_spec[1], groups), rhs_spec[2:])
    dn = ConvDimensionNumbers(out_spec, (rhs_spec[1], rhs_spec[0]) + rhs_spec[2:], lhs_spec)
    out = conv_general_dilated_p.bind(
        ct, _in_dtype(kernel, ct_aval.dtype), window_strides=lhs_dilation, padding=pads,
        lhs_dilation=window_strides, rhs_dilation=rhs_dilation, dimension_numbers=dn,
        feature_group_count=groups, batch_group_count=1, preferred_element_type=None)
    out = _regroup(out, lhs_spec[1], lhs_spec[0], batch_group_count)
    return _in_dtype(out, lhs_aval.dtype)


def _conv_transpose_rhs(ct, lhs, rhs_aval: ShapedArray, *, window_strides, padding, lhs_dilation,
                        rhs_dilation, dimension_numbers, feature_group_count, batch_group_count):
    """w_bar[o, i, k] = sum_{n, t} xp[n, i, k*rhs_dilation + t*stride] ct[n, o, t]: a conv
    of lhs (batch and feature roles swapped) with the cotangent as kernel (its batch axis is
    contracted), window stride rhs_dilation and kernel dilation stride. Feature groups
    become batch groups and batch groups become feature groups."""
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    lhs_aval, ct_aval = core.get_aval(lhs), core.get_aval(ct)
    if ct_aval.size == 0 or rhs_aval.size == 0:
        return ad.zeros(rhs_aval)
    pads = tuple((lo, _dilated(k, rd) + _dilated(t, s) - 1 - _dilated(n, ld) - lo)
                 for n, t, k, s, (lo, _), ld, rd in zip(
                     _spatial(lhs_aval.shape, lhs_spec), _spatial(ct_aval.shape, out_spec),
                     _spatial(rhs_aval.shape, rhs_spec), window_strides, padding, lhs_dilation,
                     rhs_dilation))
    swap = lambda spec: (spec[1], spec[0]) + spec[2:]
    dn = ConvDimensionNumbers(swap(lhs_spec), swap(out_spec), swap(rhs_spec))
    out = conv_general_dilated_p.bind(
        _in_dtype(lhs, ct_aval.dtype), ct, window_strides=rhs_dilation, padding=pads,
        lhs_dilation=lhs_dilation, rhs_dilation=window_strides, dimension_numbers=dn,
        feature_group_count=batch_group_count, batch_group_count=feature_group_count,
        preferred_element_type=None)
    return _in_dtype(out, rhs_aval.dtype)


def _conv_transpose(ct, lhs, rhs, *, preferred_element_type, **params):
    if type(ct) is Zero:
        return [None, None]
    return [_conv_transpose_lhs(ct, rhs, lhs.aval, **params) if is_undefined(lhs) else None,
            _conv_transpose_rhs(ct, lhs, rhs.aval, **params) if is_undefined(rhs) else None]


def _fold_in(x, bdim: int, axis: int, groups: int = 1):
    """Merge the batch axis ``bdim`` of ``x`` into (per-example) axis ``axis``, as the middle
    factor of (groups, batch, axis size / groups)."""
    shape = core.get_aval(x).shape
    rest = shape[:bdim] + shape[bdim + 1:]
    x = _regroup(moveaxis(x, bdim, axis), axis + 1, axis, groups)    # (.., (g, V), n/g, ..)
    return st.reshape(x, rest[:axis] + (rest[axis] * shape[bdim],) + rest[axis + 1:])


def _split_out(y, axis: int, groups: int, size: int):
    """Inverse of :func:`_fold_in` on an output: axis ``axis`` of ``y`` is (groups, batch,
    rest); return ``y`` with the batch as its own axis ``axis``."""
    shape = core.get_aval(y).shape
    rest = shape[axis] // (groups * size)
    if groups == 1:
        return st.reshape(y, shape[:axis] + (size, rest) + shape[axis + 1:])
    y = st.reshape(y, shape[:axis] + (groups, size, rest) + shape[axis + 1:])
    y = moveaxis(y, axis + 1, axis)
    return st.reshape(y, shape[:axis] + (size, groups * rest) + shape[axis + 1:])


def _conv_batch(args, dims, **params):
    (lhs, rhs), (dl, dr) = args, dims
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    g, b = params["feature_group_count"], params["batch_group_count"]
    size = batch_size(args, dims)
    if size == 0:       # no examples to fold into groups: an empty result
        avals = [core.get_aval(a) for a in args]
        avals = [a if d is None else a.update(shape=a.shape[:d] + a.shape[d + 1:])
                 for a, d in zip(avals, dims)]
        out = _conv_abstract(*avals, **params)
        return st.full((0,) + out.shape, 0, out.dtype), 0
    if dr is None:      # the batch joins lhs's batch axis, inside each batch group
        out = conv_general_dilated_p.bind(_fold_in(lhs, dl, lhs_spec[0], b), rhs, **params)
        return _split_out(out, out_spec[0], 1, size), out_spec[0]
    if dl is None:      # per-example kernels: more output features in each group
        out = conv_general_dilated_p.bind(lhs, _fold_in(rhs, dr, rhs_spec[0], g * b), **params)
        return _split_out(out, out_spec[1], g * b, size), out_spec[1]
    # Both batched: each example is its own group (of features, or of batch when the conv
    # already has batch groups).
    w = _fold_in(rhs, dr, rhs_spec[0])
    if b == 1:
        out = conv_general_dilated_p.bind(_fold_in(lhs, dl, lhs_spec[1]), w,
                                          **{**params, "feature_group_count": size * g})
    else:
        out = conv_general_dilated_p.bind(_fold_in(lhs, dl, lhs_spec[0]), w,
                                          **{**params, "batch_group_count": size * b})
    return _split_out(out, out_spec[1], 1, size), out_spec[1]


# C++ helpers of the conv impl for the C backend: copies and sums of shifted planes (the
# im2col and col2im of unit-stride convs) in one pass each, where numpy needs a pass per
# offset and more to zero what a flat shift wraps around. A plane is a row-major grid of
# `nd` sizes; shifting it by delta moves p + delta to p, 0 where p + delta leaves the grid.

PLANES_C = r"""
// ---- shifted planes (funcgrad/primitives/conv.py) -----------------------------------------
#define FG_PLANES_MAXD 8
// The box of positions p whose p + delta lies in the grid ([lo, hi) per axis) and the flat
// shift; false if the box is empty.
FG_INLINE bool fg_plane_box(int nd, const int64_t* n, const int64_t* delta, int64_t* lo, int64_t* hi, int64_t* shift) {
  int64_t stride = 1;
  bool empty = false;
  *shift = 0;
  for (int a = nd - 1; a >= 0; --a) {
    lo[a] = delta[a] < 0 ? -delta[a] : 0;
    hi[a] = delta[a] > 0 ? n[a] - delta[a] : n[a];
    empty = empty || lo[a] >= hi[a];
    *shift += delta[a] * stride;
    stride *= n[a];
  }
  return !empty;
}
// Visit the rows (indices of axes 0 .. nd-2) of the box [lo, hi): f(flat row index).
template <class F>
FG_INLINE void fg_plane_box_rows(int nd, const int64_t* n, const int64_t* lo, const int64_t* hi, F f) {
  int64_t idx[FG_PLANES_MAXD];
  for (int a = 0; a < nd - 1; ++a) idx[a] = lo[a];
  for (;;) {
    int64_t row = 0;
    for (int a = 0; a < nd - 1; ++a) row = row * n[a] + idx[a];
    f(row);
    int a = nd - 2;
    for (; a >= 0 && ++idx[a] == hi[a]; --a) idx[a] = lo[a];
    if (a < 0) return;
  }
}
// o = s shifted by delta (g elements): one flat copy of the box's rows along axis 0, then
// zeros where that copy wrapped around into neighbouring rows.
template <class T>
FG_INLINE void fg_plane_shift(int nd, const int64_t* n, int64_t g, const int64_t* delta, const T* s, T* o) {
  int64_t lo[FG_PLANES_MAXD], hi[FG_PLANES_MAXD], shift;
  if (!fg_plane_box(nd, n, delta, lo, hi, &shift)) {
    for (int64_t p = 0; p < g; ++p) o[p] = T(0);
    return;
  }
  const int64_t step = g / n[0], w = n[nd - 1];
  int64_t start = lo[0] * step, stop = hi[0] * step;
  start = start + shift < 0 ? -shift : start;
  stop = stop + shift > g ? g - shift : stop;
  for (int64_t p = 0; p < start; ++p) o[p] = T(0);
  const T* from = s + shift;
  #pragma omp simd
  for (int64_t p = start; p < stop; ++p) o[p] = from[p];
  for (int64_t p = stop; p < g; ++p) o[p] = T(0);
  if (nd == 1) return;
  const int64_t first = start / w, last = (stop + w - 1) / w;    // the rows copied into
  for (int64_t c = 0; c < lo[nd - 1]; ++c)                // columns left of the box
    for (int64_t row = first; row < last; ++row) o[row * w + c] = T(0);
  for (int64_t c = hi[nd - 1]; c < w; ++c)                 // and right of it
    for (int64_t row = first; row < last; ++row) o[row * w + c] = T(0);
  if (nd == 2) return;
  for (int64_t row = first; row < last; ++row) {      // rows outside the box on axes 1 ..
    bool inside = true;
    for (int64_t a = nd - 2, rest = row; a >= 1; rest /= n[a], --a)
      inside = inside && lo[a] <= rest % n[a] && rest % n[a] < hi[a];
    if (!inside)
      for (int64_t c = 0; c < w; ++c) o[row * w + c] = T(0);
  }
}
// im2col: out[a, j, b] = src[a, b] shifted by delta_j (see _shifted_copies), plane rows
// (a, j, b) [r0, r1). m: nd, the grid's sizes, A, J, B, src's strides (elements) along a and
// b (its grid is contiguous), the J deltas.
template <class T>
FG_INLINE void fg_plane_copies(const int64_t* m, int64_t r0, int64_t r1, const T* src, T* out) {
  const int nd = (int)m[0];
  const int64_t *n = m + 1, J = m[nd + 2], B = m[nd + 3], sa = m[nd + 4], sb = m[nd + 5];
  const int64_t* deltas = m + nd + 6;
  int64_t g = 1;
  for (int a = 0; a < nd; ++a) g *= n[a];
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r % B, j = r / B % J, a = r / B / J;
    fg_plane_shift(nd, n, g, deltas + j * nd, src + a * sa + b * sb, out + r * g);
  }
}
// col2im: out[a] = sum over j of z[a, j] shifted by delta_j, in order of j (see
// _shifted_sum), planes a in [r0, r1). m: nd, the grid's sizes, A, J, the J deltas.
template <class T>
FG_INLINE void fg_plane_sums(const int64_t* m, int64_t r0, int64_t r1, const T* z, T* out) {
  const int nd = (int)m[0];
  const int64_t *n = m + 1, J = m[nd + 2];
  const int64_t* deltas = m + nd + 3;
  int64_t g = 1;
  for (int a = 0; a < nd; ++a) g *= n[a];
  const int64_t w = n[nd - 1];
  for (int64_t a = r0; a < r1; ++a) {
    T* o = out + a * g;
    fg_plane_shift(nd, n, g, deltas, z + a * J * g, o);
    for (int64_t j = 1; j < J; ++j) {
      int64_t lo[FG_PLANES_MAXD], hi[FG_PLANES_MAXD], shift;
      if (!fg_plane_box(nd, n, deltas + j * nd, lo, hi, &shift)) continue;
      const T* s = z + (a * J + j) * g + shift;
      const int64_t cb = lo[nd - 1], ce = hi[nd - 1];
      fg_plane_box_rows(nd, n, lo, hi, [&](int64_t row) {
        T* r = o + row * w;
        const T* sr = s + row * w;
        #pragma omp simd
        for (int64_t c = cb; c < ce; ++c) r[c] = fg_add(r[c], sr[c]);
      });
    }
  }
}
"""


def _c_planes(copies, sums) -> _Planes:
    """:class:`_Planes` by the C++ helpers ``copies`` and ``sums`` (see ``PLANES_C``)."""
    def shifted_copies(xp, src, sizes, shifts):
        item = src.itemsize
        if src.strides[-1] != item or any(s % item for s in src.strides):
            src = xp.ascontiguousarray(src)
        a, b, size = src.shape
        meta = (len(sizes), *sizes, a, len(shifts), b, src.strides[0] // item,
                src.strides[1] // item, *itertools.chain(*shifts))
        return copies(a * len(shifts) * b, size, meta, [(a, len(shifts), b, size)], src)[0]

    def shifted_sum(xp, z, sizes, shifts):
        a, j, size = z.shape
        meta = (len(sizes), *sizes, a, j, *itertools.chain(*shifts))
        return sums(a, size, meta, [(a, size)], z)[0]
    # One pass over each plane: it pays wherever planes shift (numpy's rule is for numpy).
    return _Planes(shifted_copies, shifted_sum, lambda planes, sizes: planes * math.prod(sizes) > 0)


def _conv_c_run(xp, helpers, lhs, rhs, **params):
    return _conv_impl(xp, lhs, rhs, **params, planes=_c_planes(*helpers))


def _conv_c_kernel(in_avals, out_avals, **params):
    """The impl with shifted planes by C++ (up to 8 spatial axes)."""
    dtype = params["preferred_element_type"] or in_avals[0].dtype
    if len(in_avals[0].shape) - 2 > 8:
        return None
    helpers = (core.CHelper(PLANES_C, "", "fg_plane_copies(m, r0, r1, in0, out0);", (dtype,),
                            (dtype,), strided=True),
               core.CHelper(PLANES_C, "", "fg_plane_sums(m, r0, r1, in0, out0);", (dtype,),
                            (dtype,)))
    return core.CImpl(helpers, functools.partial(_conv_c_run, **params))


conv_general_dilated_p = core.Primitive("conv_general_dilated")
conv_general_dilated_p.impl = _conv_impl
conv_general_dilated_p.abstract_eval = _conv_abstract
conv_general_dilated_p.transpose = _conv_transpose
conv_general_dilated_p.batch = _conv_batch
conv_general_dilated_p.fresh_result = True      # from BLAS products or new buffers
conv_general_dilated_p.c_kernel = _conv_c_kernel
defjvp(conv_general_dilated_p,
       lambda g, ans, lhs, rhs, **params: conv_general_dilated_p.bind(g, rhs, **params),
       lambda g, ans, lhs, rhs, **params: conv_general_dilated_p.bind(lhs, g, **params))


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         preferred_element_type=None):
    """General N-d convolution (cross-correlation, as in deep learning).

    ``padding``: "SAME", "SAME_LOWER", "VALID" or ``(low, high)`` pairs per spatial axis
    (applied to the lhs after ``lhs_dilation``; negative values crop). ``lhs_dilation`` > 1
    gives transposed ("fractionally strided") convs, ``rhs_dilation`` atrous ones.
    ``dimension_numbers``: None (NCHW, OIHW, NCHW), layout strings like
    ``("NHWC", "HWIO", "NHWC")``, or a :class:`ConvDimensionNumbers`."""
    name = "conv_general_dilated"
    lhs_aval, rhs_aval = core.get_aval(lhs), core.get_aval(rhs)
    if lhs_aval.ndim != rhs_aval.ndim or lhs_aval.ndim < 2:
        raise core.type_error(name, "lhs and rhs must have the same rank, at least 2 (batch, "
                              "feature, then spatial axes)", [lhs_aval, rhs_aval])
    dn = conv_dimension_numbers(lhs_aval.ndim, dimension_numbers)
    nsp = lhs_aval.ndim - 2
    strides = _ints(name, "window_strides", window_strides, nsp)
    lhs_dilation = _ints(name, "lhs_dilation", lhs_dilation, nsp)
    rhs_dilation = _ints(name, "rhs_dilation", rhs_dilation, nsp)
    pads = padding_pairs(name, padding, _spatial(lhs_aval.shape, dn.lhs_spec),
                         _spatial(rhs_aval.shape, dn.rhs_spec), strides, lhs_dilation, rhs_dilation)
    params = dict(window_strides=strides, padding=pads, lhs_dilation=lhs_dilation,
                  rhs_dilation=rhs_dilation, dimension_numbers=dn,
                  feature_group_count=int(feature_group_count),
                  batch_group_count=int(batch_group_count),
                  preferred_element_type=None if preferred_element_type is None
                  else np.dtype(preferred_element_type))
    _conv_abstract(lhs_aval, rhs_aval, **params)   # eager too: the same checks and messages
    return conv_general_dilated_p.bind(lhs, rhs, **params)


def conv(lhs, rhs, window_strides: Sequence[int], padding, preferred_element_type=None):
    """Convolution in NCHW / OIHW layout (any number of spatial axes)."""
    return conv_general_dilated(lhs, rhs, window_strides, padding,
                                preferred_element_type=preferred_element_type)


def conv_with_general_padding(lhs, rhs, window_strides: Sequence[int], padding,
                              lhs_dilation: Sequence[int] | None,
                              rhs_dilation: Sequence[int] | None, preferred_element_type=None):
    """Convolution in NCHW / OIHW layout with dilations."""
    return conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                preferred_element_type=preferred_element_type)


def conv_transpose(lhs, rhs, strides: Sequence[int], padding,
                   rhs_dilation: Sequence[int] | None = None, dimension_numbers=None,
                   transpose_kernel: bool = False, preferred_element_type=None):
    """Transposed convolution: upsample ``lhs`` by ``strides`` (as lhs_dilation) and convolve.

    With "SAME" the output is ``in * stride`` long, with "VALID" ``in * stride +
    max(k - stride, 0)`` (k the dilated kernel size): the paddings are those of the gradient
    of a forward conv with that padding. ``transpose_kernel=True`` flips the kernel's
    spatial axes and swaps its in/out features, which makes this exactly the gradient of
    ``conv_general_dilated`` with respect to its lhs.

    As in JAX, ``dimension_numbers=None`` means channels last here (``("NHWC", "HWIO",
    "NHWC")`` and the like for any rank), unlike ``conv_general_dilated``'s NCHW."""
    name = "conv_transpose"
    lhs_aval, rhs_aval = core.get_aval(lhs), core.get_aval(rhs)
    nd = lhs_aval.ndim
    if dimension_numbers is None and nd >= 3:
        spatial = tuple(range(1, nd - 1))
        dimension_numbers = ConvDimensionNumbers((0, nd - 1) + spatial, (nd - 1, nd - 2) + tuple(range(nd - 2)),
                                                 (0, nd - 1) + spatial)
    dn = conv_dimension_numbers(nd, dimension_numbers)
    nsp = lhs_aval.ndim - 2
    strides = _ints(name, "strides", strides, nsp)
    rhs_dilation = _ints(name, "rhs_dilation", rhs_dilation, nsp)
    if transpose_kernel:
        rhs = st.rev(rhs, dn.rhs_spec[2:])
        dn = dn._replace(rhs_spec=(dn.rhs_spec[1], dn.rhs_spec[0]) + dn.rhs_spec[2:])
    if isinstance(padding, str):
        kind = padding.upper()
        if kind not in ("SAME", "VALID"):
            raise ValueError(f"{name}: padding must be 'SAME', 'VALID' or (low, high) pairs, "
                             f"got {padding!r}")
        pads = []
        for k, s, d in zip(_spatial(rhs_aval.shape, dn.rhs_spec), strides, rhs_dilation):
            k = _dilated(k, d)
            if kind == "SAME":
                lo = k - 1 - max(k - s, 0) // 2
                pads.append((lo, k + s - 2 - lo))
            else:
                pads.append((k - 1, s - 1 + max(k - s, 0)))
        padding = tuple(pads)
    return conv_general_dilated(lhs, rhs, (1,) * nsp, padding, strides, rhs_dilation, dn,
                                preferred_element_type=preferred_element_type)


# ---------------------------------------------------------------------------------------------
# The reduce_window family: every operand axis is windowed (use window size 1 for axes that are
# not pooled). Params: window_dimensions, window_strides, padding, base_dilation (holes between
# operand elements, filled like padding) and window_dilation.
#
#   reduce_window_sum / _max / _min    the pooled values
#   reduce_window_argmax / _argmin     int32 position inside the window of the first max / min
#   window_gather(t, pos)              t's element at window position pos (linear in t)
#   window_scatter_add(ct, pos)        its transpose: add ct back at those positions


def _window_shape(name: str, avals, shape, window_dimensions, window_strides, padding,
                  base_dilation, window_dilation) -> tuple[int, ...]:
    nd = len(shape)
    for what, v in (("window_dimensions", window_dimensions), ("window_strides", window_strides),
                    ("padding", padding), ("base_dilation", base_dilation),
                    ("window_dilation", window_dilation)):
        if len(v) != nd:
            raise core.type_error(name, f"{what} {v} needs one entry per operand axis ({nd})",
                                  avals)
    if any(s < 1 for s in window_strides + base_dilation + window_dilation):
        raise core.type_error(name, "window_strides and dilations must be positive", avals)
    return tuple(_window_out_size(name, avals, f"axis {a}", *args) for a, args in enumerate(zip(
        shape, window_dimensions, window_strides, padding, base_dilation, window_dilation)))


def _identity(computation: str, dtype: np.dtype):
    """The fill value that never wins: 0 for sums, the lowest value for max, the highest for min."""
    return dtype.type(0) if computation == "sum" else dtypes.extreme(dtype, computation == "min")


def _windows(xp, x, computation, window_dimensions, window_strides, padding, base_dilation,
             window_dilation):
    """The window view of ``x``, padded and dilated with the identity of ``computation``."""
    axes = tuple(range(x.ndim))
    x = _pad_and_dilate(xp, x, axes, padding, base_dilation, _identity(computation, x.dtype))
    return _window_view(xp, x, axes, window_dimensions, window_strides, window_dilation)


def _offsets(view, ndim: int):
    """The strided slices of a window view, one per window offset, in row-major order."""
    return (view[(Ellipsis,) + off] for off in np.ndindex(*view.shape[ndim:]))


_COMBINE = {"sum": "add", "max": "maximum", "min": "minimum"}


def _reduce_window_impl(xp, x, *, computation, window_dimensions, window_strides, padding,
                        base_dilation, window_dilation):
    """Windows are boxes, so they reduce one axis at a time: per axis, one vectorized
    combine per window offset. Outer axes go first: their strided slices keep the inner
    axes' contiguous runs, and each step shrinks the array the next one reads."""
    combine = getattr(xp, _COMBINE[computation])
    axes = tuple(range(x.ndim))
    out = _pad_and_dilate(xp, x, axes, padding, base_dilation, _identity(computation, x.dtype))
    fresh = out is not x
    for a, k, s, d in zip(axes, window_dimensions, window_strides, window_dilation):
        if k == s == 1:
            continue
        n = _num_windows(out.shape[a], k, s, d)
        offsets = [out[(slice(None),) * a + (slice(j * d, j * d + (n - 1) * s + 1, s),)]
                   for j in range(k)]
        if k == 1:
            out = offsets[0]
            continue
        acc = combine(offsets[0], offsets[1])
        for o in offsets[2:]:
            combine(acc, o, out=acc)
        out, fresh = acc, True
    return out if fresh else out.copy()


def _window_arg_impl(xp, x, *, computation, **geometry):
    """First position (row-major in the window) of each window's max / min; NaN wins."""
    offsets = _offsets(_windows(xp, x, computation, **geometry), x.ndim)
    better = xp.greater if computation == "max" else xp.less
    keep = getattr(xp, _COMBINE[computation])
    k = math.prod(geometry["window_dimensions"])
    code = np.min_scalar_type(k)
    best = next(offsets).copy()
    pos = xp.zeros(best.shape, code)
    won, cand = xp.empty(best.shape, dtypes.bool_), xp.empty(best.shape, code)
    # Offsets come in increasing order, so the latest strict improvement is the largest j
    # that improved: pos = max_j (j if offset j improved on all before it, else 0).
    for j, s in enumerate(offsets, 1):
        better(s, best, out=won)
        keep(best, s, out=best)
        xp.multiply(won, code.type(j), out=cand)
        xp.maximum(pos, cand, out=pos)
    if x.dtype.kind == "f" and bool(xp.isnan(best).any()):
        first_nan = xp.full(best.shape, k, np.int64)
        for j, s in enumerate(_offsets(_windows(xp, x, computation, **geometry), x.ndim)):
            xp.minimum(first_nan, xp.where(xp.isnan(s), j, k), out=first_nan)
        pos = xp.where(xp.isnan(best), first_nan, pos)
    return pos.astype(dtypes.int32)


def _grid(xp, sizes, steps):
    """``sum_a arange(sizes[a]) * steps[a]``, broadcast over the grid of ``sizes``."""
    out = xp.zeros((), np.intp)
    for n, step in zip(sizes, steps):
        out = out[..., None] + xp.arange(n, dtype=np.intp) * int(step)
    return out


def _flat_window_index(xp, padded_shape, pos, window_dimensions, window_strides, window_dilation):
    """Flat index, into a C-ordered array of ``padded_shape``, of the element at window
    position ``pos`` of each window."""
    elem = [math.prod(padded_shape[a + 1:]) for a in range(len(padded_shape))]
    offsets = _grid(np, window_dimensions, [d * e for d, e in zip(window_dilation, elem)])
    starts = _grid(xp, pos.shape, [s * e for s, e in zip(window_strides, elem)])
    return xp.take(xp.asarray(offsets.reshape(-1)), pos) + starts


def _window_gather_impl(xp, t, pos, *, window_dimensions, window_strides, padding, base_dilation,
                        window_dilation):
    axes = tuple(range(t.ndim))
    padded = _pad_and_dilate(xp, t, axes, padding, base_dilation, 0)
    index = _flat_window_index(xp, padded.shape, pos, window_dimensions, window_strides,
                               window_dilation)
    return xp.take(padded.reshape(-1), index)


def _disjoint(window_dimensions, window_strides, window_dilation) -> bool:
    """Whether no element lies in two windows (each window fits within its stride)."""
    return all(k == 1 or s >= _dilated(k, d)
               for k, s, d in zip(window_dimensions, window_strides, window_dilation))


def _masked_copy(xp, dst, values, mask) -> None:
    """``dst[...] = where(mask, values, 0)`` as one multiply by the mask; floats multiply
    their bit patterns as integers, so inf and NaN where the mask is off leave no trace."""
    kind = values.dtype.kind
    if kind == "f":
        as_int = np.dtype(f"i{values.dtype.itemsize}")
        xp.multiply(values.view(as_int), mask, out=dst.view(as_int))
    elif kind in "biu":
        xp.multiply(values, mask, out=dst)
    else:
        dst[...] = xp.where(mask, values, 0)


def _window_scatter_add_impl(xp, ct, pos, *, operand_shape, window_dimensions, window_strides,
                             padding, base_dilation, window_dilation):
    axes = range(len(operand_shape))
    padded_shape, src, dst = _embedding(operand_shape, axes, padding, base_dilation)
    if _disjoint(window_dimensions, window_strides, window_dilation):
        # Each element gets at most one cotangent: one masked copy per window offset, through
        # a writable window view (no index arrays, no accumulation).
        tiled = all(k == s and d == 1 and t * s == n for k, s, d, t, n in zip(
            window_dimensions, window_strides, window_dilation, ct.shape, padded_shape))
        padded = (xp.empty if tiled else xp.zeros)(padded_shape, ct.dtype)
        view = _window_view(xp, padded, axes, window_dimensions, window_strides, window_dilation)
        for j, offset in enumerate(np.ndindex(*window_dimensions)):
            _masked_copy(xp, view[(Ellipsis,) + offset], ct, pos == j)
    else:
        index = _flat_window_index(xp, padded_shape, pos, window_dimensions, window_strides,
                                   window_dilation)
        flat = xp.zeros(math.prod(padded_shape), ct.dtype)
        if xp is np:
            np.add.at(flat, index.reshape(-1), ct.reshape(-1))
        else:
            import cupyx
            cupyx.scatter_add(flat, index.reshape(-1), ct.reshape(-1))
        padded = flat.reshape(padded_shape)
    if all(p == (0, 0) for p in padding) and all(d == 1 for d in base_dilation):
        return padded
    out = xp.zeros(operand_shape, ct.dtype)
    out[src] = padded[dst]
    return out


# ---------------------------------------------------------------------------------------------
# C++ kernels of the window primitives (the C backend runs them instead of the impls)
#
# One work row per row of the result (all axes but the last); columns run along the last
# axis, so the innermost loops are strided loads of constant stride the compiler vectorizes.
# The geometry is a struct of constants (``geo``, one per kernel); sizes come at run time
# (``m``: the operand's sizes, then the window counts), so one kernel serves every batch size.

WINDOW_C = r"""
// ---- sliding windows (funcgrad/primitives/conv.py) ----------------------------------------
// G: the geometry, constants: nd axes; per axis window size k, stride s, low padding lo,
// base dilation bd, window dilation wd; rsize: window offsets on the row axes (all but the
// last); disjoint: no element lies in two windows. At run time: n, the operand's sizes,
// and t, the window counts. Window t at offset j reads the padded, dilated operand at
// p = t*s + j*wd - lo: element p/bd where that is a whole index inside the operand, else
// padding (the identity of the reduction, or 0).
#ifndef FG_DEVICE
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FG_DEVICE __device__
#else
#define FG_DEVICE
#endif
#endif
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FG_UNROLL _Pragma("unroll")
#else
#define FG_UNROLL _Pragma("GCC unroll 16")
#endif
// The identities of max and min: the lowest and highest values of T.
template <class T> FG_INLINE T fg_window_highest(T) {
  return T(-1) < T(0) ? T((((uint64_t)1) << (sizeof(T) * 8 - 1)) - 1) : T(~T(0));
}
template <class T> FG_INLINE T fg_window_lowest(T) {
  return T(-1) < T(0) ? T(-fg_window_highest(T(0)) - 1) : T(0);
}
FG_INLINE float fg_window_highest(float) { return fg_bitcast<float>((uint32_t)0x7f800000u); }
FG_INLINE float fg_window_lowest(float) { return -fg_window_highest(0.0f); }
FG_INLINE double fg_window_highest(double) { return fg_bitcast<double>((uint64_t)0x7ff0000000000000ull); }
FG_INLINE double fg_window_lowest(double) { return -fg_window_highest(0.0); }
// max / min: the identity, numpy's combine (NaN wins), and whether v beats the best so far
// for the position of the first extremum (the first NaN, else the first strict improvement).
struct fg_window_max {
  template <class T> static FG_DEVICE T id() { return fg_window_lowest(T(0)); }
  template <class T> static FG_DEVICE T combine(T a, T b) { return fg_max(a, b); }
  template <class T> static FG_DEVICE bool beats(T v, T best) { return v > best || (v != v && best == best); }
};
struct fg_window_min {
  template <class T> static FG_DEVICE T id() { return fg_window_highest(T(0)); }
  template <class T> static FG_DEVICE T combine(T a, T b) { return fg_min(a, b); }
  template <class T> static FG_DEVICE bool beats(T v, T best) { return v < best || (v != v && best == best); }
};
FG_INLINE int64_t fg_floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((b - 1 - a) / b); }

// Row `row` of a row-major array of `sizes` as indices of axes 0 .. nd-2; the next row.
template <class G> FG_INLINE void fg_window_row_index(const int64_t* sizes, int64_t row, int64_t* idx) {
  FG_UNROLL for (int a = G::nd - 2; a >= 0; --a) { idx[a] = row % sizes[a]; row /= sizes[a]; }
}
template <class G> FG_INLINE void fg_window_next_row(const int64_t* sizes, int64_t* idx) {
  FG_UNROLL for (int a = G::nd - 2; a >= 0; --a) {
    if (++idx[a] < sizes[a]) return;
    idx[a] = 0;
  }
}
// The operand rows that window row `idx` reads at each of its rsize offsets on the row axes
// (row-major): offsets in elements, -1 for padding.
template <class G> FG_INLINE void fg_window_sources(const int64_t* n, const int64_t* idx, int64_t* src) {
  int64_t count = 1;
  src[0] = 0;
  FG_UNROLL for (int a = 0; a < G::nd - 1; ++a) {
    for (int64_t i = count - 1; i >= 0; --i) {    // in place: entry i becomes i*k .. i*k+k-1
      const int64_t base = src[i];
      FG_UNROLL for (int64_t j = G::k[a] - 1; j >= 0; --j) {
        const int64_t p = idx[a] * G::s[a] + j * G::wd[a] - G::lo[a];
        const bool inside = base >= 0 && p >= 0 && p % G::bd[a] == 0 && p / G::bd[a] < n[a];
        src[i * G::k[a] + j] = inside ? base * n[a] + p / G::bd[a] : -1;
      }
    }
    count *= G::k[a];
  }
  FG_UNROLL for (int64_t i = 0; i < G::rsize; ++i) src[i] = src[i] < 0 ? -1 : src[i] * n[G::nd - 1];
}
// The row-major index of the i-th row offset in column-major order (axis 0 fastest).
template <class G> FG_INLINE int64_t fg_window_row_major(int64_t i) {
  int64_t r = 0, stride = 1;
  FG_UNROLL for (int a = 0; a < G::nd - 1; ++a) { r += (i % G::k[a]) * (G::rsize / stride / G::k[a]); i /= G::k[a]; stride *= G::k[a]; }
  return r;
}
// The windows c (last axis) whose offset jl reads inside the operand: [*b, *e) (base
// dilation holes among them are skipped by the loops).
template <class G> FG_INLINE void fg_window_columns(const int64_t* n, const int64_t* t, int64_t jl, int64_t* b, int64_t* e) {
  constexpr int L = G::nd - 1;
  const int64_t d = jl * G::wd[L] - G::lo[L], last = (n[L] - 1) * G::bd[L];
  const int64_t lo = -fg_floor_div(d, G::s[L]), hi = fg_floor_div(last - d, G::s[L]) + 1;
  *b = lo > 0 ? lo : 0;
  *e = hi < t[L] ? hi : t[L];
}

// The columns where the window reads inside the operand at every offset of the last axis,
// where the kernels run their fast loops: [*b, *e) (empty with base dilation holes).
template <class G> FG_INLINE void fg_window_interior(const int64_t* n, const int64_t* t, int64_t* b, int64_t* e) {
  constexpr int L = G::nd - 1;
  *b = 0;
  *e = G::bd[L] == 1 ? t[L] : 0;
  for (int64_t jl = 0; jl < G::k[L]; ++jl) {
    int64_t cb, ce;
    fg_window_columns<G>(n, t, jl, &cb, &ce);
    *b = cb > *b ? cb : *b;
    *e = ce < *e ? ce : *e;
  }
  *e = *e > *b ? *e : *b;
}

// reduce_window_max / _min over window rows [r0, r1). numpy combines axis by axis, axis 0
// first, so its result is the left fold over the window in column-major order (axis 0
// fastest); so is this one, which picks the same one of +0 and -0 and the same NaN. Padding
// is the identity, which never changes a fold: it is skipped.
template <class G, class Op, class T>
FG_INLINE void fg_window_reduce_columns(const int64_t* n, const int64_t* t, const int64_t* src, int64_t b, int64_t e, const T* x, T* o) {
  constexpr int L = G::nd - 1;
  for (int64_t c = b; c < e; ++c) o[c] = Op::template id<T>();
  for (int64_t jl = 0; jl < G::k[L]; ++jl) {
    const int64_t d = jl * G::wd[L] - G::lo[L];
    int64_t cb, ce;
    fg_window_columns<G>(n, t, jl, &cb, &ce);
    cb = cb > b ? cb : b;
    ce = ce < e ? ce : e;
    for (int64_t i = 0; i < G::rsize; ++i) {
      const int64_t s = src[fg_window_row_major<G>(i)];
      if (s < 0) continue;
      for (int64_t c = cb; c < ce; ++c) {
        const int64_t p = c * G::s[L] + d;
        if (G::bd[L] == 1 || p % G::bd[L] == 0) o[c] = Op::combine(o[c], x[s + p / G::bd[L]]);
      }
    }
  }
}
// The row loop of the window kernels over window rows [r0, r1): per row, the operand rows
// its windows read (src, -1 for padding) and the columns [ib, ie) whose windows hold no
// padding at all (empty when a whole window row is padding): f(row, src, ib, ie).
template <class G, class F>
FG_INLINE void fg_window_rows(const int64_t* m, int64_t r0, int64_t r1, F f) {
  constexpr int L = G::nd - 1;
  const int64_t *n = m, *t = m + G::nd;
  int64_t idx[G::nd], src[G::rsize], ib, ie;
  fg_window_interior<G>(n, t, &ib, &ie);
  fg_window_row_index<G>(t, r0, idx);
  for (int64_t row = r0; row < r1; ++row, fg_window_next_row<G>(t, idx)) {
    fg_window_sources<G>(n, idx, src);
    bool inside = true;
    for (int64_t i = 0; i < G::rsize; ++i) inside = inside && src[i] >= 0;
    f(row, (const int64_t*)src, inside ? ib : t[L], inside ? ie : t[L]);
  }
}
template <class G, class Op, class T>
FG_INLINE void fg_window_reduce(const int64_t* m, int64_t r0, int64_t r1, const T* x, T* out) {
  constexpr int L = G::nd - 1;
  const int64_t *n = m, *t = m + G::nd;
  fg_window_rows<G>(m, r0, r1, [&](int64_t row, const int64_t* src, int64_t ib, int64_t ie) {
    T* o = out + row * t[L];
    fg_window_reduce_columns<G, Op>(n, t, src, 0, ib, x, o);
    fg_window_reduce_columns<G, Op>(n, t, src, ie, t[L], x, o);
    #pragma omp simd
    for (int64_t c = ib; c < ie; ++c) {     // no padding: the whole fold in registers
      T acc = Op::template id<T>();
      FG_UNROLL for (int64_t jl = 0; jl < G::k[L]; ++jl)
        FG_UNROLL for (int64_t i = 0; i < G::rsize; ++i)
          acc = Op::combine(acc, x[src[fg_window_row_major<G>(i)] + c * G::s[L] + jl * G::wd[L] - G::lo[L]]);
      o[c] = acc;
    }
  });
}

// reduce_window_argmax / _argmin over window rows [r0, r1): the row-major position of the
// first extremum (the first NaN if any). Padding never beats the identity the search starts
// from: it is skipped.
template <class G, class Op, class T, class P>
FG_INLINE void fg_window_position_columns(const int64_t* n, const int64_t* t, const int64_t* src, int64_t b, int64_t e, const T* x, P* o) {
  constexpr int L = G::nd - 1;
  for (int64_t c = b; c < e; ++c) {
    T best = Op::template id<T>();
    P at = 0;
    for (int64_t i = 0; i < G::rsize; ++i) {
      if (src[i] < 0) continue;
      for (int64_t jl = 0; jl < G::k[L]; ++jl) {
        const int64_t p = c * G::s[L] + jl * G::wd[L] - G::lo[L];
        if (p < 0 || p % G::bd[L] != 0 || p / G::bd[L] >= n[L]) continue;
        const T v = x[src[i] + p / G::bd[L]];
        if (Op::beats(v, best)) { best = v; at = (P)(i * G::k[L] + jl); }
      }
    }
    o[c] = at;
  }
}
template <class G, class Op, class T, class P>
FG_INLINE void fg_window_position(const int64_t* m, int64_t r0, int64_t r1, const T* x, P* out) {
  constexpr int L = G::nd - 1;
  const int64_t *n = m, *t = m + G::nd;
  fg_window_rows<G>(m, r0, r1, [&](int64_t row, const int64_t* src, int64_t ib, int64_t ie) {
    P* o = out + row * t[L];
    fg_window_position_columns<G, Op>(n, t, src, 0, ib, x, o);
    fg_window_position_columns<G, Op>(n, t, src, ie, t[L], x, o);
    #pragma omp simd
    for (int64_t c = ib; c < ie; ++c) {     // no padding
      T best = Op::template id<T>();
      P at = 0;
      FG_UNROLL for (int64_t i = 0; i < G::rsize; ++i)
        FG_UNROLL for (int64_t jl = 0; jl < G::k[L]; ++jl) {
          const T v = x[src[i] + c * G::s[L] + jl * G::wd[L] - G::lo[L]];
          const bool better = Op::beats(v, best);
          best = better ? v : best;
          at = better ? (P)(i * G::k[L] + jl) : at;
        }
      o[c] = at;
    }
  });
}

// window_gather over window rows [r0, r1): each window's element at its row-major position
// (0 for padding; positions outside the window select nothing).
template <class G, class T, class P>
FG_INLINE void fg_window_gather(const int64_t* m, int64_t r0, int64_t r1, const T* x, const P* pos, T* out) {
  constexpr int L = G::nd - 1;
  const int64_t *n = m, *t = m + G::nd;
  int64_t idx[G::nd], src[G::rsize];
  fg_window_row_index<G>(t, r0, idx);
  for (int64_t row = r0; row < r1; ++row, fg_window_next_row<G>(t, idx)) {
    fg_window_sources<G>(n, idx, src);
    const P* q = pos + row * t[L];
    T* o = out + row * t[L];
    for (int64_t c = 0; c < t[L]; ++c) {
      const int64_t w = (int64_t)q[c], i = w / G::k[L], jl = w - i * G::k[L];
      const int64_t p = c * G::s[L] + jl * G::wd[L] - G::lo[L];
      const bool inside = w >= 0 && w < G::size && src[i] >= 0 && p >= 0 && p % G::bd[L] == 0
                          && p / G::bd[L] < n[L];
      o[c] = inside ? x[src[i] + p / G::bd[L]] : T(0);
    }
  }
}

// window_scatter_add over operand rows [r0, r1): each element sums the cotangents of the
// windows whose position points at it, from 0 in row-major window order (numpy's order);
// with disjoint windows it takes its one cotangent as it is. Each operand row collects from
// the window rows covering it; those read each operand element once per window offset.
template <class G, class T, class P>
FG_INLINE void fg_window_scatter_columns(const int64_t* n, const int64_t* t, int64_t b, int64_t e, int64_t here, const T* cr, const P* qr, T* o) {
  constexpr int L = G::nd - 1;
  for (int64_t jl = G::k[L] - 1; jl >= 0; --jl) {   // increasing window order per element
    int64_t cb, ce;
    fg_window_columns<G>(n, t, jl, &cb, &ce);
    cb = cb > b ? cb : b;
    ce = ce < e ? ce : e;
    for (int64_t w = cb; w < ce; ++w) {
      const int64_t p = w * G::s[L] + jl * G::wd[L] - G::lo[L];
      if (G::bd[L] != 1 && p % G::bd[L] != 0) continue;
      T& x = o[p / G::bd[L]];
      if ((int64_t)qr[w] == here + jl) x = G::disjoint ? cr[w] : fg_add(x, cr[w]);
    }
  }
}
template <class G, class T, class P>
FG_INLINE void fg_window_scatter(const int64_t* m, int64_t r0, int64_t r1, const T* ct, const P* pos, T* out) {
  constexpr int L = G::nd - 1;
  const int64_t *n = m, *t = m + G::nd;
  int64_t idx[G::nd], ib, ie, win[G::nd][G::kmax], off[G::nd][G::kmax], count[G::nd], at[G::nd];
  fg_window_interior<G>(n, t, &ib, &ie);
  fg_window_row_index<G>(n, r0, idx);
  for (int64_t row = r0; row < r1; ++row, fg_window_next_row<G>(n, idx)) {
    T* o = out + row * n[L];
    for (int64_t c = 0; c < n[L]; ++c) o[c] = T(0);
    // Per row axis, the windows covering this row in increasing order (decreasing offset).
    bool covered = true;
    FG_UNROLL for (int a = 0; a < L; ++a) {
      const int64_t h = G::lo[a] + idx[a] * G::bd[a];
      count[a] = at[a] = 0;
      for (int64_t jj = G::k[a] - 1; jj >= 0; --jj) {
        const int64_t p = h - jj * G::wd[a];
        if (p >= 0 && p % G::s[a] == 0 && p / G::s[a] < t[a]) {
          win[a][count[a]] = p / G::s[a];
          off[a][count[a]++] = jj;
        }
      }
      covered = covered && count[a] > 0;
    }
    // Every combination of them, in row-major window order.
    while (covered) {
      int64_t wrow = 0, here = 0;
      FG_UNROLL for (int a = 0; a < L; ++a) {
        wrow = wrow * t[a] + win[a][at[a]];
        here = here * G::k[a] + off[a][at[a]];
      }
      here *= G::k[L];
      const T* cr = ct + wrow * t[L];
      const P* qr = pos + wrow * t[L];
      if (G::disjoint) {         // each element in one window at most: windows in parallel
        fg_window_scatter_columns<G>(n, t, 0, ib, here, cr, qr, o);
        fg_window_scatter_columns<G>(n, t, ie, t[L], here, cr, qr, o);
        #pragma omp simd
        for (int64_t w = ib; w < ie; ++w) {
          FG_UNROLL for (int64_t jl = 0; jl < G::k[L]; ++jl) {
            T& x = o[w * G::s[L] + jl * G::wd[L] - G::lo[L]];
            x = (int64_t)qr[w] == here + jl ? cr[w] : x;
          }
        }
      } else {
        fg_window_scatter_columns<G>(n, t, 0, t[L], here, cr, qr, o);
      }
      covered = false;
      for (int a = L - 1; a >= 0 && !covered; --a) {
        covered = ++at[a] < count[a];
        if (!covered) at[a] = 0;
      }
    }
  }
}
"""


def _window_geometry_c(window_dimensions, window_strides, padding, base_dilation,
                       window_dilation) -> str:
    """The geometry struct of a window kernel (see ``WINDOW_C``)."""
    nd = len(window_dimensions)
    arrays = {"k": window_dimensions, "s": window_strides, "lo": [lo for lo, _ in padding],
              "bd": base_dilation, "wd": window_dilation}
    fields = ", ".join(f"{name}[{nd}] = {{{', '.join(map(str, v))}}}" for name, v in arrays.items())
    disjoint = _disjoint(window_dimensions, window_strides, window_dilation)
    return (f"struct geo {{\n  static constexpr int nd = {nd};\n"
            f"  static constexpr int64_t {fields};\n"
            f"  static constexpr int64_t size = {math.prod(window_dimensions)}, "
            f"rsize = {math.prod(window_dimensions[:-1])}, kmax = {max(window_dimensions)};\n"
            f"  static constexpr bool disjoint = {'true' if disjoint else 'false'};\n}};\n")


def _window_c_kernel(call: str, operand_sizes, window_counts, grid_shape, geometry) -> core.CKernel | None:
    """A window kernel: ``call`` (a C++ call of one of the ``WINDOW_C`` templates) over the
    rows of ``grid_shape``, with the operand's sizes and the window counts at run time."""
    if not grid_shape:
        return None
    return core.CKernel(WINDOW_C, _window_geometry_c(**geometry), call + ";",
                        math.prod(grid_shape[:-1]), grid_shape[-1],
                        tuple(operand_sizes) + tuple(window_counts))


def _reduce_window_c_kernel(computation: str):
    def c_kernel(in_avals, out_avals, **geometry):
        (x,), (out,) = in_avals, out_avals
        call = f"fg_window_reduce<geo, fg_window_{computation}>(m, r0, r1, in0, out0)"
        return _window_c_kernel(call, x.shape, out.shape, out.shape, geometry)
    return c_kernel


def _window_arg_c_kernel(computation: str):
    def c_kernel(in_avals, out_avals, **geometry):
        (x,), (out,) = in_avals, out_avals
        call = f"fg_window_position<geo, fg_window_{computation}>(m, r0, r1, in0, out0)"
        return _window_c_kernel(call, x.shape, out.shape, out.shape, geometry)
    return c_kernel


def _window_gather_c_kernel(in_avals, out_avals, **geometry):
    (t, pos), (out,) = in_avals, out_avals
    return _window_c_kernel("fg_window_gather<geo>(m, r0, r1, in0, in1, out0)",
                            t.shape, pos.shape, out.shape, geometry)


def _window_scatter_add_c_kernel(in_avals, out_avals, *, operand_shape, **geometry):
    (ct, pos), (out,) = in_avals, out_avals
    return _window_c_kernel("fg_window_scatter<geo>(m, r0, r1, in0, in1, out0)",
                            operand_shape, ct.shape, out.shape, geometry)


def _window_abstract(name: str, kinds: str, out_dtype=None):
    def abstract_eval(x, **geometry):
        if x.dtype.kind not in kinds:
            raise core.type_error(name, f"unsupported operand dtype {x.dtype}", [x])
        shape = _window_shape(name, [x], x.shape, **geometry)
        return ShapedArray(shape, out_dtype or x.dtype, x.weak_type and out_dtype is None)
    return abstract_eval


def _check_positions(name: str, avals, pos, window_shape):
    if pos.dtype.kind not in "iu" or pos.shape != window_shape:
        raise core.type_error(name, f"positions must be integers of the windows' shape "
                              f"{window_shape}", avals)


def _window_gather_abstract(t, pos, **geometry):
    name = "window_gather"
    _check_positions(name, [t, pos], pos, _window_shape(name, [t, pos], t.shape, **geometry))
    return ShapedArray(pos.shape, t.dtype, t.weak_type)


def _window_scatter_add_abstract(ct, pos, *, operand_shape, **geometry):
    name = "window_scatter_add"
    window_shape = _window_shape(name, [ct, pos], operand_shape, **geometry)
    _check_positions(name, [ct, pos], pos, window_shape)
    if ct.shape != window_shape:
        raise core.type_error(name, f"cotangent must have the windows' shape {window_shape}",
                              [ct, pos])
    return ShapedArray(tuple(operand_shape), ct.dtype, ct.weak_type)


def _with_batch_axis(d: int, window_dimensions, window_strides, padding, base_dilation,
                     window_dilation, **params):
    """The same windows for an operand with a new axis ``d``: a size-1 window along it."""
    ins = lambda t, v: tuple(t[:d]) + (v,) + tuple(t[d:])
    return dict(params, window_dimensions=ins(window_dimensions, 1),
                window_strides=ins(window_strides, 1), padding=ins(padding, (0, 0)),
                base_dilation=ins(base_dilation, 1), window_dilation=ins(window_dilation, 1))


def _unary_window_batch(prim):
    def batch(args, dims, **params):
        (x,), (d,) = args, dims
        return prim.bind(x, **_with_batch_axis(d, **params)), d
    return batch


def _pair_window_batch(prim):
    """window_gather / window_scatter_add: both operands batched along a leading axis."""
    def batch(args, dims, **params):
        size = batch_size(args, dims)
        x, pos = (move_to_front_or_broadcast(a, d, size) for a, d in zip(args, dims))
        params = _with_batch_axis(0, **params)
        if "operand_shape" in params:
            params["operand_shape"] = (size,) + tuple(params["operand_shape"])
        return prim.bind(x, pos, **params), 0
    return batch


def _window_prim(name: str, impl, abstract_eval, batch, c_kernel=None) -> core.Primitive:
    p = core.Primitive(name)
    p.impl, p.abstract_eval, p.batch, p.c_kernel = impl, abstract_eval, batch(p), c_kernel
    p.fresh_result = True
    return p


def _reduce_window_prim(computation: str, kinds: str) -> core.Primitive:
    """Sums have no C kernel: numpy's order of additions is not worth copying."""
    name = f"reduce_window_{computation}"
    return _window_prim(name, functools.partial(_reduce_window_impl, computation=computation),
                        _window_abstract(name, kinds), _unary_window_batch,
                        None if computation == "sum" else _reduce_window_c_kernel(computation))


def _window_arg_prim(computation: str) -> core.Primitive:
    name = f"reduce_window_arg{computation}"
    p = _window_prim(name, functools.partial(_window_arg_impl, computation=computation),
                     _window_abstract(name, "biuf", dtypes.int32), _unary_window_batch,
                     _window_arg_c_kernel(computation))
    defjvp_zero(p)
    return p


reduce_window_sum_p = _reduce_window_prim("sum", "iufc")
reduce_window_max_p = _reduce_window_prim("max", "biuf")
reduce_window_min_p = _reduce_window_prim("min", "biuf")
reduce_window_argmax_p = _window_arg_prim("max")
reduce_window_argmin_p = _window_arg_prim("min")
window_gather_p = _window_prim("window_gather", _window_gather_impl, _window_gather_abstract,
                               _pair_window_batch, _window_gather_c_kernel)
window_scatter_add_p = _window_prim("window_scatter_add", _window_scatter_add_impl,
                                    _window_scatter_add_abstract, _pair_window_batch,
                                    _window_scatter_add_c_kernel)


def _extremum_jvp(position_prim: core.Primitive):
    """Max / min pooling: the tangent (and, transposed, the cotangent) flows through the
    first element attaining each window's extremum."""
    def jvp(g, ans, x, **geometry):
        return window_gather_p.bind(g, position_prim.bind(x, **geometry), **geometry)
    return jvp


def _window_gather_transpose(ct, t, pos, **geometry):
    if type(ct) is Zero:
        return [None, None]
    return [window_scatter_add_p.bind(ct, pos, operand_shape=t.aval.shape, **geometry), None]


def _window_scatter_add_transpose(ct, x, pos, *, operand_shape, **geometry):
    if type(ct) is Zero:
        return [None, None]
    return [window_gather_p.bind(ct, pos, **geometry), None]


defjvp(reduce_window_max_p, _extremum_jvp(reduce_window_argmax_p))
defjvp(reduce_window_min_p, _extremum_jvp(reduce_window_argmin_p))
defjvp(window_gather_p, lambda g, ans, t, pos, **geometry: window_gather_p.bind(g, pos, **geometry),
       None)
defjvp(window_scatter_add_p,
       lambda g, ans, ct, pos, **params: window_scatter_add_p.bind(g, pos, **params), None)
window_gather_p.transpose = _window_gather_transpose
window_scatter_add_p.transpose = _window_scatter_add_transpose


def _reduce_window_sum_transpose(ct, x, *, window_dimensions, window_strides, padding,
                                 base_dilation, window_dilation):
    """Each input element receives the cotangents of the windows that cover it: a sum pool
    of the cotangent with the transposed geometry (strides and base dilation swap roles)."""
    if type(ct) is Zero:
        return [None]
    ct_shape = core.get_aval(ct).shape
    if x.aval.size == 0 or math.prod(ct_shape) == 0:
        return [ad.zeros(x.aval)]
    pads = tuple(_transpose_padding(n, t, k, s, lo, bd, wd) for n, t, k, s, (lo, _), bd, wd in zip(
        x.aval.shape, ct_shape, window_dimensions, window_strides, padding, base_dilation,
        window_dilation))
    return [reduce_window_sum_p.bind(ct, window_dimensions=window_dimensions,
                                     window_strides=base_dilation, padding=pads,
                                     base_dilation=window_strides, window_dilation=window_dilation)]


deflinear(reduce_window_sum_p, _reduce_window_sum_transpose)

_REDUCE_WINDOW = {"sum": reduce_window_sum_p, "max": reduce_window_max_p,
                  "min": reduce_window_min_p}
# The lax functions that name the same computations (``reduce_window(x, -inf, lax.max, ...)``).
_COMPUTATION_NAMES = {ew.add: "sum", ew.max: "max", ew.min: "min"}


def reduce_window(operand, init_value, computation, window_dimensions: Sequence[int],
                  window_strides: Sequence[int] | None = None, padding="VALID",
                  base_dilation: Sequence[int] | None = None,
                  window_dilation: Sequence[int] | None = None):
    """Reduce each window of ``operand`` with ``computation`` ("sum", "max" or "min", or
    the functions ``lax.add``, ``lax.max``, ``lax.min``).

    Every axis is windowed (give window size 1 to axes that are not pooled). ``init_value``
    is None or the computation's identity (0, the dtype's lowest / highest value, or -/+inf);
    padding and base-dilation holes hold that identity. ``padding``: "SAME", "SAME_LOWER",
    "VALID" or (low, high) pairs. Max/min gradients go to the first extremum in each window
    (row-major window order) when there are ties."""
    name = "reduce_window"
    if callable(computation):
        computation = _COMPUTATION_NAMES.get(computation, computation)
    if computation not in _REDUCE_WINDOW:
        raise ValueError(f"{name}: computation must be one of {sorted(_REDUCE_WINDOW)} or "
                         f"lax.add/max/min, got {computation!r}")
    aval = core.get_aval(operand)
    nd = aval.ndim
    if window_dimensions is None:
        raise ValueError(f"{name}: window_dimensions are required")
    window, strides, base_dilation, window_dilation = (
        _ints(name, what, v, nd, "operand axis") for what, v in (
            ("window_dimensions", window_dimensions), ("window_strides", window_strides),
            ("base_dilation", base_dilation), ("window_dilation", window_dilation)))
    geometry = dict(window_dimensions=window, window_strides=strides,
                    padding=padding_pairs(name, padding, aval.shape, window, strides, base_dilation,
                                          window_dilation),
                    base_dilation=base_dilation, window_dilation=window_dilation)
    prim = _REDUCE_WINDOW[computation]
    prim.abstract_eval(aval, **geometry)           # eager too: the same checks and messages
    identity = _identity(computation, aval.dtype)
    if init_value is not None and not bool(np.asarray(init_value) == identity):
        raise ValueError(f"{name}: init_value {init_value!r} is not the identity of "
                         f"{computation!r} for {aval.dtype} ({identity!r})")
    return prim.bind(operand, **geometry)
