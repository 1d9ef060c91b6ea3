"""Fusion: group elementwise equations of an optimized jaxpr into kernels.

A *kernel* runs one loop over an iteration shape. Its members are elementwise equations
whose result has that shape (arithmetic, math functions, compares, selects, casts; operands
may be broadcast), and reductions over trailing axes (or all axes) of member values. Its
inputs are read through *views*: broadcasts, transposes, and reshapes of an input are index
arithmetic (strides over the iteration shape), never materialized arrays. Scalar literals
are inlined. Its outputs are the member values used after the kernel, and the reductions.

The pass runs in program order. An equation joins the group that computes its operands --
merging several such groups of its shape into one when that is safe -- or starts a group;
afterwards, groups of one shape that read the same inputs, then any groups of one shape,
are merged (one loop instead of several: Adam's update of every parameter of one shape is
one kernel). A join or merge is refused when it would close a cycle: when an operand of the
group needs the other group to have finished (it is one of its reductions, or a value an
unfused equation computed from its results). Each equation belongs to at most one kernel,
so no work is duplicated (views, which cost nothing, may be repeated in several kernels). A
group of fewer than :data:`MIN_FUSED_OPS` operations is left to the array library, whose
single calls are as fast as a kernel call and need no compilation.

The result is a jaxpr in which each kernel is one ``fused_kernel`` equation holding a
:class:`Kernel`; the kernel's own jaxpr (views, members, reductions) says what it computes,
so ``fused_kernel`` can also be evaluated by the interpreter. Backends turn kernels into
code (:mod:`.codegen_c`, :mod:`.codegen_cupy`).
"""
from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np

from .. import core
from ..core import ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var
from ..interpreters import ad, batching
from ..primitives import reduction as red, structural as st
from . import passes

MIN_FUSED_OPS = 2
"""Smallest group (elementwise ops plus reductions) worth a kernel. A single operation is
as fast in numpy (measured: x + 1 on 16 or 1M float32 elements, same time either way), so
a kernel would cost a compilation for nothing -- except for the costly ones below."""

LARGE = 1 << 16
COSTLY = frozenset(["exp", "exp2", "expm1", "log", "log1p", "log2", "log10", "cbrt", "sin", "cos",
                    "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh",
                    "atanh", "logistic", "erf", "erfc", "pow", "atan2"])
"""Operations worth a kernel of their own over :data:`LARGE` elements or more: math
functions (vectorized libm; exp on 1M float32: 0.35 ms against numpy's 0.48 ms) and
reductions (sum of 1M float32: 0.06 ms against numpy's 0.16 ms)."""

FUSABLE_DTYPES = frozenset(np.dtype(d) for d in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float32", "float64"))

REDUCTIONS = {red.reduce_sum_p: "sum", red.reduce_max_p: "max", red.reduce_min_p: "min"}
"""Reductions a kernel can end in, by the combining operation."""

VIEWS = (st.broadcast_in_dim_p, st.reshape_p, st.squeeze_p, st.expand_dims_p, st.transpose_p)
"""Structural primitives a kernel absorbs as index arithmetic on its inputs."""


# ---------------------------------------------------------------------------------------------
# Kernels


class Kernel:
    """One fused loop: what it computes (``jaxpr``) and how its inputs are read.

    * ``jaxpr``: inputs -> outputs; its equations are the absorbed views, the elementwise
      members, and the reductions, in order.
    * ``shape``: the iteration shape; ``reduced``: how many trailing axes the reductions
      (``reduce_kinds``, one per output: ``"sum"``/``"max"``/``"min"`` or None for an
      elementwise output of the iteration shape) run over.
    * ``views``: per input, how the kernel reads it: ``(var, strides)`` where ``var`` is the
      kernel-jaxpr variable holding the *viewed* value (a C-contiguous input read through
      ``strides``, in elements per iteration axis; 0 broadcasts).
    """

    def __init__(self, name: str, jaxpr: Jaxpr, shape: tuple[int, ...], reduced: int,
                 reduce_kinds: list[str | None], loads: dict[Var, tuple[Var, tuple[int, ...]]]):
        self.name = name
        self.jaxpr = jaxpr
        self.shape = shape
        self.reduced = reduced
        self.reduce_kinds = reduce_kinds
        self.loads = loads          # viewed value -> (kernel input, strides over `shape`)

    in_avals = property(lambda self: self.jaxpr.in_avals)
    out_avals = property(lambda self: self.jaxpr.out_avals)

    @property
    def elementwise_only(self) -> bool:
        return not any(self.reduce_kinds)

    @property
    def num_ops(self) -> int:
        return sum(e.primitive not in VIEWS for e in self.jaxpr.eqns)

    def reads_in_place(self) -> bool:
        """True when an output may take the buffer of a dying input of its shape and dtype:
        every such input is read at the index being written (not broadcast or transposed),
        so each of its elements is read before it is overwritten and never read again.
        (Inputs of other shapes, such as broadcast scalars, cannot share an output's buffer.)"""
        contiguous = contiguous_strides(self.shape)
        outputs = {(a.shape, a.dtype) for a in self.out_avals}
        return all(strides == contiguous and base.aval.shape == self.shape
                   for base, strides in self.loads.values()
                   if (base.aval.shape, base.aval.dtype) in outputs)

    def __repr__(self):
        outs = ", ".join(a.str_short() for a in self.out_avals)
        return f"{self.name}[{self.num_ops} ops -> {outs}]"


def _kernel_impl(xp, *args, kernel: Kernel):
    return core.eval_jaxpr(kernel.jaxpr, [], *args)


def _kernel_abstract(*avals, kernel: Kernel):
    expected = kernel.in_avals
    if [(a.shape, a.dtype) for a in avals] != [(e.shape, e.dtype) for e in expected]:
        raise core.type_error(f"fused_kernel {kernel.name}", "operands do not match the kernel's "
                              f"inputs ({', '.join(e.str_short() for e in expected)})", avals)
    return kernel.out_avals


def _kernel_jvp(primals, tangents, *, kernel: Kernel):
    return ad.jvp_eval(kernel.jaxpr, [], primals, tangents)


def _kernel_batch(args, dims, *, kernel: Kernel):
    return batching.batch_eval(kernel.jaxpr, [], args, dims)


fused_kernel_p = core.Primitive("fused_kernel", multiple_results=True)
fused_kernel_p.impl = _kernel_impl
fused_kernel_p.abstract_eval = _kernel_abstract
# Kernels appear only in jaxprs about to run; transforming one transforms what it computes.
fused_kernel_p.jvp = _kernel_jvp
fused_kernel_p.batch = _kernel_batch


# ---------------------------------------------------------------------------------------------
# What can be fused


def expression(eqn: Eqn) -> str | None:
    """The C expression template of an elementwise equation, or None if it cannot be fused."""
    prim = eqn.primitive
    c_expr = prim.c_expr
    if c_expr is None or prim.multiple_results:
        return None
    avals = [a.aval for a in eqn.invars]
    if any(a.dtype not in FUSABLE_DTYPES for a in avals + [eqn.outvars[0].aval]):
        return None
    return c_expr(avals, **eqn.params) if callable(c_expr) else c_expr


def _is_map(eqn: Eqn) -> bool:
    return expression(eqn) is not None and eqn.outvars[0].aval.size > 0


def _trailing_axes(eqn: Eqn) -> int | None:
    """How many trailing axes a fusable reduction reduces (None if not fusable)."""
    if eqn.primitive not in REDUCTIONS:
        return None
    x = eqn.invars[0].aval
    axes = tuple(sorted(eqn.params["axes"]))
    if not axes or axes != tuple(range(x.ndim - len(axes), x.ndim)) or x.dtype not in FUSABLE_DTYPES:
        return None
    if eqn.primitive is red.reduce_sum_p and x.dtype.kind == "b":
        return None
    return len(axes)


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _apply_view(eqn: Eqn, shape: tuple, strides: tuple) -> tuple | None:
    """``(shape, strides)`` of the view ``eqn`` applied to an array laid out as given (element
    strides), or None when it is not a strided view of it."""
    prim, out_shape = eqn.primitive, eqn.outvars[0].aval.shape
    if prim is st.transpose_p:
        perm = eqn.params["permutation"]
        return out_shape, tuple(strides[p] for p in perm)
    if prim is st.broadcast_in_dim_p:
        dims = eqn.params["broadcast_dimensions"]
        new = [0] * len(out_shape)
        for i, d in enumerate(dims):
            new[d] = strides[i] if shape[i] == out_shape[d] else 0
        return out_shape, tuple(new)
    # reshape, squeeze, expand_dims: drop/insert unit axes, or re-split a contiguous array
    kept = [(n, s) for n, s in zip(shape, strides) if n != 1]
    if [n for n, _ in kept] == [n for n in out_shape if n != 1]:
        it = iter(kept)
        return out_shape, tuple(0 if n == 1 else next(it)[1] for n in out_shape)
    if all(s == c for (n, s), c in zip(kept, contiguous_strides([n for n, _ in kept]))):
        return out_shape, contiguous_strides(out_shape)
    return None


def _broadcast_to(shape: tuple, strides: tuple, target: tuple) -> tuple[int, ...]:
    """Strides reading an operand of ``shape`` broadcast (numpy-style) to ``target``."""
    lead = len(target) - len(shape)
    return (0,) * lead + tuple(0 if n == 1 and t != 1 else s
                               for n, s, t in zip(shape, strides, target[lead:]))


# ---------------------------------------------------------------------------------------------
# Grouping


class _Group:
    def __init__(self, gid: int, shape: tuple):
        self.id = gid
        self.shape = shape
        self.members: list[int] = []       # equation indices
        self.reduced: int | None = None     # trailing axes its reductions reduce
        self.inputs: set = set()            # operands it reads from outside (maybe views)
        self.roots: set = set()             # the variables those views read
        self.ops = 0


class _Grouper:
    """The grouping of one jaxpr (see the module docstring): in program order, each
    equation joins the group(s) computing its operands (merging them when that is safe), or
    starts a group; then groups of one shape that read the same inputs, and then any groups
    of one shape, are merged where that creates no cycle."""

    def __init__(self, jaxpr: Jaxpr):
        self.jaxpr = jaxpr
        self.producer: dict[Var, int] = {}
        for i, e in enumerate(jaxpr.eqns):
            for v in e.outvars:
                self.producer[v] = i
        self.groups: list[_Group] = []
        self.parent: list[int] = []                     # union-find over group ids
        self.mapped: dict[Var, int] = {}               # loop values -> the group computing them
        self.vdeps: dict[Var, frozenset[int]] = {}     # groups a value is computed from

    # -- groups as a union-find ---------------------------------------------------------------

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def group(self, g: int) -> _Group:
        return self.groups[self.find(g)]

    def new_group(self, shape: tuple) -> _Group:
        g = _Group(len(self.groups), shape)
        self.groups.append(g)
        self.parent.append(g.id)
        return g

    def merge(self, a: _Group, b: _Group) -> _Group:
        if a.id == b.id:
            return a
        self.parent[b.id] = a.id
        a.members += b.members
        a.inputs = {x for x in a.inputs | b.inputs if not self.internal_to(x, a)}
        a.roots |= b.roots
        a.ops += b.ops
        a.reduced = a.reduced if a.reduced is not None else b.reduced
        return a

    # -- dependencies -------------------------------------------------------------------------

    def needs(self, a, g: _Group) -> bool:
        """Does the value ``a`` need group ``g`` to have finished?"""
        stack, seen = [self.find(x) for x in self.vdeps.get(a, ())] if type(a) is Var else [], set()
        while stack:
            x = stack.pop()
            if x == g.id:
                return True
            if x not in seen:
                seen.add(x)
                grp = self.groups[x]
                stack.extend(self.find(y) for i in grp.inputs for y in self.vdeps.get(i, ()))
        return False

    def internal_to(self, a, g: _Group) -> bool:
        return type(a) is Var and a in self.mapped and self.find(self.mapped[a]) == g.id

    def blocked(self, g: _Group, other: _Group) -> bool:
        """Would merging ``other`` into ``g`` close a cycle? It does when ``g`` reads anything
        that needs ``other`` -- except ``other``'s loop values themselves, which become
        internal."""
        return any(not self.internal_to(a, other) and self.needs(a, other) for a in g.inputs)

    def compatible(self, a: _Group, b: _Group) -> bool:
        return (a.shape == b.shape and (a.reduced is None or b.reduced is None or a.reduced == b.reduced)
                and not self.blocked(a, b) and not self.blocked(b, a))

    def root(self, a):
        """The variable a load of ``a`` reads: ``a`` with its views peeled off."""
        while type(a) is Var and a not in self.mapped:
            i = self.producer.get(a)
            if i is None or self.jaxpr.eqns[i].primitive not in VIEWS:
                break
            a = self.jaxpr.eqns[i].invars[0]
        return a

    # -- the pass -----------------------------------------------------------------------------

    def place(self, i: int, eqn: Eqn, shape: tuple, reduced: int | None) -> _Group:
        """Add equation ``i`` to the group of its operands (merged), or to a new group."""
        producers = {self.find(self.mapped[a]) for a in eqn.invars if type(a) is Var and a in self.mapped}
        candidates = [self.groups[g] for g in sorted(producers, reverse=True)]
        candidates = [g for g in candidates
                      if g.shape == shape and (reduced is None or g.reduced in (None, reduced))]
        target = None
        for g in candidates:
            merged_ok = target is None or self.compatible(target, g)
            if merged_ok:
                target = g if target is None else self.merge(target, g)
        if target is not None and any(self.needs(a, target) for a in eqn.invars
                                      if not self.internal_to(a, target)):
            target = None
            for g in candidates:       # fall back to any one producer group it can join
                if not any(self.needs(a, g) for a in eqn.invars if not self.internal_to(a, g)):
                    target = g
                    break
        if target is None:
            target = self.new_group(shape)
        for a in eqn.invars:
            if type(a) is Var and not self.internal_to(a, target):
                target.inputs.add(a)
                target.roots.add(self.root(a))
        target.members.append(i)
        target.ops += 1
        if reduced is not None:
            target.reduced = reduced
        return target

    def merge_horizontally(self, shared_inputs: bool):
        live = [g for g in self.groups if self.find(g.id) == g.id]
        for n, a in enumerate(live):
            if self.find(a.id) != a.id:
                continue
            for b in live[n + 1:]:
                if self.find(b.id) != b.id or (shared_inputs and not (a.roots & b.roots)):
                    continue
                if self.compatible(a, b):
                    self.merge(a, b)

    def run(self) -> list[_Group]:
        for i, eqn in enumerate(self.jaxpr.eqns):
            if _is_map(eqn):
                g = self.place(i, eqn, eqn.outvars[0].aval.shape, None)
                self.mapped[eqn.outvars[0]] = g.id
                self.vdeps[eqn.outvars[0]] = frozenset([g.id])
                continue
            k = _trailing_axes(eqn)
            if k is not None:
                g = self.place(i, eqn, eqn.invars[0].aval.shape, k)
                self.vdeps[eqn.outvars[0]] = frozenset([g.id])
                continue
            deps = frozenset().union(*(self.vdeps.get(a, frozenset()) for a in eqn.invars if type(a) is Var))
            for v in eqn.outvars:
                self.vdeps[v] = deps
        self.merge_horizontally(shared_inputs=True)
        self.merge_horizontally(shared_inputs=False)
        return [g for g in self.groups if self.find(g.id) == g.id and self.pays(g)]

    def pays(self, g: _Group) -> bool:
        if g.ops >= MIN_FUSED_OPS:
            return True
        prim = self.jaxpr.eqns[g.members[0]].primitive
        size = 1
        for n in g.shape:
            size *= n
        return size >= LARGE and (prim in REDUCTIONS or prim.name in COSTLY)


# ---------------------------------------------------------------------------------------------
# Building kernels and the rewritten jaxpr


def _view_chain(a, jaxpr: Jaxpr, producer: dict[Var, int]) -> tuple:
    """``(root, views)``: the atom whose views give ``a``, and those views, root first."""
    chain = []
    while type(a) is Var:
        i = producer.get(a)
        if i is None or jaxpr.eqns[i].primitive not in VIEWS:
            break
        chain.append(jaxpr.eqns[i])
        a = jaxpr.eqns[i].invars[0]
    return a, chain[::-1]


def _compose(root: Var, views: list[Eqn]) -> tuple[Var, list[Eqn], tuple, tuple]:
    """Read ``views`` of ``root`` as strides: ``(base, applied views, shape, strides)``. A view
    that is not a strided view of its operand (a reshape of a transposed array) makes its
    result the base: that one is materialized by the array library."""
    base, applied = root, []
    shape, strides = root.aval.shape, contiguous_strides(root.aval.shape)
    for view in views:
        res = _apply_view(view, shape, strides)
        if res is None:
            base, applied = view.outvars[0], []
            shape, strides = base.aval.shape, contiguous_strides(base.aval.shape)
        else:
            shape, strides = res
            applied.append(view)
    return base, applied, shape, strides


def _build_kernel(name: str, group: _Group, jaxpr: Jaxpr, producer: dict[Var, int],
                  used_outside: set[Var]) -> tuple[Kernel, list[Var], list[Var]]:
    """The kernel of ``group``: ``(kernel, outer input vars, outer output vars)``."""
    sub: dict = {}                       # outer atom -> kernel atom
    inputs: list[Var] = []
    eqns: list[Eqn] = []
    loads: dict[Var, tuple[Var, tuple]] = {}

    def load(a):
        """The kernel atom for an operand the loop reads from outside."""
        if type(a) is Literal or a in sub:
            return sub.get(a, a)
        root, views = _view_chain(a, jaxpr, producer)
        if type(root) is Literal:                        # a broadcast scalar
            sub[a] = Literal(root.val, ShapedArray((), root.aval.dtype, root.aval.weak_type))
            return sub[a]
        base, applied, shape, strides = _compose(root, views)
        if base not in sub:
            sub[base] = Var(base.aval.strip_weak_type())
            inputs.append(base)
        cur = sub[base]
        for view in applied:
            out = Var(view.outvars[0].aval)
            eqns.append(view.replace(invars=[cur], outvars=[out]))
            cur = out
        sub[a] = cur
        loads[cur] = (sub[base], _broadcast_to(shape, strides, group.shape))
        return cur

    outputs: list[Var] = []
    kinds: list[str | None] = []
    for i in sorted(group.members):
        e = jaxpr.eqns[i]
        invars = [load(a) for a in e.invars]
        outvars = [Var(v.aval) for v in e.outvars]
        eqns.append(e.replace(invars=invars, outvars=outvars))
        sub.update(zip(e.outvars, outvars))
        kind = REDUCTIONS.get(e.primitive)
        for v in e.outvars:
            if kind is not None or v in used_outside:
                outputs.append(v)
                kinds.append(kind)
    kjaxpr = Jaxpr([], [sub[v] for v in inputs], eqns, [sub[v] for v in outputs])
    return Kernel(name, kjaxpr, group.shape, group.reduced or 0, kinds, loads), inputs, outputs


def fuse(closed: ClosedJaxpr, prefix: str = "k") -> tuple[ClosedJaxpr, list[Kernel]]:
    """Group ``closed``'s elementwise equations into kernels: the rewritten jaxpr (one
    ``fused_kernel`` equation per kernel, in a valid order) and the kernels."""
    j = closed.jaxpr
    grouper = _Grouper(j)
    groups = grouper.run()
    if not groups:
        return closed, []
    in_group = {i: g for g in groups for i in g.members}
    users: dict[Var, set] = {}
    for i, e in enumerate(j.eqns):
        for a in e.invars:
            if type(a) is Var:
                users.setdefault(a, set()).add(in_group.get(i, i))
    for a in j.outvars:
        if type(a) is Var:
            users.setdefault(a, set()).add(None)

    nodes: list[tuple[int, Eqn]] = []        # (program position, equation)
    kernels = []
    for n, g in enumerate(groups):
        members = set(g.members)
        used_outside = {v for i in members for v in j.eqns[i].outvars
                        if users.get(v, set()) - {g}}
        kernel, ins, outs = _build_kernel(f"{prefix}{n}", g, j, grouper.producer, used_outside)
        kernels.append(kernel)
        info = j.eqns[max(members)].source_info
        nodes.append((min(members), Eqn(fused_kernel_p, ins, outs, {"kernel": kernel}, info)))
    nodes += [(i, e) for i, e in enumerate(j.eqns) if i not in in_group]
    eqns = _schedule(nodes, set(j.invars) | set(j.constvars))
    return passes.dce(ClosedJaxpr(Jaxpr(j.constvars, j.invars, eqns, j.outvars), closed.consts)), kernels


def _schedule(nodes: list[tuple[int, Eqn]], available: set) -> list[Eqn]:
    """A topological order of the equations, as close to program order as possible."""
    waiting: dict[Var, list[int]] = {}
    missing = []
    for k, (_, e) in enumerate(nodes):
        need = {a for a in e.invars if type(a) is Var and a not in available}
        missing.append(len(need))
        for a in need:
            waiting.setdefault(a, []).append(k)
    ready = [(pos, k) for k, (pos, _) in enumerate(nodes) if missing[k] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, k = heapq.heappop(ready)
        e = nodes[k][1]
        order.append(e)
        for v in e.outvars:
            for other in waiting.pop(v, ()):
                missing[other] -= 1
                if missing[other] == 0:
                    heapq.heappush(ready, (nodes[other][0], other))
    if len(order) != len(nodes):
        raise AssertionError("fusion produced a cyclic schedule")   # a bug in the grouping
    return order

