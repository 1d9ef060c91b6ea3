"""IR passes: each is a function ``ClosedJaxpr -> ClosedJaxpr`` that preserves meaning.

* :func:`inline_calls` splices the bodies of call primitives (nested ``jit``) into the caller.
* :func:`fold_constants` evaluates equations whose inputs are all known, when the result is
  small (scalars become literals, small arrays become consts).
* :func:`simplify` applies algebraic identities (``x*1``, ``neg(neg x)``, transposes of
  transposes, reshape chains, broadcasts of broadcasts, casts to the same dtype, broadcast
  operands of elementwise ops, ...), each rule a small function in one table.
* :func:`cse` merges equations that compute the same thing; :func:`dce` drops the dead ones.

:func:`optimize` runs them all. Every pass also preserves derivatives and batching, because
a jitted function called under ``grad``/``vmap`` hands its optimized jaxpr to those
transforms: rules that would change a derivative (dropping ``stop_gradient``) belong to code
generation, not here.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .. import core
from ..core import ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var
from ..primitives import elementwise as ew, linalg, structural as st

Pass = Callable[[ClosedJaxpr], ClosedJaxpr]

def _closed(constvars, consts, invars, eqns, outvars) -> ClosedJaxpr:
    return ClosedJaxpr(Jaxpr(constvars, invars, eqns, outvars), consts)


class _Substitution(dict):
    """Maps a variable to the atom that replaces it."""

    def __call__(self, a):
        return self.get(a, a) if type(a) is Var else a


# ---------------------------------------------------------------------------------------------
# Inlining


def inline_calls(closed: ClosedJaxpr, when: tuple[str, ...] = ("always",)) -> ClosedJaxpr:
    """Replace every call equation whose primitive's ``inline`` is in ``when`` by the equations
    of its callee (``eqn.params[primitive.callee]``), recursively. Callee variables are
    renamed, so a callee may be spliced twice."""
    def inlined(prim):
        return prim.callee is not None and prim.inline in when

    j = closed.jaxpr
    if not any(inlined(e.primitive) for e in j.eqns):
        return closed
    constvars, consts = list(j.constvars), list(closed.consts)
    eqns: list[Eqn] = []

    def splice(jaxpr: Jaxpr, sub: _Substitution, rename: bool):
        for eqn in jaxpr.eqns:
            invars = [sub(a) for a in eqn.invars]
            if inlined(eqn.primitive):
                callee: ClosedJaxpr = eqn.params[eqn.primitive.callee]
                inner = _Substitution(zip(callee.jaxpr.invars, invars))
                for v, c in zip(callee.jaxpr.constvars, callee.consts):
                    inner[v] = Var(v.aval)
                    constvars.append(inner[v])
                    consts.append(c)
                splice(callee.jaxpr, inner, rename=True)
                sub.update(zip(eqn.outvars, map(inner, callee.jaxpr.outvars)))
                continue
            outvars = eqn.outvars
            if rename:
                outvars = [Var(v.aval) for v in eqn.outvars]
                sub.update(zip(eqn.outvars, outvars))
            eqns.append(eqn.replace(invars=invars, outvars=outvars))

    sub = _Substitution()
    splice(j, sub, rename=False)
    return _closed(constvars, consts, j.invars, eqns, [sub(a) for a in j.outvars])


def inline_for_execution(closed: ClosedJaxpr) -> ClosedJaxpr:
    """:func:`inline_calls` including calls that only code generation may splice (custom
    derivative calls: their rules no longer matter once no transform will see the jaxpr)."""
    return inline_calls(closed, ("always", "execution"))


# ---------------------------------------------------------------------------------------------
# Dead-code and common-subexpression elimination


def dce(closed: ClosedJaxpr) -> ClosedJaxpr:
    """Drop equations none of whose outputs are used, and unused consts."""
    j = core.dce_jaxpr(closed.jaxpr)
    used = {v for e in j.eqns for v in e.invars if type(v) is Var} | {v for v in j.outvars if type(v) is Var}
    if j is closed.jaxpr and all(v in used for v in j.constvars):
        return closed
    pairs = [(v, c) for v, c in zip(j.constvars, closed.consts) if v in used]
    return _closed([v for v, _ in pairs], [c for _, c in pairs], j.invars, j.eqns, j.outvars)


def literal_key(lit: Literal):
    """Identifies a literal exactly (0.0 differs from -0.0; a NaN equals itself)."""
    return (lit.val.tobytes(), lit.aval.dtype, lit.aval.weak_type)


def _atom_key(a):
    return a if type(a) is Var else literal_key(a)


def cse(closed: ClosedJaxpr) -> ClosedJaxpr:
    """Reuse the result of an earlier equation with the same primitive, inputs and params."""
    j = closed.jaxpr
    sub = _Substitution()
    seen: dict[Any, list[Var]] = {}
    eqns = []
    for eqn in j.eqns:
        invars = [sub(a) for a in eqn.invars]
        try:
            key = (eqn.primitive, tuple(_atom_key(a) for a in invars),
                   tuple(sorted(eqn.params.items())))
            hash(key)
        except TypeError:       # a param that cannot be compared: keep the equation
            key = None
        earlier = seen.get(key) if key is not None else None
        if earlier is not None:
            sub.update(zip(eqn.outvars, earlier))
            continue
        if key is not None:
            seen[key] = eqn.outvars
        eqns.append(eqn.replace(invars=invars) if invars != eqn.invars else eqn)
    if len(eqns) == len(j.eqns):
        return closed
    return _closed(j.constvars, closed.consts, j.invars, eqns, [sub(a) for a in j.outvars])


# ---------------------------------------------------------------------------------------------
# Constant folding

MAX_FOLDED_BYTES = 1024
"""Largest result (in bytes) constant folding stores; bigger results are computed per call."""


def fold_constants(closed: ClosedJaxpr) -> ClosedJaxpr:
    """Evaluate equations whose inputs are literals or consts when the result is small."""
    j = closed.jaxpr
    known: dict[Var, Any] = dict(zip(j.constvars, closed.consts))
    constvars, consts = list(j.constvars), list(closed.consts)
    sub = _Substitution()
    eqns = []
    for eqn in j.eqns:
        invars = [sub(a) for a in eqn.invars]
        values = _fold(eqn, invars, known)
        if values is None:
            eqns.append(eqn.replace(invars=invars) if invars != eqn.invars else eqn)
            continue
        for v, val in zip(eqn.outvars, values):
            if v.aval.shape == () and type(val) is np.ndarray:
                sub[v] = Literal(val, v.aval)
            else:
                fresh = Var(v.aval)
                constvars.append(fresh)
                consts.append(val)
                known[fresh] = val
                sub[v] = fresh
    if len(eqns) == len(j.eqns):
        return closed
    return dce(_closed(constvars, consts, j.invars, eqns, [sub(a) for a in j.outvars]))


def _fold(eqn: Eqn, invars: Sequence, known: dict) -> list | None:
    """The equation's results if they can and should be computed now, else None."""
    prim = eqn.primitive
    if any(type(a) is Var and a not in known for a in invars) or prim.impl is None:
        return None
    if any(v.aval.size * v.aval.dtype.itemsize > MAX_FOLDED_BYTES for v in eqn.outvars):
        return None
    if any(True for _ in core.jaxprs_in_params(eqn.params)):
        return None                  # control flow: running it now could take unbounded time
    args = [known[a] if type(a) is Var else a.val for a in invars]
    if any(isinstance(a, core.Tracer) for a in args):
        return None
    xp = core.array_module(args)
    try:
        with np.errstate(all="raise"):   # a warning or error is left to happen at run time
            out = prim.impl(xp, *args, **eqn.params)
    except Exception:
        return None
    outs = list(out) if prim.multiple_results else [out]
    return [xp.array(o, dtype=v.aval.dtype) for o, v in zip(outs, eqn.outvars)]


# ---------------------------------------------------------------------------------------------
# Algebraic simplification

Rule = Callable[["_Rewriter", Eqn], Any]
"""A rule looks at an equation (inputs already substituted) and returns None (no change),
an atom that replaces its single output, or a list of new equations computing its outputs."""


class _Rewriter:
    """State of one simplification sweep: the substitution, the producer of each variable,
    how often each variable is used, and the equations emitted so far."""

    def __init__(self, jaxpr: Jaxpr):
        self.sub = _Substitution()
        self.producer: dict[Var, Eqn] = {}
        self.uses: dict[Var, int] = {}
        for e in jaxpr.eqns:
            for a in e.invars:
                if type(a) is Var:
                    self.uses[a] = self.uses.get(a, 0) + 1
        for a in jaxpr.outvars:
            if type(a) is Var:
                self.uses[a] = self.uses.get(a, 0) + 1
        self.eqns: list[Eqn] = []
        self.changed = False

    def produced_by(self, a, prim: core.Primitive) -> Eqn | None:
        e = self.producer.get(a) if type(a) is Var else None
        return e if e is not None and e.primitive is prim else None

    def emit(self, eqn: Eqn):
        invars = [self.sub(a) for a in eqn.invars]
        if invars != eqn.invars:
            eqn = eqn.replace(invars=invars)
        rule = _rule_for(eqn.primitive)
        result = rule(self, eqn) if rule is not None else None
        if result is None:
            self.eqns.append(eqn)
            for v in eqn.outvars:
                self.producer[v] = eqn
            return
        self.changed = True
        if isinstance(result, list):
            for e in result:
                self.emit(e)
        else:
            self.sub[eqn.outvars[0]] = result


def simplify(closed: ClosedJaxpr) -> ClosedJaxpr:
    """Rewrite equations by the identities in :data:`RULES` (one forward sweep)."""
    j = closed.jaxpr
    rw = _Rewriter(j)
    for eqn in j.eqns:
        rw.emit(eqn)
    if not rw.changed:
        return closed
    return _closed(j.constvars, closed.consts, j.invars, rw.eqns, [rw.sub(a) for a in j.outvars])


def _is_literal(a, value) -> bool:
    """``a`` is a real literal equal to ``value`` (a float zero must be +0.0)."""
    if type(a) is not Literal or a.val.dtype.kind not in "iuf" or a.val != value:
        return False
    return a.val.dtype.kind != "f" or not np.signbit(a.val)


def _same_type(a, out: Var) -> bool:
    """``a`` can stand for ``out`` (weak types too: callers of a jitted function see them)."""
    return a.aval == out.aval


def _identity_operand(identity, *, commutes: bool, exact_for_floats: bool = True) -> Rule:
    """``x op identity -> x`` (and ``identity op x`` when ``op`` commutes), when the output
    has x's type. ``exact_for_floats=False``: only for integers (x + 0.0 turns -0.0 into 0.0)."""

    def rule(rw, eqn):
        out = eqn.outvars[0]
        if not exact_for_floats and out.aval.dtype.kind in "fc":
            return None
        x, y = eqn.invars
        if _is_literal(y, identity) and _same_type(x, out):
            return x
        if commutes and _is_literal(x, identity) and _same_type(y, out):
            return y
        return None

    return rule


def _involution(rw, eqn):
    """``f(f(x)) -> x`` for neg."""
    inner = rw.produced_by(eqn.invars[0], eqn.primitive)
    return inner.invars[0] if inner is not None else None


def _transpose_rule(rw, eqn):
    (x,), perm = eqn.invars, eqn.params["permutation"]
    if perm == tuple(range(len(perm))):
        return x
    inner = rw.produced_by(x, st.transpose_p)
    if inner is not None:
        composed = tuple(inner.params["permutation"][p] for p in perm)
        if composed == tuple(range(len(composed))):
            return inner.invars[0]
        return [eqn.replace(invars=inner.invars, params={"permutation": composed})]
    dot = rw.produced_by(x, linalg.dot_general_p)
    if dot is not None and rw.uses.get(x, 0) == 1:
        return _swap_dot_operands(dot, perm, eqn.outvars[0])
    return None


def _swap_dot_operands(dot: Eqn, perm, out: Var):
    """``transpose(dot_general(a, b))`` that puts b's free axes first is ``dot_general(b, a)``."""
    (lc, rc), (lb, rb) = dot.params["dimension_numbers"]
    if lb or rb:
        return None
    lhs, rhs = dot.invars
    n_lf = lhs.aval.ndim - len(lc)
    n_rf = rhs.aval.ndim - len(rc)
    if perm != tuple(range(n_lf, n_lf + n_rf)) + tuple(range(n_lf)):
        return None
    params = dict(dot.params, dimension_numbers=((rc, lc), ((), ())))
    return [dot.replace(invars=[rhs, lhs], outvars=[out], params=params)]


_RESHAPES = (st.reshape_p, st.squeeze_p, st.expand_dims_p)


def _reshape_rule(rw, eqn):
    """Reshape-like ops (reshape, squeeze, expand_dims) are determined by their output shape:
    chains collapse into one reshape, and a reshape to the same shape disappears."""
    (x,), out = eqn.invars, eqn.outvars[0]
    inner = next((e for p in _RESHAPES if (e := rw.produced_by(x, p)) is not None), None)
    source = inner.invars[0] if inner is not None else x
    if _same_type(source, out):
        return source
    if inner is None:
        return None
    return [Eqn(st.reshape_p, [source], [out], {"new_sizes": out.aval.shape}, eqn.source_info)]


def _broadcast_rule(rw, eqn):
    (x,), out = eqn.invars, eqn.outvars[0]
    shape, dims = eqn.params["shape"], eqn.params["broadcast_dimensions"]
    if _same_type(x, out) and dims == tuple(range(len(shape))):
        return x
    inner = rw.produced_by(x, st.broadcast_in_dim_p)
    if inner is None:
        return None
    composed = tuple(dims[d] for d in inner.params["broadcast_dimensions"])
    return [eqn.replace(invars=inner.invars,
                        params={"shape": shape, "broadcast_dimensions": composed})]


def _convert_rule(rw, eqn):
    (x,), out = eqn.invars, eqn.outvars[0]
    return x if _same_type(x, out) else None


def _integer_pow_rule(rw, eqn):
    return eqn.invars[0] if eqn.params["y"] == 1 else _elementwise_rule(rw, eqn)


def _select_rule(rw, eqn):
    pred, x, y = eqn.invars
    out = eqn.outvars[0]
    if type(pred) is Literal and _same_type(x if pred.val else y, out):
        return x if pred.val else y
    if x is y and _same_type(x, out):
        return x
    return _elementwise_rule(rw, eqn)


def _numpy_broadcastable(x, shape, dims, info) -> tuple[Any, list[Eqn]]:
    """``x`` reshaped so that NumPy broadcasting against ``shape`` does what
    ``broadcast_in_dim(x, shape, dims)`` does: ``(operand, new equations)``."""
    aval = x.aval
    if not dims or dims == tuple(range(len(shape) - aval.ndim, len(shape))):
        return x, []
    start = dims[0]
    expanded = tuple(aval.shape[dims.index(a)] if a in dims else 1 for a in range(start, len(shape)))
    v = Var(ShapedArray(expanded, aval.dtype, aval.weak_type))
    return v, [Eqn(st.reshape_p, [x], [v], {"new_sizes": expanded}, info)]


def _elementwise_rule(rw, eqn):
    """Elementwise ops broadcast like NumPy, so broadcast operands can be used unbroadcast.

    * When every array operand is a broadcast to the output shape, all along the same axes
      (or from scalars), the op runs on the small operands and its result is broadcast once
      (so constant operands fold).
    * Otherwise broadcast operands are replaced by their sources (reshaped for NumPy's
      trailing-axis alignment), scalars first, as long as the others still give the shape.
    """
    out = eqn.outvars[0]
    if not eqn.primitive.elementwise or eqn.primitive.multiple_results:
        return None
    bcasts = [rw.produced_by(a, st.broadcast_in_dim_p) for a in eqn.invars]
    if not any(bcasts):
        return None
    if all(b.params["shape"] == out.aval.shape if b is not None else type(a) is Literal
           for a, b in zip(eqn.invars, bcasts)):
        dims = {b.params["broadcast_dimensions"] for b in bcasts if b is not None and b.invars[0].aval.ndim}
        if len(dims) <= 1:
            return _sink_broadcast(eqn, bcasts, dims.pop() if dims else ())
    new_eqns, invars = [], list(eqn.invars)
    order = sorted((i for i, b in enumerate(bcasts) if b is not None),
                   key=lambda i: bcasts[i].invars[0].aval.size)
    for i in order:
        b = bcasts[i]
        src, reshape = _numpy_broadcastable(b.invars[0], b.params["shape"],
                                            b.params["broadcast_dimensions"], eqn.source_info)
        trial = invars[:i] + [src] + invars[i + 1:]
        if _broadcast_shape(trial) == out.aval.shape:
            invars = trial
            new_eqns += reshape
    if invars == eqn.invars:
        return None
    return new_eqns + [eqn.replace(invars=invars)]


def _broadcast_shape(atoms) -> tuple[int, ...] | None:
    try:
        return ew.broadcast_shapes("", [a.aval for a in atoms])
    except TypeError:
        return None


def _sink_broadcast(eqn: Eqn, bcasts, dims):
    """``op(broadcast(a), broadcast(b)) -> broadcast(op(a, b))`` for broadcasts along the
    same axes (scalar sources go along with any)."""
    out = eqn.outvars[0]
    invars = [b.invars[0] if b is not None else a for a, b in zip(eqn.invars, bcasts)]
    try:
        inner_aval = eqn.primitive.abstract_eval(*(a.aval for a in invars), **eqn.params)
    except TypeError:
        return None
    inner = Var(inner_aval)
    return [eqn.replace(invars=invars, outvars=[inner]),
            Eqn(st.broadcast_in_dim_p, [inner], [out],
                {"shape": out.aval.shape, "broadcast_dimensions": dims if inner_aval.ndim else ()},
                eqn.source_info)]


def _dot_general_rule(rw, eqn):
    """Fold transposed operands into the dimension numbers, when that keeps the order of the
    free axes (so the output is unchanged): ``dot_general(a.T, b) -> dot_general(a, b)``."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    invars, dnums = list(eqn.invars), [[lc, rc], [lb, rb]]
    for side in (0, 1):
        t = rw.produced_by(invars[side], st.transpose_p)
        if t is None:
            continue
        perm = t.params["permutation"]
        contract, batch = dnums[0][side], dnums[1][side]
        free = [perm[i] for i in range(len(perm)) if i not in contract and i not in batch]
        if free != sorted(free):
            continue
        invars[side] = t.invars[0]
        dnums[0][side] = tuple(perm[i] for i in contract)
        dnums[1][side] = tuple(perm[i] for i in batch)
    if invars == eqn.invars:
        return None
    dimension_numbers = (tuple(dnums[0]), tuple(dnums[1]))
    return [eqn.replace(invars=invars, params=dict(eqn.params, dimension_numbers=dimension_numbers))]


def _chain(*rules: Rule) -> Rule:
    def rule(rw, eqn):
        for r in rules:
            result = r(rw, eqn)
            if result is not None:
                return result
        return None
    return rule


RULES: dict[core.Primitive, Rule] = {
    ew.mul_p: _chain(_identity_operand(1, commutes=True), _elementwise_rule),
    ew.div_p: _chain(_identity_operand(1, commutes=False), _elementwise_rule),
    ew.add_p: _chain(_identity_operand(0, commutes=True, exact_for_floats=False), _elementwise_rule),
    ew.sub_p: _chain(_identity_operand(0, commutes=False), _elementwise_rule),
    ew.neg_p: _chain(_involution, _elementwise_rule),
    ew.select_p: _select_rule,
    ew.integer_pow_p: _integer_pow_rule,
    ew.convert_element_type_p: _chain(_convert_rule, _elementwise_rule),
    st.transpose_p: _transpose_rule,
    linalg.dot_general_p: _dot_general_rule,
    st.reshape_p: _reshape_rule,
    st.squeeze_p: _reshape_rule,
    st.expand_dims_p: _reshape_rule,
    st.broadcast_in_dim_p: _broadcast_rule,
}
"""Simplification rules by primitive. Other elementwise primitives get
:func:`_elementwise_rule` (see :func:`_rule_for`)."""


def _rule_for(prim: core.Primitive) -> Rule | None:
    rule = RULES.get(prim)
    return rule if rule is not None or not prim.elementwise else _elementwise_rule


# ---------------------------------------------------------------------------------------------
# The pipeline

PASSES: tuple[Pass, ...] = (inline_calls, simplify, fold_constants, cse, dce)
MAX_ROUNDS = 4


def optimize(closed: ClosedJaxpr, check: bool = False) -> ClosedJaxpr:
    """Run :data:`PASSES` until nothing changes (at most :data:`MAX_ROUNDS` rounds);
    ``check=True`` verifies the jaxpr with ``core.check_jaxpr`` after every pass."""
    for _ in range(MAX_ROUNDS):
        before = closed
        for p in PASSES:
            closed = p(closed)
            if check:
                try:
                    core.check_jaxpr(closed)
                except core.JaxprTypeError as e:
                    raise core.JaxprTypeError(f"after pass {p.__name__}: {e}") from e
        if closed is before:
            break
    return closed
