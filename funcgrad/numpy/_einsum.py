"""einsum: NumPy's subscript language lowered to dot_general, transpose, reshape and sums.

Lowering, under a trace:
  1. parse the subscripts (explicit ``->`` or implicit output, ``...``, the interleaved
     operand/sublist form) and check every operand's shape against them;
  2. per operand: take diagonals of repeated indices (transpose, reshape, strided slice),
     drop size-1 axes that broadcast against a larger size elsewhere, and sum out the indices
     no other operand and not the output uses;
  3. contract pairwise in the order ``numpy.einsum_path`` picks for ``optimize`` (greedy by
     default): shared indices still needed later become dot_general batch axes, the others
     contracting axes;
  4. sum what is left over and transpose into the output order.
Eagerly it is ``numpy.einsum`` with the same ``optimize``.
"""
from __future__ import annotations

import string
from typing import Sequence

import numpy as np

from .. import core
from ..primitives import elementwise as ew, linalg as lp, reduction, structural as st
from ._array import astype, promote, tracing

_LETTERS = string.ascii_letters
_PAIRWISE = 2 ** 62            # memory limit for einsum_path: intermediates of any size


def einsum(subscripts, /, *operands, out=None, dtype=None, order="K", casting="safe",
           optimize=True):
    """numpy.einsum. ``optimize`` (True/'greedy', 'optimal', False, or an einsum_path list)
    picks the pairwise contraction order; it defaults to True, unlike NumPy."""
    if not tracing():
        return np.einsum(subscripts, *operands, out=out, dtype=dtype, order=order,
                         casting=casting, optimize=optimize)
    if out is not None:
        raise TypeError("einsum: out= is not supported under funcgrad transforms")
    if not isinstance(subscripts, str):
        subscripts, operands = _from_interleaved((subscripts,) + operands)
    operands = promote(*operands)
    if dtype is not None:
        operands = [astype(x, dtype) for x in operands]
    avals = [core.get_aval(x) for x in operands]
    inputs, output = _parse(subscripts, avals)
    if avals and avals[0].dtype == np.bool_:
        # boolean einsum is OR over AND: count in integers, then compare with zero
        ints = [astype(x, np.int64) for x in operands]
        counts = _lower(ints, inputs, output, subscripts, optimize)
        return ew.ne(counts, np.zeros((), np.int64))
    return _lower(operands, inputs, output, subscripts, optimize)


# ---------------------------------------------------------------------------------------------
# Parsing: each axis gets a label, a letter or (for axes under '...') a digit string that
# numbers the broadcast axes from the left of the widest ellipsis.

def _error(message: str, avals: Sequence = ()) -> ValueError:
    return ValueError(*core.type_error("einsum", message, list(avals)).args)


def _from_interleaved(args: tuple) -> tuple[str, list]:
    """einsum(op0, sublist0, op1, sublist1, ..., [sublistout]) -> (subscripts, operands)."""
    def term(sublist):
        try:
            return "".join("..." if s is Ellipsis else _LETTERS[s] for s in sublist)
        except (IndexError, TypeError):
            raise ValueError(f"einsum: subscripts in a sublist must be Ellipsis or integers in "
                             f"[0, {len(_LETTERS)}), got {sublist!r}") from None
    ops, terms = list(args[0::2]), [term(s) for s in args[1::2]]
    output = "->" + term(args[-1]) if len(args) % 2 else ""
    if len(args) % 2:
        ops = ops[:-1]
    return ",".join(terms) + output, ops


def _split_term(term: str, what: str, avals) -> tuple[list[str], bool]:
    """A term's letters with '.' standing for its ellipsis; whether it has one."""
    has_ellipsis = "..." in term
    letters = term.replace("...", ".", 1)
    for c in letters:
        if c not in _LETTERS and c != ".":
            raise _error(f"invalid character {c!r} in the subscripts of {what}", avals)
    return list(letters), has_ellipsis


def _parse(subscripts: str, avals) -> tuple[list[list[str]], list[str]]:
    spec = subscripts.replace(" ", "")
    explicit = "->" in spec
    lhs, rhs = spec.split("->", 1) if explicit else (spec, "")
    terms = lhs.split(",")
    if len(terms) != len(avals):
        raise _error(f"subscripts {subscripts!r} name {len(terms)} operands but {len(avals)} "
                     "were given", avals)
    inputs, widest, any_ellipsis = [], 0, False
    parsed = [_split_term(t, f"operand {i}", avals) for i, t in enumerate(terms)]
    for i, ((letters, has_ell), aval) in enumerate(zip(parsed, avals)):
        named = len(letters) - has_ell
        if aval.ndim < named or (aval.ndim != named and not has_ell):
            raise _error(f"operand {i} has {aval.ndim} axes but its subscripts {terms[i]!r} name "
                         f"{named}", avals)
        widest = max(widest, aval.ndim - named if has_ell else 0)
        any_ellipsis |= has_ell
    for (letters, has_ell), aval in zip(parsed, avals):
        n_ell = aval.ndim - (len(letters) - has_ell)
        ell = [str(widest - n_ell + k) for k in range(n_ell)]
        k = letters.index(".") if has_ell else len(letters)
        inputs.append(letters[:k] + ell + letters[k + 1:])
    ellipsis_out = [str(k) for k in range(widest)]
    if explicit:
        out_letters, out_has_ell = _split_term(rhs, "the output", avals)
        if not out_has_ell and widest:
            raise _error(f"the operands have axes under '...' but the output {rhs!r} has no '...'",
                         avals)
        k = out_letters.index(".") if out_has_ell else len(out_letters)
        output = out_letters[:k] + ellipsis_out * out_has_ell + out_letters[k + 1:]
        used = {l for term in inputs for l in term}
        for l in out_letters:
            if l != "." and (l not in used or out_letters.count(l) > 1):
                problem = "never appears in an input" if l not in used else "is repeated"
                raise _error(f"output subscript {l!r} {problem}", avals)
    else:
        counts: dict[str, int] = {}
        for term in inputs:
            for l in term:
                counts[l] = counts.get(l, 0) + 1
        output = ellipsis_out + sorted(l for l, c in counts.items() if c == 1 and l in _LETTERS)
    _check_sizes(inputs, avals)
    return inputs, output


def _check_sizes(inputs, avals) -> None:
    """Repeated indices of an operand have equal sizes; across operands sizes are equal or
    1 (which broadcasts)."""
    sizes: dict[str, tuple[int, int]] = {}
    for i, (labels, aval) in enumerate(zip(inputs, avals)):
        own: dict[str, int] = {}
        for label, n in zip(labels, aval.shape):
            if own.setdefault(label, n) != n:
                raise _error(f"the axes of repeated index {label!r} in operand {i} have "
                             f"different sizes ({own[label]} != {n})", avals)
            seen = sizes.get(label)
            if seen is None or seen[0] == 1:
                sizes[label] = (n, i)
            elif n != 1 and n != seen[0]:
                name = f"index {label!r}" if label in _LETTERS else "a broadcast ('...') axis"
                raise _error(f"{name} has size {seen[0]} in operand {seen[1]} but {n} in "
                             f"operand {i}", avals)


# ---------------------------------------------------------------------------------------------
# Lowering

def _lower(operands, inputs, output, subscripts, optimize):
    sizes: dict[str, int] = {}
    for labels, x in zip(inputs, operands):
        for label, n in zip(labels, core.get_aval(x).shape):
            sizes[label] = n if sizes.get(label, 1) == 1 else sizes[label]
    ops = [_prepare(x, labels, sizes) for x, labels in zip(operands, inputs)]
    for step in _path(subscripts, operands, optimize):
        picked = [ops[i] for i in step]
        ops = [op for i, op in enumerate(ops) if i not in step]
        needed = set(output).union(*(labels for _, labels in ops))
        acc = picked[0]
        for k, nxt in enumerate(picked[1:]):
            later = needed.union(*(labels for _, labels in picked[k + 2:]))
            acc = _contract(acc, nxt, later)
        ops.append(acc)
    (x, labels), = ops
    x, labels = _sum_unneeded(x, labels, set(output))
    return st.transpose(x, tuple(labels.index(l) for l in output))


def _prepare(x, labels: list[str], sizes: dict[str, int]):
    """Diagonals of repeated labels, and broadcast (size-1) axes squeezed away."""
    labels = list(labels)
    for label in dict.fromkeys(labels):
        while labels.count(label) > 1:
            x, labels = _diagonal(x, labels, label)
    shape = core.get_aval(x).shape
    broadcast = [i for i, (l, n) in enumerate(zip(labels, shape)) if n == 1 and sizes[l] != 1]
    if broadcast:
        x = st.squeeze(x, tuple(broadcast))
        labels = [l for i, l in enumerate(labels) if i not in broadcast]
    return x, labels


def _diagonal(x, labels, label):
    """Merge the first two axes labelled ``label`` into their diagonal (the last axis)."""
    p = labels.index(label)
    q = labels.index(label, p + 1)
    shape = core.get_aval(x).shape
    n = shape[p]
    rest = [i for i in range(len(labels)) if i not in (p, q)]
    x = st.transpose(x, tuple(rest) + (p, q))
    x = st.reshape(x, tuple(shape[i] for i in rest) + (n * n,))
    nd = len(rest) + 1
    x = st.slice(x, (0,) * nd, tuple(shape[i] for i in rest) + (n * n,),
                 (1,) * (nd - 1) + (n + 1,))
    return x, [labels[i] for i in rest] + [label]


def _sum_unneeded(x, labels, needed: set):
    axes = tuple(i for i, l in enumerate(labels) if l not in needed)
    if not axes:
        return x, labels
    return reduction.reduce_sum(x, axes), [l for l in labels if l in needed]


def _contract(a, b, needed: set):
    """One pairwise contraction; ``needed``: labels used after it (later operands, output)."""
    (x, lx), (y, ly) = a, b
    x, lx = _sum_unneeded(x, lx, needed | set(ly))
    y, ly = _sum_unneeded(y, ly, needed | set(lx))
    shared = [l for l in lx if l in ly]
    batch = [l for l in shared if l in needed]
    summed = [l for l in shared if l not in needed]
    dims = ((tuple(lx.index(l) for l in summed), tuple(ly.index(l) for l in summed)),
            (tuple(lx.index(l) for l in batch), tuple(ly.index(l) for l in batch)))
    out = lp.dot_general(x, y, dims)
    labels = batch + [l for l in lx if l not in ly] + [l for l in ly if l not in lx]
    return out, labels


def _path(subscripts: str, operands, optimize) -> list[tuple[int, ...]]:
    """Contraction steps in numpy.einsum_path's convention: each step removes the operands
    at the given positions and appends their product."""
    n = len(operands)
    if n == 1:
        return []
    if optimize is False:
        return [(0, 1)] + [(0, m - 1) for m in range(n - 1, 1, -1)]
    if optimize is True:
        optimize = "greedy"
    if isinstance(optimize, str):
        if optimize not in ("greedy", "optimal"):
            raise ValueError(f"einsum: optimize must be a bool, 'greedy', 'optimal' or an "
                             f"einsum_path list, got {optimize!r}")
        optimize = (optimize, _PAIRWISE)
    # einsum_path reads only shapes: give it zero-stride stand-ins, not the operands.
    stand_ins = [np.broadcast_to(np.empty(()), core.get_aval(x).shape) for x in operands]
    path = np.einsum_path(subscripts, *stand_ins, optimize=optimize)[0]
    return [tuple(step) for step in path[1:]]
