"""NumPy indexing on traced arrays: ``x[idx]``, ``x.at[idx]`` updates, take, sort, nonzero, ...

With nothing traced these functions are NumPy's own. Under a trace, an index is parsed once
into an :class:`_Index`, the plan that both reading (``x[idx]``) and updating
(``x.at[idx].set(v)``) follow:

1. a *window* of ``x`` with ``x``'s rank: reversed axes (negative steps), a static strided
   slice, and one ``gather`` (``scatter``) of the axes indexed by traced integer scalars;
   integer-indexed axes are kept with size 1;
2. the *advanced* axes, indexed by integer arrays (boolean masks become their ``nonzero``),
   broadcast together and stacked into one ``gather`` (or ``scatter``) index;
3. the *layout*: NumPy's rule for where the advanced dimensions go (in place when the advanced
   indices are adjacent, else first), new axes, and dropped integer axes.

Boolean masks need concrete values (the result's shape depends on them); static out-of-range
indices raise NumPy's ``IndexError``, and traced ones follow ``gather``'s rule (negative
indices count from the end; out-of-range ones raise ``IndexError`` when evaluated, where
``lax.dynamic_slice`` would clamp them).
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Any

import numpy as np

from .. import core, dtypes
from ..core import Tracer
from ..interpreters import ad
from ..primitives import elementwise as ew, indexing as ix, reduction as red, structural as st
from ._array import asarray, astype, normalize_axis, operand, promote, static, tracing
from ._shape import flip, ravel

_VALID_INDICES = ("only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and "
                  "integer or boolean arrays are valid indices")
_MASK_WHY = ("a boolean mask used as an index: the result's shape depends on the mask's values "
             "(funcgrad.numpy.where(mask, x, 0) keeps the shape static)")


def _has_tracer(obj) -> bool:
    t = type(obj)
    if t is Tracer:
        return True
    if t is tuple or t is list:
        return any(_has_tracer(o) for o in obj)
    if t is slice:
        return _has_tracer((obj.start, obj.stop, obj.step))
    return False


def _where() -> str:
    src = core.user_source_info() if tracing() else None
    return f" (at {src})" if src is not None else ""


# ---------------------------------------------------------------------------------------------
# Parsing an index


@dataclasses.dataclass(frozen=True)
class _Index:
    """How to read or update ``x[idx]`` for ``x`` of a given shape (see the module doc)."""
    shape: tuple            # x's shape
    expanded: tuple         # x's shape with an axis per 0-d boolean index
    rev_axes: tuple
    start: tuple            # static slice of the (reversed) expanded array
    limit: tuple
    stride: tuple
    dyn_index: tuple        # per axis: None or a traced integer scalar (window size 1)
    view_shape: tuple       # the window
    adv_axes: tuple         # window axes indexed by arrays
    adv_index: Any          # stacked indices, shape A + (len(adv_axes),), or None
    perm: tuple             # gather result -> advanced dims in NumPy's place
    out_shape: tuple

    @property
    def sliced(self) -> bool:
        return any(self.start) or self.limit != self.expanded or any(s != 1 for s in self.stride)

    @property
    def gathered_shape(self) -> tuple:
        a = self.adv_index_shape
        return a + tuple(n for i, n in enumerate(self.view_shape) if i not in self.adv_axes)

    @property
    def adv_index_shape(self) -> tuple:
        return core.get_aval(self.adv_index).shape[:-1]


def _normalize_item(item):
    """Python ints, slices, None, Ellipsis, boolean masks (numpy) or integer index arrays
    (numpy or traced); 0-d integer arrays become ints."""
    if item is None or item is Ellipsis or type(item) is slice:
        return item
    if type(item) is bool or isinstance(item, np.bool_):
        return np.asarray(item)
    if isinstance(item, (int, np.integer)):
        return int(item)
    if type(item) is Tracer:
        if item.dtype.kind == "b":
            return np.asarray(item.concrete_value(_MASK_WHY))
        if item.dtype.kind not in "iu":
            raise IndexError(f"{_VALID_INDICES}; got a traced {item.aval.str_short()}{_where()}")
        return item
    if isinstance(item, (list, tuple)) or core.is_array(item):
        if _has_tracer(item):
            return _normalize_item(asarray(item))
        arr = np.asarray(item) if not core.is_array(item) else item
        if arr.dtype.kind == "b":
            return arr
        if arr.size == 0 and not core.is_array(item):
            arr = arr.astype(np.intp)        # x[[]]: an empty integer index, as NumPy
        if arr.dtype.kind not in "iu":
            raise IndexError(_VALID_INDICES)
        return int(arr) if arr.ndim == 0 else arr
    raise IndexError(_VALID_INDICES)


def _consumed(item) -> int:
    if item is None or item is Ellipsis:
        return 0
    if isinstance(item, np.ndarray) and item.dtype.kind == "b":
        return item.ndim
    return 1


def _expand_ellipsis(items: list, ndim: int) -> list:
    n_ell = sum(1 for i in items if i is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(_consumed(i) for i in items)
    if used > ndim:
        raise IndexError(f"too many indices for array: array is {ndim}-dimensional, but {used} "
                         f"were indexed{_where()}")
    fill = [slice(None)] * (ndim - used)
    if n_ell:
        k = next(i for i, item in enumerate(items) if item is Ellipsis)   # not ==: tracers
        # An ellipsis that stands for no axes still separates advanced indices (NumPy's rule
        # for where their dims go): keep a placeholder that indexes nothing.
        return items[:k] + (fill or [_EMPTY_ELLIPSIS]) + items[k + 1:]
    return items + fill


_EMPTY_ELLIPSIS = object()


def _is_array_index(item) -> bool:
    if type(item) is Tracer:
        return item.ndim > 0
    return isinstance(item, np.ndarray) or core.is_array(item)


def _check_static_index(i: int, axis: int, n: int) -> int:
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}{_where()}")
    return i % n


def _check_index_array(arr, axis: int, n: int):
    if type(arr) is not Tracer and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -n or hi >= n:
            raise IndexError(f"index {hi if hi >= n else lo} is out of bounds for axis {axis} "
                             f"with size {n}{_where()}")
    return arr


def _static_bound(b):
    if b is None:
        return None
    b = static(b, "a slice bound (slice sizes must be static; use funcgrad.lax.dynamic_slice "
                  "for a traced start)")
    return operator.index(b)


def _slice_window(item: slice, n: int):
    """(start, limit, stride, reversed, size) of a slice of an axis of size n."""
    start, stop, step = slice(_static_bound(item.start), _static_bound(item.stop),
                              _static_bound(item.step)).indices(n)
    rev = step < 0
    if rev:      # x[start:stop:step] == rev(x)[n-1-start : n-1-stop : -step]
        start, stop, step = n - 1 - start, n - 1 - stop, -step
    size = max(0, (stop - start + step - 1) // step)
    return start, start + (size - 1) * step + 1 if size else start, step, rev, size


def _stack_indices(arrays: list, shape: tuple):
    """Broadcast the index arrays to ``shape`` and stack them along a new last axis."""
    if not any(type(a) is Tracer for a in arrays):
        return np.stack([np.broadcast_to(a, shape) for a in arrays], -1).astype(np.intp, copy=False)
    cols = [st.reshape(st.broadcast_to(ew.convert_element_type(a, ix.INDEX_DTYPE), shape),
                       shape + (1,)) for a in arrays]
    return st.concatenate(cols, len(shape))


def _parse(idx, shape: tuple) -> _Index:
    items = _expand_ellipsis([_normalize_item(i) for i in (idx if type(idx) is tuple else (idx,))],
                             len(shape))
    fancy = any(_is_array_index(i) for i in items)   # then integers are advanced indices too
    expanded, start, limit, stride, rev, dyn = [], [], [], [], [], []
    adv = []          # (item position, window axis, index array)
    layout = []       # output dims in item order: ("axis", size) | ("new",) | ("adv",)
    src = 0           # the axis of x the next item indexes

    def add_axis(n, s=0, lim=None, step=1, d=None):
        expanded.append(n)
        start.append(s), limit.append(n if lim is None else lim), stride.append(step), dyn.append(d)
        return len(expanded) - 1

    for pos, item in enumerate(items):
        if item is _EMPTY_ELLIPSIS:
            continue
        if item is None:
            layout.append(("new",))
        elif isinstance(item, np.ndarray) and item.dtype.kind == "b":
            if item.ndim == 0:        # x[True]: a new axis of size 1, indexed by [0] or []
                adv.append((pos, add_axis(1), np.zeros(int(item), np.intp)))
            else:
                for j, (n, m) in enumerate(zip(shape[src:src + item.ndim], item.shape)):
                    if n != m:
                        raise IndexError(
                            f"boolean index did not match indexed array along axis {src + j}; "
                            f"size of axis is {n} but size of corresponding boolean axis is "
                            f"{m}{_where()}")
                for coords in np.nonzero(item):
                    adv.append((pos, add_axis(shape[src]), coords))
                    src += 1
            layout.append(("adv",))
        else:
            n = shape[src]
            if type(item) is int and not fancy:
                i = _check_static_index(item, src, n)
                add_axis(n, i, i + 1)
            elif type(item) is int:
                i = _check_static_index(item, src, n)
                adv.append((pos, add_axis(n), np.asarray(i, np.intp)))
                layout.append(("adv",))
            elif type(item) is slice:
                s, lim, step, flip, size = _slice_window(item, n)
                if flip:
                    rev.append(len(expanded))
                add_axis(n, s, lim, step)
                layout.append(("axis", size))
            elif type(item) is Tracer and item.ndim == 0 and not fancy:
                add_axis(n, d=item)
            else:
                adv.append((pos, add_axis(n), _check_index_array(item, src, n)))
                layout.append(("adv",))
            src += 1

    view_shape = tuple(1 if d is not None else (lim - s + step - 1) // step
                       for s, lim, step, d in zip(start, limit, stride, dyn))
    adv_index, perm, out_shape = _advanced_layout(adv, layout, view_shape)
    return _Index(tuple(shape), tuple(expanded), tuple(rev), tuple(start), tuple(limit),
                  tuple(stride), tuple(dyn), view_shape, tuple(a for _, a, _ in adv), adv_index,
                  perm, out_shape)


def _advanced_layout(adv: list, layout: list, view_shape: tuple):
    """The stacked advanced index, the permutation taking the gather result (advanced dims
    first) to NumPy's order, and the result shape. NumPy keeps the advanced dims in place
    when the advanced indices are adjacent, else puts them first."""
    if not adv:
        return None, (), tuple(entry[1] if entry[0] == "axis" else 1 for entry in layout)
    try:
        a_shape = np.broadcast_shapes(*(core.get_aval(i).shape for _, _, i in adv))
    except ValueError:
        shapes = " ".join(str(core.get_aval(i).shape) for _, _, i in adv)
        raise IndexError("shape mismatch: indexing arrays could not be broadcast together "
                         f"with shapes {shapes}{_where()}") from None
    positions = sorted({p for p, _, _ in adv})
    adjacent = positions == list(range(positions[0], positions[-1] + 1))
    adv_axes = [a for _, a, _ in adv]
    # In place: window axes before the first advanced one go in front of the advanced dims.
    before = sum(1 for i in range(adv_axes[0]) if i not in adv_axes) if adjacent else 0
    k, rest = len(a_shape), len(view_shape) - len(adv_axes)
    perm = tuple(range(k, k + before)) + tuple(range(k)) + tuple(range(k + before, k + rest))
    out_shape = [] if adjacent else list(a_shape)
    for entry in layout:
        if entry[0] == "adv":
            if adjacent:
                out_shape.extend(a_shape)
                adjacent = False      # once, for the whole block
        else:
            out_shape.append(entry[1] if entry[0] == "axis" else 1)
    return _stack_indices([i for _, _, i in adv], a_shape), perm, tuple(out_shape)


# ---------------------------------------------------------------------------------------------
# Reading and writing the window


def _scalar_indices(p: _Index):
    """The axes indexed by traced integer scalars, their stacked index (shape ``(k,)``), and
    the window's shape without those axes; None when there are none."""
    axes = tuple(a for a, d in enumerate(p.dyn_index) if d is not None)
    if not axes:
        return None
    index = _stack_indices([p.dyn_index[a] for a in axes], ())
    return axes, index, tuple(n for a, n in enumerate(p.view_shape) if a not in axes)


def _window(x, p: _Index):
    if p.expanded != p.shape:
        x = st.reshape(x, p.expanded)
    if p.rev_axes:
        x = st.rev(x, p.rev_axes)
    x = st.slice(x, p.start, p.limit, p.stride)
    scalars = _scalar_indices(p)
    if scalars is not None:
        axes, index, _ = scalars
        x = st.reshape(ix.gather(x, index, axes), p.view_shape)
    return x


def _write_window(x, p: _Index, new):
    """``x`` with its window replaced by ``new`` (inverse of :func:`_window`)."""
    base = st.reshape(x, p.expanded) if p.expanded != p.shape else x
    if p.rev_axes:
        base = st.rev(base, p.rev_axes)
    scalars = _scalar_indices(p)
    if scalars is not None:
        axes, index, rest = scalars
        sliced = st.slice(base, p.start, p.limit, p.stride)
        new = ix.scatter(sliced, index, st.reshape(new, rest), axes, "set")
    if p.sliced:
        if all(s == 1 for s in p.stride):
            new = ix.dynamic_update_slice(base, new, p.start)
        else:     # strided: spread the window out with slice's transpose, then select
            params = dict(start_indices=p.start, limit_indices=p.limit, strides=p.stride)
            undefined = ad.UndefinedPrimal(core.get_aval(base))
            spread = lambda v: st.slice_p.transpose(v, undefined, **params)[0]
            mask = spread(st.full(core.get_aval(new).shape, True, dtypes.bool_))
            new = ew.select(mask, spread(new), base)
    if p.rev_axes:
        new = st.rev(new, p.rev_axes)
    return st.reshape(new, p.shape)


def getitem(x, idx):
    """``x[idx]`` with NumPy's basic and advanced indexing semantics."""
    if not tracing() or not (type(x) is Tracer or _has_tracer(idx)):
        return (x if core.is_array(x) else np.asarray(x))[idx]
    x = operand(x)
    p = _parse(idx, core.get_aval(x).shape)
    out = _window(x, p)
    if p.adv_axes:
        out = st.transpose(ix.gather(out, p.adv_index, p.adv_axes), p.perm)
    return st.reshape(out, p.out_shape)


# ---------------------------------------------------------------------------------------------
# x.at[idx] updates

_NUMPY_UFUNC = {"add": np.add, "mul": np.multiply, "min": np.minimum, "max": np.maximum,
                "divide": np.true_divide, "power": np.power}
_ELEMENTWISE = {"add": ew.add, "mul": ew.mul, "min": ew.min, "max": ew.max, "divide": ew.div,
                "power": ew.pow}


def _broadcast_values(v, shape: tuple):
    """``v`` broadcast to ``shape`` as NumPy's assignment does (leading 1s may be dropped)."""
    vshape = core.get_aval(v).shape
    extra = max(len(vshape) - len(shape), 0)
    try:
        if any(n != 1 for n in vshape[:extra]) or \
                np.broadcast_shapes(vshape[extra:], shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"could not broadcast input array from shape {vshape} into shape "
                         f"{shape}{_where()}") from None
    return st.broadcast_to(st.reshape(v, vshape[extra:]), shape)


def update(x, idx, values, mode: str):
    """A copy of ``x`` with ``x[idx]`` set to (or combined with, per ``mode``) ``values``."""
    if not tracing() or not (type(x) is Tracer or type(values) is Tracer or _has_tracer(idx)
                             or _has_tracer(values)):
        out = x.copy() if core.is_array(x) else np.array(x)
        if mode == "set":
            out[idx] = values
        else:
            _NUMPY_UFUNC[mode].at(out, idx, values)
        return out
    x = operand(x)
    aval = core.get_aval(x)
    p = _parse(idx, aval.shape)
    v = _broadcast_values(astype(operand(values), aval.dtype), p.out_shape)
    sub = _window(x, p)
    if not p.adv_axes:
        v = st.reshape(v, p.view_shape)
        new = v if mode == "set" else _ELEMENTWISE[mode](sub, v)
    else:
        ordered = tuple(p.gathered_shape[i] for i in p.perm)
        v = st.transpose(st.reshape(v, ordered), tuple(np.argsort(p.perm)))
        if mode in ("divide", "power"):   # combine repeated indices' operands first
            total = ix.scatter_mul(ew.ones_like(sub), p.adv_index, v, p.adv_axes)
            new = _ELEMENTWISE[mode](sub, total)
        else:
            new = ix.scatter(sub, p.adv_index, v, p.adv_axes, mode)
    return _write_window(x, p, new)


class _IndexUpdateRef:
    """``x.at[idx]``: the methods return an updated copy of ``x``. Repeated indices
    accumulate for ``add``/``multiply``/``min``/``max`` (as ``np.add.at``); for ``set`` the
    last write wins."""

    __slots__ = ("array", "index")

    def __init__(self, array, index):
        self.array, self.index = array, index

    def get(self):
        return getitem(self.array, self.index)

    def set(self, values):
        return update(self.array, self.index, values, "set")

    def add(self, values):
        return update(self.array, self.index, values, "add")

    def multiply(self, values):
        return update(self.array, self.index, values, "mul")

    mul = multiply

    def divide(self, values):
        return update(self.array, self.index, values, "divide")

    def power(self, values):
        return update(self.array, self.index, values, "power")

    def min(self, values):
        return update(self.array, self.index, values, "min")

    def max(self, values):
        return update(self.array, self.index, values, "max")


class IndexUpdateHelper:
    """The ``.at`` property: ``x.at[idx].set(v)`` is a functional ``x[idx] = v``. Works on
    traced and NumPy arrays alike (a NumPy array is copied, never changed)."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __getitem__(self, index) -> _IndexUpdateRef:
        return _IndexUpdateRef(self.array, index)


# ---------------------------------------------------------------------------------------------
# take, take_along_axis, choose, compress, extract, select


def take(a, indices, axis=None, out=None, mode=None):
    """numpy.take; ``mode`` is ``"raise"`` (default), ``"wrap"`` or ``"clip"``."""
    if not tracing() or not (type(a) is Tracer or _has_tracer(indices)):
        return np.take(a, indices, axis, out, "raise" if mode is None else mode)
    if out is not None:
        raise ValueError("take: out= is not supported on traced arrays")
    a = operand(a)
    if axis is None:
        a, axis = st.reshape(a, (core.get_aval(a).size,)), 0
    ax = normalize_axis(axis, core.get_aval(a).ndim)
    n = core.get_aval(a).shape[ax]
    if mode in ("wrap", "clip"):
        indices = _wrap_or_clip(indices, n, mode)
    elif mode not in (None, "raise"):
        raise ValueError(f"take: mode must be 'raise', 'wrap' or 'clip', got {mode!r}")
    return getitem(a, (slice(None),) * ax + (indices,))


def _wrap_or_clip(indices, n: int, mode: str):
    if not _has_tracer(indices):
        indices = np.asarray(indices)
        return np.mod(indices, n) if mode == "wrap" else np.clip(indices, 0, n - 1)
    indices = operand(indices)
    return ew.rem(indices, n) if mode == "wrap" else ew.clamp(indices, 0, n - 1)


def take_along_axis(arr, indices, axis=-1):
    """numpy.take_along_axis (``axis=None`` flattens ``arr``)."""
    if not tracing() or not _has_tracer((arr, indices)):
        return np.take_along_axis(arr, indices, axis)
    arr, indices = operand(arr), operand(indices)
    if axis is None:
        arr, axis = st.reshape(arr, (core.get_aval(arr).size,)), 0
    a_aval, i_aval = core.get_aval(arr), core.get_aval(indices)
    if a_aval.ndim != i_aval.ndim:
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    if not dtypes.is_integer(i_aval.dtype):
        raise IndexError("`indices` must be an integer array")
    return ix.take_along_axis(arr, indices, normalize_axis(axis, a_aval.ndim))


def choose(a, choices, mode="raise"):
    """numpy.choose: ``choices[a[i]][i]`` for each position, broadcasting everything."""
    if not tracing() or not _has_tracer((a, list(choices))):
        return np.choose(a, choices, mode=mode)
    a = operand(a)
    choices = promote(*choices)
    k = len(choices)
    shape = np.broadcast_shapes(core.get_aval(a).shape, *(core.get_aval(c).shape for c in choices))
    stacked = st.concatenate([st.reshape(st.broadcast_to(c, shape), (1,) + shape)
                              for c in choices], 0)
    if mode != "raise":
        a = _wrap_or_clip(a, k, mode)
    idx = st.reshape(st.broadcast_to(a, shape), (1,) + shape)
    return st.reshape(ix.take_along_axis(stacked, idx, 0), shape)


def _concrete_mask(condition, what: str) -> np.ndarray:
    if type(condition) is Tracer:
        condition = condition.concrete_value(f"the condition of {what} (its values decide the "
                                             "result's shape)")
    return np.asarray(condition, dtype=bool)


def compress(condition, a, axis=None, out=None):
    """numpy.compress (the condition must be concrete)."""
    if not tracing() or not _has_tracer((condition, a)):
        return np.compress(condition, a, axis, out)
    cond = _concrete_mask(condition, "compress").ravel()
    a = operand(a)
    if axis is None:
        a, axis = st.reshape(a, (core.get_aval(a).size,)), 0
    n = core.get_aval(a).shape[normalize_axis(axis, core.get_aval(a).ndim)]
    if cond.size > n:
        raise IndexError(f"compress: condition has {cond.size} entries, more than the axis "
                         f"size {n}")
    return take(a, np.flatnonzero(cond), axis)


def extract(condition, arr):
    """numpy.extract (the condition must be concrete)."""
    if not tracing() or not _has_tracer((condition, arr)):
        return np.extract(condition, arr)
    arr = operand(arr)
    return take(st.reshape(arr, (core.get_aval(arr).size,)),
                np.flatnonzero(_concrete_mask(condition, "extract")))


def select(condlist, choicelist, default=0):
    """numpy.select: from the first true condition's choice, else ``default``."""
    if not tracing() or not _has_tracer((list(condlist), list(choicelist), default)):
        return np.select(condlist, choicelist, default)
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    if not condlist:
        raise ValueError("select with an empty condition list is not possible")
    *choices, out = promote(*choicelist, default)
    for i, (cond, choice) in reversed(list(enumerate(zip(condlist, choices)))):
        cond = operand(cond)
        if core.get_aval(cond).dtype != dtypes.bool_:
            raise TypeError(f"invalid entry {i} in condlist: should be boolean ndarray")
        out = ew.select(cond, choice, out)
    return out


# ---------------------------------------------------------------------------------------------
# nonzero, argwhere, flatnonzero, unique


def nonzero(a, *, size=None, fill_value=None):
    """numpy.nonzero. On traced arrays either the value is concrete, or ``size`` fixes the
    number of results (extra slots get ``fill_value``, default 0; extra nonzeros are dropped),
    which keeps shapes static under ``jit``/``vmap``."""
    if type(a) is not Tracer or size is None:
        value = a.concrete_value(f"nonzero of a traced array without size= ({_MASK_WHY})") \
            if type(a) is Tracer else a
        out = np.nonzero(value)
        return out if size is None else _fit(out, size, fill_value)
    aval = a.aval
    if aval.ndim == 0:
        raise ValueError("Calling nonzero on 0d arrays is not allowed. Use "
                         "np.atleast_1d(scalar).nonzero() instead.")
    n = aval.size
    mask = st.reshape(a if aval.dtype == dtypes.bool_ else ew.ne(a, 0), (n,))
    slot = ew.sub(red.cumsum(ew.convert_element_type(mask, ix.INDEX_DTYPE), 0), 1)
    slot = ew.select(ew.bitwise_and(mask, ew.lt(slot, size)), slot, ew.full_like(slot, size))
    flat = ix.scatter(st.full((size + 1,), -1, ix.INDEX_DTYPE), st.reshape(slot, (n, 1)),
                      st.iota(ix.INDEX_DTYPE, n), (0,), "set")
    flat = st.slice(flat, (0,), (size,))
    found = ew.ge(flat, 0)
    fills = _fill_values(fill_value, aval.ndim)
    strides = np.cumprod((1,) + aval.shape[:0:-1])[::-1]
    return tuple(ew.select(found, ew.rem(ew.floor_divide(flat, int(s)), d), ew.full_like(flat, f))
                 for s, d, f in zip(strides, aval.shape, fills))


def _fill_values(fill_value, ndim: int) -> tuple:
    if fill_value is None:
        return (0,) * ndim
    return tuple(np.broadcast_to(np.asarray(fill_value), (ndim,)).tolist())


def _fit(coords: tuple, size: int, fill_value) -> tuple:
    fills = _fill_values(fill_value, len(coords))
    return tuple(np.concatenate([c[:size], np.full(max(size - c.size, 0), f, c.dtype)])
                 for c, f in zip(coords, fills))


def flatnonzero(a, *, size=None, fill_value=None):
    """numpy.flatnonzero (``size=`` as :func:`nonzero`)."""
    flat = st.reshape(a, (a.size,)) if type(a) is Tracer else np.ravel(a)
    return nonzero(flat, size=size, fill_value=fill_value)[0]


def argwhere(a, *, size=None, fill_value=None):
    """numpy.argwhere: ``(N, a.ndim)`` indices of the nonzero entries (``size=`` as
    :func:`nonzero`)."""
    if type(a) is Tracer and size is not None and a.ndim:
        cols = nonzero(a, size=size, fill_value=fill_value)
        return st.concatenate([st.reshape(c, (size, 1)) for c in cols], 1)
    if type(a) is Tracer:
        a = a.concrete_value(f"argwhere of a traced array without size= ({_MASK_WHY})")
    out = np.argwhere(a)
    if size is None:
        return out
    if not out.shape[1]:
        return np.zeros((size, 0), out.dtype)
    return np.stack(_fit(tuple(out.T), size, fill_value), -1)


def unique(ar, return_index=False, return_inverse=False, return_counts=False, axis=None, *,
           equal_nan=True, sorted=True):
    """numpy.unique, on concrete values only (the result's shape depends on the values)."""
    if type(ar) is Tracer:
        ar = ar.concrete_value("unique of a traced array (its shape depends on the values)")
    return np.unique(ar, return_index, return_inverse, return_counts, axis,
                     equal_nan=equal_nan, sorted=sorted)


# ---------------------------------------------------------------------------------------------
# sort, argsort, lexsort, searchsorted


def _sort_operand(a, axis):
    a = operand(a)
    if axis is None:
        return st.reshape(a, (core.get_aval(a).size,)), 0
    return a, normalize_axis(axis, core.get_aval(a).ndim)


def sort(a, axis=-1, kind=None, order=None, *, stable=None, descending: bool = False):
    """numpy.sort. Traced sorts are stable whatever ``kind`` says. ``descending`` (as in
    jax.numpy): largest first (NaNs first), equal elements in their original order."""
    if descending:
        a, axis = (ravel(a), -1) if axis is None else (a, axis)
        return flip(sort(flip(a, axis), axis, kind, order, stable=stable), axis)
    if type(a) is not Tracer:
        return np.sort(a, axis, kind, order, stable=stable)
    if order is not None:
        raise NotImplementedError("sort: order= (structured arrays) is not supported")
    a, ax = _sort_operand(a, axis)
    return ix.sort(a, ax)


def argsort(a, axis=-1, kind=None, order=None, *, stable=None, descending: bool = False):
    """numpy.argsort. Traced argsorts are stable (ties keep index order), i.e. equal to
    NumPy's ``kind="stable"``; NumPy's default quicksort may order ties differently.
    ``descending`` (as in jax.numpy) is stable too: ties keep index order."""
    if descending:     # stable-sort the reversed array, then map back and reverse
        a, axis = (ravel(a), -1) if axis is None else (a, axis)
        return flip(np.shape(a)[axis] - 1 - argsort(flip(a, axis), axis, "stable", order), axis)
    if type(a) is not Tracer:
        return np.argsort(a, axis, kind, order, stable=stable)
    if order is not None:
        raise NotImplementedError("argsort: order= (structured arrays) is not supported")
    a, ax = _sort_operand(a, axis)
    return ix.argsort(a, ax)


def bincount(x, weights=None, minlength=0, *, length=None):
    """numpy.bincount: counts (or summed ``weights``) of each value of the 1-D non-negative
    integer array ``x``. Traced, the number of bins must be static: ``length`` (as in
    jax.numpy), else ``x``'s concrete maximum. Values outside ``[0, length)`` raise
    IndexError (JAX drops them; NumPy raises for negatives and grows the result)."""
    if type(x) is not Tracer and type(weights) is not Tracer:
        counts = np.bincount(x, weights, minlength)
        if length is not None and len(counts) > length:
            raise IndexError(f"bincount: value {len(counts) - 1} is out of bounds for "
                             f"length={length}")
        return counts if length is None else np.pad(counts, (0, length - len(counts)))
    x = operand(x)
    if x.ndim != 1 or not dtypes.is_integer(x.dtype):
        raise TypeError(f"bincount: x must be a 1-D integer array, got {x.aval.str_short()}")
    if length is None:
        values = static(x, "bincount's input (pass length= to trace it)")
        length = max(int(minlength), int(np.max(values, initial=-1)) + 1)
    index = ew.select(ew.lt(x, 0), ew.full_like(x, length), x)     # negatives: out of range
    if weights is None:
        updates, dtype = st.full(x.shape, 1, np.intp), np.intp
    else:
        updates, dtype = astype(operand(weights), np.float64), np.float64
    return ix.scatter_add(st.full((length,), 0, dtype), st.reshape(index, x.shape + (1,)),
                          updates, (0,))


def lexsort(keys, axis=-1):
    """numpy.lexsort: indices sorting by the last key, then the one before, ... (stable)."""
    keys = list(keys)
    if not tracing() or not _has_tracer(keys):
        return np.lexsort(keys, axis)
    keys = [operand(k) for k in keys]
    shape = core.get_aval(keys[0]).shape
    ax = normalize_axis(axis, len(shape))
    iota = st.broadcasted_iota(ix.INDEX_DTYPE, shape, ax)
    return ix.sort(keys[::-1] + [iota], ax, num_keys=len(keys))[-1]


def _sorts_before(x, y):
    """``x < y`` in NumPy's sort order, where NaN is larger than everything else."""
    less = ew.lt(x, y)
    if core.get_aval(x).dtype.kind in "fc":
        less = ew.bitwise_or(less, ew.bitwise_and(ew.ne(y, y), ew.eq(x, x)))
    return less


def searchsorted(a, v, side="left", sorter=None):
    """numpy.searchsorted on traced values: a vectorized binary search, one gather per halving
    of the interval (``ceil(log2(len(a) + 1))`` of them)."""
    if not tracing() or not _has_tracer((a, v, sorter)):
        return np.searchsorted(a, v, side, sorter)
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    a = operand(a)
    if core.get_aval(a).ndim != 1:
        raise ValueError("searchsorted: a must be 1-dimensional")
    if sorter is not None:
        a = take(a, sorter)
    a, v = promote(a, v)
    n, shape = core.get_aval(a).shape[0], core.get_aval(v).shape
    lo = st.full(shape, 0, ix.INDEX_DTYPE)
    hi = st.full(shape, n, ix.INDEX_DTYPE)
    for _ in range(n.bit_length()):
        active = ew.lt(lo, hi)
        mid = ew.floor_divide(ew.add(lo, hi), 2)
        a_mid = ix.gather(a, st.reshape(ew.min(mid, n - 1), shape + (1,)), (0,))
        if side == "left":
            right = _sorts_before(a_mid, v)
        else:
            right = ew.bitwise_not(_sorts_before(v, a_mid))
        lo = ew.select(ew.bitwise_and(active, right), ew.add(mid, 1), lo)
        hi = ew.select(ew.bitwise_and(active, ew.bitwise_not(right)), mid, hi)
    return lo
