"""Automatic differentiation as jaxpr rewrites.

* ``jvp_eval`` runs a jaxpr on (primal, tangent) pairs with each primitive's JVP rule;
  ``jvp_jaxpr`` traces that into a jaxpr of ``(primals, tangents) -> (outs, out_tangents)``.
* ``partial_eval`` splits a jaxpr by which values depend on the "unknown" inputs (the
  tangents): a known jaxpr computes the primal outputs and residuals, an unknown jaxpr is
  linear in the tangents.
* ``backward_pass`` transposes a linear jaxpr, walking it backwards with transpose rules;
  ``transpose_jaxpr`` traces that into a jaxpr.

Reverse mode is the three in a row, so forward and reverse mode share the JVP rules.

Symbolic zeros (:class:`Zero`) stand for tangents and cotangents that are known to be zero:
no work is done for them. Integer and boolean values get ``float0`` zero tangents.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .. import core, dtypes
from ..core import ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var

# ---------------------------------------------------------------------------------------------
# Symbolic zeros and undefined primals


class Zero:
    """A tangent or cotangent known to be zero, of the given aval."""

    __slots__ = ("aval",)

    def __init__(self, aval: ShapedArray):
        self.aval = aval

    @staticmethod
    def like(x) -> "Zero":
        aval = core.get_aval(x)
        return Zero(ShapedArray(aval.shape, dtypes.tangent_dtype(aval.dtype)))

    def __repr__(self):
        return f"Zero({self.aval})"


class UndefinedPrimal:
    """Marks a linear input of an equation being transposed (its value is not known)."""

    __slots__ = ("aval",)

    def __init__(self, aval: ShapedArray):
        self.aval = aval

    def __repr__(self):
        return f"UndefinedPrimal({self.aval})"


def is_undefined(x) -> bool:
    return type(x) is UndefinedPrimal


def zeros(aval: ShapedArray):
    """A concrete (or traced) zero array of ``aval``."""
    from ..primitives.structural import full
    if aval.dtype == dtypes.float0:
        return np.zeros(aval.shape, dtypes.float0)
    return full(aval.shape, 0, aval.dtype)


def instantiate(t):
    return zeros(t.aval) if type(t) is Zero else t


def add_tangents(a, b):
    if type(a) is Zero:
        return b
    if type(b) is Zero:
        return a
    return add_any_p.bind(a, b)


# add_any: exact same-shape addition used to accumulate tangents and cotangents.
add_any_p = core.Primitive("add_any")
add_any_p.impl = lambda xp, x, y: xp.add(x, y)


def _add_any_abstract(x, y):
    if x.shape != y.shape or x.dtype != y.dtype:
        raise core.type_error("add_any", "operands must have equal shapes and dtypes", [x, y])
    return ShapedArray(x.shape, x.dtype, x.weak_type and y.weak_type)


add_any_p.abstract_eval = _add_any_abstract
add_any_p.jvp = lambda primals, tangents: (add_any_p.bind(*primals),
                                           add_tangents(*tangents) if not all(type(t) is Zero for t in tangents)
                                           else Zero(tangents[0].aval))
add_any_p.transpose = lambda ct, x, y: [ct if is_undefined(x) else None,
                                        ct if is_undefined(y) else None]


def _add_any_batch(args, dims):
    from .batching import move_to_front_or_broadcast
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    x, y = (move_to_front_or_broadcast(a, d, size) for a, d in zip(args, dims))
    return add_any_p.bind(x, y), 0


add_any_p.batch = _add_any_batch
add_any_p.elementwise = True
add_any_p.c_expr = "({0} + {1})"

# ---------------------------------------------------------------------------------------------
# Helpers for declaring JVP rules next to each primitive


def defjvp(prim: core.Primitive, *arg_jvps: Callable | None) -> None:
    """JVP rule from one function per argument: ``jvp_i(g_i, ans, *primals, **params)`` gives
    that argument's contribution to the output tangent (None: not differentiable in it)."""

    def jvp(primals, tangents, **params):
        ans = prim.bind(*primals, **params)
        out = None
        for rule, t in zip(arg_jvps, tangents):
            if type(t) is Zero or rule is None:
                continue
            contribution = rule(t, ans, *primals, **params)
            out = contribution if out is None else out + contribution
        if out is None:
            return ans, Zero.like(ans)
        if core.get_aval(out).shape != core.get_aval(ans).shape:
            from ..primitives.structural import broadcast_to
            out = broadcast_to(out, core.get_aval(ans).shape)
        return ans, out

    prim.jvp = jvp


def defjvp_zero(prim: core.Primitive) -> None:
    """Outputs are piecewise constant (or integer): their tangent is zero."""

    def jvp(primals, tangents, **params):
        ans = prim.bind(*primals, **params)
        if prim.multiple_results:
            return ans, [Zero.like(a) for a in ans]
        return ans, Zero.like(ans)

    prim.jvp = jvp


def deflinear(prim: core.Primitive, transpose: Callable) -> None:
    """A primitive linear in all its (array) arguments: its JVP is itself applied to the
    tangents (zeros instantiated), and ``transpose(ct, *args, **params)`` is given."""

    def jvp(primals, tangents, **params):
        ans = prim.bind(*primals, **params)
        if all(type(t) is Zero for t in tangents):
            return ans, (Zero.like(ans) if not prim.multiple_results else [Zero.like(a) for a in ans])
        return ans, prim.bind(*(instantiate(t) for t in tangents), **params)

    prim.jvp = jvp
    prim.transpose = transpose


# ---------------------------------------------------------------------------------------------
# Forward mode


def jvp_eval(jaxpr: Jaxpr, consts: Sequence, primals: Sequence, tangents: Sequence):
    """Evaluate ``jaxpr`` on primals and tangents (which may be :class:`Zero`)."""
    penv: dict[Var, Any] = dict(zip(jaxpr.constvars, consts))
    tenv: dict[Var, Any] = {}
    penv.update(zip(jaxpr.invars, primals))
    tenv.update(zip(jaxpr.invars, tangents))

    def tangent_of(v):
        if type(v) is Literal:
            return Zero(ShapedArray((), dtypes.tangent_dtype(v.aval.dtype)))
        t = tenv.get(v)
        return t if t is not None else Zero(ShapedArray(v.aval.shape, dtypes.tangent_dtype(v.aval.dtype)))

    for eqn in jaxpr.eqns:
        with core.source_info_from(eqn.source_info):
            ps = [penv[v] if type(v) is Var else v.val for v in eqn.invars]
            ts = [tangent_of(v) for v in eqn.invars]
            prim = eqn.primitive
            if all(type(t) is Zero for t in ts):
                outs = prim.bind(*ps, **eqn.params)
                outs = outs if prim.multiple_results else [outs]
                penv.update(zip(eqn.outvars, outs))
                continue
            if prim.jvp is None:
                raise NotImplementedError(f"differentiation rule for '{prim.name}' not implemented")
            outs, touts = prim.jvp(ps, ts, **eqn.params)
        if not prim.multiple_results:
            outs, touts = [outs], [touts]
        for v, o, t in zip(eqn.outvars, outs, touts):
            penv[v] = o
            if type(t) is not Zero and not dtypes.is_differentiable(v.aval.dtype):
                t = Zero(ShapedArray(v.aval.shape, dtypes.float0))
            tenv[v] = t
    return ([penv[v] if type(v) is Var else v.val for v in jaxpr.outvars],
            [tangent_of(v) for v in jaxpr.outvars])


def jvp_jaxpr(closed: ClosedJaxpr, nonzeros: Sequence[bool], instantiate: bool | Sequence[bool] = False
              ) -> tuple[ClosedJaxpr, list[bool]]:
    """Trace the JVP of ``closed``: inputs are all primals then the nonzero tangents; outputs
    are all primal outputs then the nonzero (or instantiated) output tangents."""
    in_avals = closed.in_avals
    n = len(in_avals)
    tangent_avals = [ShapedArray(a.shape, a.dtype) for a, nz in zip(in_avals, nonzeros) if nz]
    num_out = len(closed.out_avals)
    inst = [instantiate] * num_out if isinstance(instantiate, bool) else list(instantiate)
    out_nonzero: list[bool] = []

    def fun(*args):
        primals, nz_tangents = args[:n], iter(args[n:])
        tangents = [next(nz_tangents) if nz else Zero(ShapedArray(a.shape, dtypes.tangent_dtype(a.dtype)))
                    for a, nz in zip(in_avals, nonzeros)]
        outs, touts = jvp_eval(closed.jaxpr, closed.consts, primals, tangents)
        kept = []
        for t, i in zip(touts, inst):
            if type(t) is Zero and i and dtypes.is_differentiable(t.aval.dtype):
                t = zeros(t.aval)
            out_nonzero.append(type(t) is not Zero)
            if type(t) is not Zero:
                kept.append(t)
        return list(outs) + kept

    jaxpr, _ = core.trace_flat(fun, list(in_avals) + tangent_avals, kind="jvp")
    return jaxpr, out_nonzero


# ---------------------------------------------------------------------------------------------
# Partial evaluation: split a jaxpr into known and unknown parts


def partial_eval(jaxpr: Jaxpr, unknowns: Sequence[bool], instantiate: bool | Sequence[bool] = False
                 ) -> tuple[Jaxpr, Jaxpr, list[bool], int]:
    """Split ``jaxpr`` (no constvars) by dependence on the unknown inputs.

    Returns ``(known, unknown, out_unknowns, num_res)``:
      known:   known inputs -> known outputs + residuals
      unknown: residuals + unknown inputs -> unknown outputs
    An output is unknown if it depends on an unknown input or ``instantiate`` asks for it.
    Equations holding sub-jaxprs may split themselves (their ``partial_eval`` rule); the rest
    are wholly known or wholly unknown.
    """
    if jaxpr.constvars:
        raise ValueError("partial_eval expects a jaxpr without constvars (use convert_constvars)")
    unknown_vars: set[Var] = {v for v, u in zip(jaxpr.invars, unknowns) if u}
    known_eqns: list[Eqn] = []
    unknown_eqns: list[Eqn] = []
    for eqn in jaxpr.eqns:
        in_unknown = [type(v) is Var and v in unknown_vars for v in eqn.invars]
        if not any(in_unknown):
            known_eqns.append(eqn)
        elif eqn.primitive.partial_eval is not None:
            k_eqns, u_eqns, out_unknown = eqn.primitive.partial_eval(eqn, in_unknown)
            known_eqns.extend(k_eqns)
            unknown_eqns.extend(u_eqns)
            unknown_vars.update(v for v, u in zip(eqn.outvars, out_unknown) if u)
        else:
            unknown_eqns.append(eqn)
            unknown_vars.update(eqn.outvars)

    n_out = len(jaxpr.outvars)
    inst = [instantiate] * n_out if isinstance(instantiate, bool) else list(instantiate)
    out_unknowns = [(type(v) is Var and v in unknown_vars) or i for v, i in zip(jaxpr.outvars, inst)]

    # Residuals: known values read by the unknown side (including instantiated known outputs).
    residuals: list[Var] = []
    seen: set[Var] = set()
    unknown_defined = set(unknown_vars)

    def need(v):
        if type(v) is Var and v not in unknown_defined and v not in seen:
            seen.add(v)
            residuals.append(v)

    for eqn in unknown_eqns:
        for v in eqn.invars:
            need(v)
    for v, u in zip(jaxpr.outvars, out_unknowns):
        if u:
            need(v)

    known_in = [v for v, u in zip(jaxpr.invars, unknowns) if not u]
    known_out = [v for v, u in zip(jaxpr.outvars, out_unknowns) if not u]
    known = Jaxpr([], known_in, known_eqns, known_out + residuals)
    # The unknown side binds fresh variables for residuals so both jaxprs stand alone.
    res_vars = {v: Var(v.aval) for v in residuals}
    unknown_in = [v for v, u in zip(jaxpr.invars, unknowns) if u]
    sub = lambda v: res_vars.get(v, v) if type(v) is Var else v
    u_eqns = [e.replace(invars=[sub(v) for v in e.invars]) for e in unknown_eqns]
    unknown_out = [sub(v) for v, u in zip(jaxpr.outvars, out_unknowns) if u]
    unknown = Jaxpr([], [res_vars[v] for v in residuals] + unknown_in, u_eqns, unknown_out)
    return known, unknown, out_unknowns, len(residuals)


def convert_constvars(closed: ClosedJaxpr) -> tuple[Jaxpr, list]:
    """Make the constvars of a closed jaxpr ordinary leading inputs."""
    j = closed.jaxpr
    return Jaxpr([], j.constvars + j.invars, j.eqns, j.outvars), list(closed.consts)


# ---------------------------------------------------------------------------------------------
# Transposition (reverse mode)


def backward_pass(jaxpr: Jaxpr, consts: Sequence, args: Sequence, cts_out: Sequence) -> list:
    """Transpose a jaxpr linear in its :class:`UndefinedPrimal` arguments.

    ``args`` holds values for non-linear inputs and UndefinedPrimal for linear ones. Returns
    the cotangents of the linear inputs (Zero where nothing flows), in input order.
    """
    env: dict[Var, Any] = dict(zip(jaxpr.constvars, consts))
    linear: set[Var] = set()
    for v, a in zip(jaxpr.invars, args):
        if is_undefined(a):
            linear.add(v)
        else:
            env[v] = a
    # Forward: evaluate the non-linear equations; collect the linear ones.
    linear_eqns = []
    for eqn in jaxpr.eqns:
        if any(type(v) is Var and v in linear for v in eqn.invars):
            linear_eqns.append(eqn)
            linear.update(eqn.outvars)
        else:
            with core.source_info_from(eqn.source_info):
                outs = eqn.primitive.bind(*[env[v] if type(v) is Var else v.val for v in eqn.invars],
                                          **eqn.params)
            env.update(zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]))

    ct_env: dict[Var, Any] = {}

    def write_ct(v, ct):
        if type(v) is Var and v in linear and type(ct) is not Zero and ct is not None:
            ct_env[v] = add_tangents(ct_env[v], ct) if v in ct_env else ct

    for v, ct in zip(jaxpr.outvars, cts_out):
        write_ct(v, ct)

    for eqn in reversed(linear_eqns):
        prim = eqn.primitive
        cts = [ct_env.pop(v, None) for v in eqn.outvars]
        if all(c is None for c in cts):
            continue
        if prim.transpose is None:
            raise NotImplementedError(f"transpose rule for '{prim.name}' not implemented "
                                      "(is the function linear in its inputs?)")
        cts = [Zero(ShapedArray(v.aval.shape, v.aval.dtype)) if c is None else c
               for c, v in zip(cts, eqn.outvars)]
        invals = [(UndefinedPrimal(v.aval) if v in linear else env[v]) if type(v) is Var else v.val
                  for v in eqn.invars]
        with core.source_info_from(eqn.source_info):
            cts_in = prim.transpose(cts if prim.multiple_results else cts[0], *invals, **eqn.params)
        for v, ct in zip(eqn.invars, cts_in):
            write_ct(v, ct)

    return [ct_env.get(v, Zero(ShapedArray(v.aval.shape, dtypes.tangent_dtype(v.aval.dtype))))
            if v in linear else None for v in jaxpr.invars]


def transpose_jaxpr(jaxpr: Jaxpr, consts: Sequence, linear: Sequence[bool]) -> ClosedJaxpr:
    """Trace the transpose: inputs are the non-linear inputs then the output cotangents;
    outputs are the cotangents of the linear inputs (zeros instantiated)."""
    nonlin_avals = [v.aval for v, l in zip(jaxpr.invars, linear) if not l]
    ct_avals = [ShapedArray(a.shape, a.dtype) for a in jaxpr.out_avals]

    def fun(*args):
        it = iter(args[:len(nonlin_avals)])
        full_args = [UndefinedPrimal(v.aval) if l else next(it) for v, l in zip(jaxpr.invars, linear)]
        cts = backward_pass(jaxpr, consts, full_args, args[len(nonlin_avals):])
        return [instantiate(c) for c, l in zip(cts, linear) if l]

    closed, _ = core.trace_flat(fun, nonlin_avals + ct_avals, kind="transpose")
    return closed


# ---------------------------------------------------------------------------------------------
# Reverse mode on a traced function


def linearize_jaxpr(closed: ClosedJaxpr, diff_mask: Sequence[bool]):
    """JVP then partial-eval: ``(known, linear, out_nonzero, num_res)``.

    ``known`` (closed) maps the primal inputs to primal outputs + residuals; ``linear`` maps
    residuals + the nonzero input tangents to the output tangents. Zero tangents of
    differentiable outputs are instantiated, so each differentiable output has one."""
    out_diff = [dtypes.is_differentiable(a.dtype) for a in closed.out_avals]
    jvp_closed, out_nonzero = jvp_jaxpr(closed, diff_mask, instantiate=out_diff)
    jaxpr, consts = convert_constvars(jvp_closed)
    # Tangents that die (under stop_gradient, say) would otherwise leave their zeros and
    # residuals in the primal jaxpr.
    jaxpr = core.dce_jaxpr(jaxpr)
    n_consts, n_known = len(consts), len(consts) + len(closed.in_avals)
    unknowns = [False] * n_known + [True] * sum(diff_mask)
    inst = [False] * len(closed.out_avals) + [True] * sum(out_nonzero)
    known, linear, _, num_res = partial_eval(jaxpr, unknowns, instantiate=inst)
    known = Jaxpr(known.invars[:n_consts], known.invars[n_consts:], known.eqns, known.outvars)
    return ClosedJaxpr(known, consts), linear, out_nonzero, num_res


def vjp_flat(closed: ClosedJaxpr, primals: Sequence, diff_mask: Sequence[bool],
             outs_needed: Sequence[bool] | None = None):
    """Reverse mode: returns ``(outs, backward)`` where ``backward(cts) -> input cts`` (Zero
    for inputs that are not differentiated or receive nothing). Outputs not in
    ``outs_needed`` are not computed (None in ``outs``): ``grad`` skips the loss value."""
    known, linear, out_nonzero, num_res = linearize_jaxpr(closed, diff_mask)
    n_out = len(closed.out_avals)
    needed = [True] * n_out if outs_needed is None else list(outs_needed)
    kj = known.jaxpr
    if not all(needed):
        kept = [v for v, need in zip(kj.outvars, needed) if need]
        kj = core.dce_jaxpr(Jaxpr(kj.constvars, kj.invars, kj.eqns, kept + kj.outvars[n_out:]))
    results = iter(core.eval_jaxpr(kj, known.consts, *primals))
    outs = [next(results) if need else None for need in needed]
    residuals = list(results)
    tangent_avals = [ShapedArray(a.shape, a.dtype) for a, d in zip(closed.in_avals, diff_mask) if d]

    def backward(cts: Sequence) -> list:
        cts = [ct for ct, nz in zip(cts, out_nonzero) if nz]
        args = list(residuals) + [UndefinedPrimal(a) for a in tangent_avals]
        cts_in = backward_pass(linear, [], args, cts)[num_res:]
        it = iter(cts_in)
        return [next(it) if d else None for d in diff_mask]

    return outs, backward
