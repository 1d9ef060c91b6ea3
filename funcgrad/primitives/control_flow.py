"""Structured control flow: ``cond`` (and ``switch``), ``while_loop`` and ``scan``.

Each primitive holds closed sub-jaxprs with no consts of their own: values a branch or body
closes over are *hoisted* into explicit leading operands, so every transform sees them as
ordinary inputs. The params are only jaxprs and counts:

    cond[branches]                    index, *operands             -> outs
    while[cond_jaxpr, body_jaxpr,     *cond_consts, *body_consts,  -> final carry
          cond_nconsts, body_nconsts]   *init_carry
    scan[jaxpr, num_consts,           *consts, *init_carry, *xs    -> final carry, *stacked ys
         num_carry, length, reverse]

Rules, all here: impl (a branch or a loop iteration runs the sub-jaxpr's generated code
through :func:`_run`, not the tracer), abstract_eval, jvp (sub-jaxprs
through ``ad.jvp_jaxpr``, with a fixed point on which loop carries have nonzero tangents),
partial_eval for cond, while and scan (so reverse mode sees a known primal loop and a linear
loop over stored residuals), transpose for cond and scan (scan's is a reverse scan), and
batching (a batched ``cond`` index becomes a select; a batched ``while`` predicate masks the
rows that are done).

The user-facing functions (``cond``, ``switch``, ``while_loop``, ``fori_loop``, ``scan``,
``map``) trace the user's Python functions over pytrees and check that branch outputs and
loop carries keep one type, naming both types and the user's line when they do not.
"""
from __future__ import annotations

import builtins
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from .. import core, dtypes
from ..core import ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var
from ..interpreters import ad, batching
from ..interpreters.ad import Zero
from ..tree_util import keystr, tree_flatten, tree_flatten_with_path, tree_unflatten
from . import elementwise as ew, reduction, structural as st

# ---------------------------------------------------------------------------------------------
# Running and building sub-jaxprs


_ran_once: "weakref.WeakSet[ClosedJaxpr]" = weakref.WeakSet()


def _run(closed: ClosedJaxpr, *args) -> list:
    """Evaluate a sub-jaxpr on concrete arrays (one branch, or one loop iteration). The first
    run of a jaxpr is interpreted; from the second on, its generated code runs (compiled once
    per jaxpr, for the backend of the arguments), so loops and jitted code do not go back
    through the interpreter, while a one-off eager ``cond`` does not pay for a compilation."""
    if closed not in _ran_once:
        _ran_once.add(closed)
        return core.eval_jaxpr(closed.jaxpr, closed.consts, *args)
    from ..compiler.pipeline import backend_for, compile_jaxpr   # the compiler imports us
    return compile_jaxpr(closed, backend_for(args))(*args)


def _trace(fun: Callable, in_avals: Sequence[ShapedArray], kind: str,
           label_of: Callable[[int], str] | None = None) -> tuple[ClosedJaxpr, list]:
    """Trace ``fun`` (flat in, flat out) abstractly; its consts become leading inputs.

    Returns the const-free jaxpr and the hoisted consts (arrays, or tracers of outer traces),
    which the caller passes as leading operands."""
    closed, _ = core.trace_flat(fun, list(in_avals), label_of=label_of, kind=kind)
    return _hoist(closed)


def _hoist(closed: ClosedJaxpr) -> tuple[ClosedJaxpr, list]:
    jaxpr, consts = ad.convert_constvars(closed)
    return ClosedJaxpr(jaxpr, []), consts


def _reorder(closed: ClosedJaxpr, in_order: Sequence[int] | None = None,
             out_order: Sequence[int] | None = None, extra_in: Sequence[ShapedArray] = ()
             ) -> ClosedJaxpr:
    """The same computation with inputs/outputs permuted, plus ignored inputs appended."""
    j = closed.jaxpr
    invars = j.invars if in_order is None else [j.invars[i] for i in in_order]
    outvars = j.outvars if out_order is None else [j.outvars[i] for i in out_order]
    return ClosedJaxpr(Jaxpr([], invars + [Var(a) for a in extra_in], j.eqns, outvars), [])


def _join_branches(traced: Sequence[tuple[ClosedJaxpr, list]]) -> tuple[tuple, list]:
    """Branches with hoisted consts -> branches that all take every branch's consts (each
    ignoring the others') before the shared operands; returns (branches, all consts)."""
    counts = [len(consts) for _, consts in traced]
    const_avals = [[v.aval for v in b.jaxpr.invars[:n]] for (b, _), n in zip(traced, counts)]
    joined = []
    for i, ((b, _), n) in enumerate(zip(traced, counts)):
        j = b.jaxpr
        before = [Var(a) for avals in const_avals[:i] for a in avals]
        after = [Var(a) for avals in const_avals[i + 1:] for a in avals]
        joined.append(ClosedJaxpr(Jaxpr([], before + j.invars[:n] + after + j.invars[n:],
                                        j.eqns, j.outvars), []))
    return tuple(joined), [c for _, consts in traced for c in consts]


def _zeros_atom(aval: ShapedArray) -> tuple[list[Eqn], Var | Literal]:
    """Equations and an atom for zeros of ``aval``, built directly (no tracing, no consts)."""
    zero = Literal(np.zeros((), aval.dtype), ShapedArray((), aval.dtype))
    if not aval.shape:
        return [], zero
    out = Var(ShapedArray(aval.shape, aval.dtype))
    eqn = Eqn(st.broadcast_in_dim_p, [zero], [out],
              dict(shape=aval.shape, broadcast_dimensions=()), None)
    return [eqn], out


def _split(xs: Sequence, *sizes: int) -> list[list]:
    out, start = [], 0
    for n in sizes:
        out.append(list(xs[start:start + n]))
        start += n
    out.append(list(xs[start:]))
    return out


def _same_type(a: ShapedArray, b: ShapedArray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype


def _batched_aval(aval: ShapedArray, dim: int | None, size: int) -> ShapedArray:
    if dim is None:
        return aval
    shape = list(aval.shape)
    shape.insert(dim, size)
    return ShapedArray(tuple(shape), aval.dtype, aval.weak_type)


def _known(xs: Sequence, unknown: Sequence[bool]) -> list:
    return [x for x, u in zip(xs, unknown) if not u]


def _unknown(xs: Sequence, unknown: Sequence[bool]) -> list:
    return [x for x, u in zip(xs, unknown) if u]


def _nonzero(t) -> bool:
    return type(t) is not Zero


def _or(a: Sequence[bool], b: Sequence[bool]) -> list[bool]:
    return [x or y for x, y in zip(a, b)]


def _batched_outs(closed: ClosedJaxpr, in_dims: Sequence[int | None], size: int) -> list[bool]:
    """Which outputs of ``closed`` vary along the batch, given its inputs' batch dims."""
    _, out_dims = batching.batch_jaxpr(closed, in_dims, size)
    return [d is not None for d in out_dims]


def _all_same(a: Sequence[ShapedArray], b: Sequence[ShapedArray]) -> bool:
    return len(a) == len(b) and all(_same_type(x, y) for x, y in zip(a, b))


def _at(src) -> str:
    """`` at file:line (function)`` for messages, when the user's line is known."""
    return f" at {src}" if src is not None else ""


def _check_operands(name: str, expected: Sequence[ShapedArray], got: Sequence[ShapedArray]):
    if not _all_same(expected, got):
        raise core.type_error(name, "operands do not match the sub-jaxpr's inputs ("
                              + ", ".join(a.str_short() for a in expected) + ")", got)


# ---------------------------------------------------------------------------------------------
# cond: run branches[index](*operands)

cond_p = core.Primitive("cond", multiple_results=True)


def _cond_impl(xp, index, *ops, branches):
    return _run(branches[int(index)], *ops)


def _cond_abstract(index, *ops, branches):
    if index.shape != () or not dtypes.is_integer(index.dtype):
        raise core.type_error("cond", "the branch index must be an integer scalar", [index])
    first = branches[0]
    for b in branches:
        _check_operands("cond", b.in_avals, ops)
        if not _all_same(b.out_avals, first.out_avals):
            raise core.type_error("cond", "branches have different output types", [index, *ops])
    return [a.update(weak_type=all(b.out_avals[k].weak_type for b in branches))
            for k, a in enumerate(first.out_avals)]


def _cond_jvp(primals, tangents, *, branches):
    index, ops = primals[0], primals[1:]
    nonzero = [_nonzero(t) for t in tangents[1:]]
    out_nz = [False] * len(branches[0].out_avals)
    for b in branches:
        out_nz = _or(out_nz, ad.jvp_jaxpr(b, nonzero)[1])
    new_branches, consts = _join_branches(
        [_hoist(ad.jvp_jaxpr(b, nonzero, instantiate=out_nz)[0]) for b in branches])
    tans = [t for t, nz in zip(tangents[1:], nonzero) if nz]
    outs = cond_p.bind(index, *consts, *ops, *tans, branches=new_branches)
    n = len(out_nz)
    it = iter(outs[n:])
    return outs[:n], [next(it) if nz else Zero.like(p) for p, nz in zip(outs[:n], out_nz)]


def _cond_partial_eval(eqn: Eqn, in_unknown: Sequence[bool]):
    """Split each branch into a known and an unknown part. The known cond computes the
    known outputs and every branch's residuals (zeros for the branches not taken); residuals
    that are known operands are passed straight to the unknown cond."""
    branches = eqn.params["branches"]
    n_out = len(eqn.outvars)
    if in_unknown[0]:
        return [], [eqn], [True] * n_out
    ops_unknown = list(in_unknown[1:])
    out_unknown = [False] * n_out
    for b in branches:
        out_unknown = _or(out_unknown, ad.partial_eval(b.jaxpr, ops_unknown)[2])
    if not any(out_unknown):
        return [eqn], [], out_unknown
    splits = [ad.partial_eval(b.jaxpr, ops_unknown, instantiate=out_unknown) for b in branches]
    known_ops = _known(eqn.invars[1:], ops_unknown)
    n_known_out = out_unknown.count(False)

    # Residual slots shared by all branches: a known operand (forwarded) or a computed value.
    slot_atoms: list = []              # the outer atom feeding each slot (set below for computed)
    slot_avals: list[ShapedArray] = []
    computed: list[tuple[int, int, Var]] = []     # (slot, branch, branch's known-side var)
    branch_slots: list[dict[int, Var]] = []       # per branch: slot -> its unknown-side var
    for i, (known, unknown, _, num_res) in enumerate(splits):
        mine: dict[int, Var] = {}
        for rk, ru in zip(known.outvars[n_known_out:], unknown.invars[:num_res]):
            if rk in known.invars:
                atom = known_ops[known.invars.index(rk)]
                slot = next((s for s, a in enumerate(slot_atoms) if a is atom and s not in mine), None)
            else:
                atom, slot = None, None
            if slot is None:
                slot = len(slot_atoms)
                slot_atoms.append(atom)
                slot_avals.append(rk.aval)
                if atom is None:
                    computed.append((slot, i, rk))
            mine[slot] = ru
        branch_slots.append(mine)

    res_vars = {slot: Var(slot_avals[slot]) for slot, _, _ in computed}
    known_branches, unknown_branches = [], []
    for i, (known, unknown, _, num_res) in enumerate(splits):
        eqns, res_outs = list(known.eqns), []
        for slot, owner, rk in computed:
            if owner == i:
                res_outs.append(rk)
            else:
                zero_eqns, zero = _zeros_atom(slot_avals[slot])
                eqns += zero_eqns
                res_outs.append(zero)
        known_branches.append(ClosedJaxpr(Jaxpr([], known.invars, eqns,
                                                known.outvars[:n_known_out] + res_outs), []))
        slots_in = [branch_slots[i].get(s) or Var(a) for s, a in enumerate(slot_avals)]
        unknown_branches.append(ClosedJaxpr(Jaxpr([], slots_in + unknown.invars[num_res:],
                                                  unknown.eqns, unknown.outvars), []))
    known_eqn = eqn.replace(invars=[eqn.invars[0]] + known_ops,
                            outvars=(_known(eqn.outvars, out_unknown)
                                     + [res_vars[s] for s, _, _ in computed]),
                            params=dict(branches=tuple(known_branches)))
    slot_in = [res_vars[s] if a is None else a for s, a in enumerate(slot_atoms)]
    unknown_eqn = eqn.replace(invars=[eqn.invars[0]] + slot_in + _unknown(eqn.invars[1:], ops_unknown),
                              outvars=_unknown(eqn.outvars, out_unknown),
                              params=dict(branches=tuple(unknown_branches)))
    return [known_eqn] if known_eqn.outvars else [], [unknown_eqn], out_unknown


def _cond_transpose(cts, index, *ops, branches):
    """Transpose every branch (linear in the undefined operands) and pick one at run time."""
    linear = [ad.is_undefined(o) for o in ops]
    res = [o for o, lin in zip(ops, linear) if not lin]
    ct_nonzero = [_nonzero(c) for c in cts]
    nz_cts = [c for c in cts if _nonzero(c)]
    if not nz_cts:
        return [None] * (1 + len(ops))
    res_avals = [core.get_aval(r) for r in res]
    ct_avals = [core.get_aval(c) for c in nz_cts]
    out_avals = branches[0].out_avals

    def transpose_branch(b: ClosedJaxpr):
        def fun(*args):
            res_it, ct_it = iter(args[:len(res)]), iter(args[len(res):])
            full = [ad.UndefinedPrimal(a) if lin else next(res_it)
                    for a, lin in zip(b.in_avals, linear)]
            cts_out = [next(ct_it) if nz else Zero(a.strip_weak_type())
                       for a, nz in zip(out_avals, ct_nonzero)]
            cts_in = ad.backward_pass(b.jaxpr, [], full, cts_out)
            return [ad.instantiate(c) for c, lin in zip(cts_in, linear) if lin]
        return _trace(fun, res_avals + ct_avals, "transpose")

    new_branches, consts = _join_branches([transpose_branch(b) for b in branches])
    outs = iter(cond_p.bind(index, *consts, *res, *nz_cts, branches=new_branches))
    return [None] + [next(outs) if lin else None for lin in linear]


def _cond_batch(args, dims, *, branches):
    index, ops = args[0], args[1:]
    index_dim, op_dims = dims[0], list(dims[1:])
    size = batching.batch_size(args, dims)
    n_out = len(branches[0].out_avals)
    if index_dim is None:
        batched = [False] * n_out
        for b in branches:
            batched = _or(batched, _batched_outs(b, op_dims, size))
        out_dims = [0 if b else None for b in batched]
        new_branches, consts = _join_branches(
            [_hoist(batching.batch_jaxpr(b, op_dims, size, out_dims)[0]) for b in branches])
        return cond_p.bind(index, *consts, *ops, branches=new_branches), out_dims
    # A batched index: every branch runs on the whole batch; each row takes its branch's values.
    index = batching.moveaxis(index, index_dim, 0)
    chosen = None
    for i, b in enumerate(branches):
        outs, out_dims = batching.batch_eval(b.jaxpr, b.consts, ops, op_dims)
        outs = [batching.move_to_front_or_broadcast(o, d, size) for o, d in zip(outs, out_dims)]
        if chosen is None:
            chosen = outs
            continue
        pick = ew.eq(index, i)
        chosen = [ew.select(st.broadcast_in_dim(pick, core.get_aval(o).shape, (0,)), o, c)
                  for o, c in zip(outs, chosen)]
    return chosen, [0] * n_out


cond_p.impl = _cond_impl
cond_p.abstract_eval = _cond_abstract
cond_p.jvp = _cond_jvp
cond_p.partial_eval = _cond_partial_eval
cond_p.transpose = _cond_transpose
cond_p.batch = _cond_batch

# ---------------------------------------------------------------------------------------------
# while: carry = body(*body_consts, *carry) while cond(*cond_consts, *carry)

while_p = core.Primitive("while", multiple_results=True)


def _while_impl(xp, *args, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cond_consts, body_consts, carry = _split(args, cond_nconsts, body_nconsts)
    while _run(cond_jaxpr, *cond_consts, *carry)[0]:
        carry = _run(body_jaxpr, *body_consts, *carry)
    return list(carry)


def _while_abstract(*avals, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cond_consts, body_consts, carry = _split(avals, cond_nconsts, body_nconsts)
    _check_operands("while", cond_jaxpr.in_avals, cond_consts + carry)
    _check_operands("while", body_jaxpr.in_avals, body_consts + carry)
    pred = cond_jaxpr.out_avals
    if len(pred) != 1 or pred[0].shape != () or pred[0].dtype != dtypes.bool_:
        raise core.type_error("while", "cond_jaxpr must return one boolean scalar", avals)
    if not _all_same(body_jaxpr.out_avals, carry):
        raise core.type_error("while", "body_jaxpr must return the carry's types", avals)
    return carry


def _while_jvp(primals, tangents, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cond_consts, body_consts, carry = _split(primals, cond_nconsts, body_nconsts)
    _, body_tans, carry_tans = _split(tangents, cond_nconsts, body_nconsts)
    consts_nz = [_nonzero(t) for t in body_tans]
    carry_nz = [_nonzero(t) for t in carry_tans]
    while True:      # a carry has a tangent if its initial value or any iteration gives it one
        jvp_body, out_nz = ad.jvp_jaxpr(body_jaxpr, consts_nz + carry_nz, instantiate=carry_nz)
        if _or(carry_nz, out_nz) == carry_nz:
            break
        carry_nz = _or(carry_nz, out_nz)
    body, hoisted = _hoist(jvp_body)
    nc = len(carry)
    # jvp inputs are (hoisted, body consts, carry, const tangents, carry tangents): put the
    # const tangents with the consts and the carry tangents with the carry.
    body = _reorder(body, in_order=_ranges([len(hoisted), len(body_consts), nc, sum(consts_nz),
                                            sum(carry_nz)], (0, 1, 3, 2, 4)))
    tan_avals = [a for a, nz in zip(body_jaxpr.out_avals, carry_nz) if nz]
    cond = _reorder(cond_jaxpr, extra_in=tan_avals)
    t_consts = [t for t, nz in zip(body_tans, consts_nz) if nz]
    t_carry = [ad.instantiate(t) for t, nz in zip(carry_tans, carry_nz) if nz]
    outs = while_p.bind(*cond_consts, *hoisted, *body_consts, *t_consts, *carry, *t_carry,
                        cond_jaxpr=cond, body_jaxpr=body, cond_nconsts=cond_nconsts,
                        body_nconsts=len(hoisted) + len(body_consts) + len(t_consts))
    it = iter(outs[nc:])
    return outs[:nc], [next(it) if nz else Zero.like(p) for p, nz in zip(outs[:nc], carry_nz)]


def _while_partial_eval(eqn: Eqn, in_unknown: Sequence[bool]):
    """Known carries (when the predicate is known) come from a loop over the known part of
    the body; the unknown carries come from re-running the whole loop. The unknown loop is
    fine for forward mode but cannot be transposed (see _while_transpose)."""
    p = eqn.params
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    cond_uk, body_uk, carry_uk = _split(list(in_unknown), nc, nb)
    n = len(carry_uk)
    while True:
        out_uk = ad.partial_eval(p["body_jaxpr"].jaxpr, body_uk + carry_uk)[2]
        if _or(carry_uk, out_uk) == carry_uk:
            break
        carry_uk = _or(carry_uk, out_uk)
    pred_uk = ad.partial_eval(p["cond_jaxpr"].jaxpr, cond_uk + carry_uk)[2][0]
    if pred_uk or all(carry_uk):
        return [], [eqn], [True] * n
    if not any(carry_uk):
        return [eqn], [], [False] * n
    n_known = carry_uk.count(False)
    known_body = ad.partial_eval(p["body_jaxpr"].jaxpr, body_uk + carry_uk, instantiate=carry_uk)[0]
    known_cond = ad.partial_eval(p["cond_jaxpr"].jaxpr, cond_uk + carry_uk)[0]
    known_body = core.dce_jaxpr(Jaxpr([], known_body.invars, known_body.eqns, known_body.outvars[:n_known]))
    known_cond = core.dce_jaxpr(Jaxpr([], known_cond.invars, known_cond.eqns, known_cond.outvars[:1]))
    cond_in, body_in, carry_in = _split(eqn.invars, nc, nb)
    known_eqn = eqn.replace(
        invars=_known(cond_in, cond_uk) + _known(body_in, body_uk) + _known(carry_in, carry_uk),
        outvars=_known(eqn.outvars, carry_uk),
        params=dict(cond_jaxpr=ClosedJaxpr(known_cond, []), body_jaxpr=ClosedJaxpr(known_body, []),
                    cond_nconsts=cond_uk.count(False), body_nconsts=body_uk.count(False)))
    unknown_eqn = eqn.replace(outvars=[v if u else Var(v.aval) for v, u in zip(eqn.outvars, carry_uk)])
    return [known_eqn], [unknown_eqn], carry_uk


def _while_transpose(cts, *args, **params):
    raise ValueError(
        f"Reverse-mode differentiation (grad, vjp) of while_loop is not supported"
        f"{_at(core.user_source_info())}: the number of iterations is only known at run time, "
        "so there is nowhere to store the values the backward pass needs. Use "
        "funcgrad.lax.fori_loop with Python int bounds or funcgrad.lax.scan (both are "
        "reverse-differentiable), or forward mode (jvp, jacfwd).")


def _while_batch(args, dims, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    size = batching.batch_size(args, dims)
    cond_consts, body_consts, init = _split(args, cond_nconsts, body_nconsts)
    cond_dims, body_dims, init_dims = _split(dims, cond_nconsts, body_nconsts)
    carry_b = [d is not None for d in init_dims]
    while True:
        out_b = _batched_outs(body_jaxpr, body_dims + [0 if b else None for b in carry_b], size)
        if _or(carry_b, out_b) == carry_b:
            break
        carry_b = _or(carry_b, out_b)
    pred_batched = _batched_outs(cond_jaxpr, cond_dims + [0 if b else None for b in carry_b], size)[0]
    if pred_batched:            # rows finish at different times: every carry is per-row
        carry_b = [True] * len(init)
    carry_dims = [0 if b else None for b in carry_b]
    init = [batching.move_to_front_or_broadcast(x, d, size) if b else x
            for x, d, b in zip(init, init_dims, carry_b)]
    if not pred_batched:
        body, body_h = _hoist(batching.batch_jaxpr(body_jaxpr, body_dims + carry_dims, size,
                                                   carry_dims)[0])
        cond, cond_h = _hoist(batching.batch_jaxpr(cond_jaxpr, cond_dims + carry_dims, size, [None])[0])
        outs = while_p.bind(*cond_h, *cond_consts, *body_h, *body_consts, *init,
                            cond_jaxpr=cond, body_jaxpr=body, cond_nconsts=len(cond_h) + cond_nconsts,
                            body_nconsts=len(body_h) + body_nconsts)
        return outs, carry_dims

    carry_avals = [_batched_aval(a, 0, size) for a in body_jaxpr.out_avals]
    n_cc, n_carry = len(cond_consts), len(init)
    cond_avals = [_batched_aval(a, d, size) for a, d in zip(cond_jaxpr.in_avals[:n_cc], cond_dims)]
    body_avals = [_batched_aval(a, d, size)
                  for a, d in zip(body_jaxpr.in_avals[:len(body_consts)], body_dims)]

    def row_pred(cc, carry):
        (pred,), (d,) = batching.batch_eval(cond_jaxpr.jaxpr, [], list(cc) + list(carry),
                                            cond_dims + [0] * n_carry)
        return batching.moveaxis(pred, d, 0)

    def cond_fun(*a):
        return [reduction.reduce_or(row_pred(a[:n_cc], a[n_cc:]), (0,))]

    def body_fun(*a):
        cc, bc, carry = _split(a, n_cc, len(body_consts))
        pred = row_pred(cc, carry)
        new, new_dims = batching.batch_eval(body_jaxpr.jaxpr, [], bc + carry, body_dims + [0] * n_carry)
        new = [batching.move_to_front_or_broadcast(v, d, size) for v, d in zip(new, new_dims)]
        return [ew.select(st.broadcast_in_dim(pred, core.get_aval(c).shape, (0,)), v, c)
                for v, c in zip(new, carry)]

    cond, cond_h = _trace(cond_fun, cond_avals + carry_avals, "vmap")
    body, body_h = _trace(body_fun, cond_avals + body_avals + carry_avals, "vmap")
    outs = while_p.bind(*cond_h, *cond_consts, *body_h, *cond_consts, *body_consts, *init,
                        cond_jaxpr=cond, body_jaxpr=body, cond_nconsts=len(cond_h) + n_cc,
                        body_nconsts=len(body_h) + n_cc + len(body_consts))
    return outs, [0] * n_carry


while_p.impl = _while_impl
while_p.abstract_eval = _while_abstract
while_p.jvp = _while_jvp
while_p.partial_eval = _while_partial_eval
while_p.transpose = _while_transpose
while_p.batch = _while_batch

# ---------------------------------------------------------------------------------------------
# scan: carry, y_i = body(*consts, *carry, *x_i) over i (from the end if reverse)

scan_p = core.Primitive("scan", multiple_results=True)


def _scan_impl(xp, *args, jaxpr, num_consts, num_carry, length, reverse):
    consts, carry, xs = _split(args, num_consts, num_carry)
    ys = [xp.empty((length,) + a.shape, a.dtype) for a in jaxpr.out_avals[num_carry:]]
    for i in (range(length - 1, -1, -1) if reverse else range(length)):
        out = _run(jaxpr, *consts, *carry, *(x[i] for x in xs))
        carry = out[:num_carry]
        for y, v in zip(ys, out[num_carry:]):
            y[i] = v
    return list(carry) + ys


def _scan_abstract(*avals, jaxpr, num_consts, num_carry, length, reverse):
    consts, carry, xs = _split(avals, num_consts, num_carry)
    for x in xs:
        if not x.shape or x.shape[0] != length:
            raise core.type_error("scan", "each scanned operand needs a leading axis of length "
                                  f"{length}", avals)
    x_avals = [ShapedArray(x.shape[1:], x.dtype, x.weak_type) for x in xs]
    _check_operands("scan", jaxpr.in_avals, consts + carry + x_avals)
    carry_out = jaxpr.out_avals[:num_carry]
    if not _all_same(carry_out, carry):
        raise core.type_error("scan", "the body must return the carry's types", avals)
    return carry + [ShapedArray((length,) + y.shape, y.dtype, y.weak_type)
                    for y in jaxpr.out_avals[num_carry:]]


def _scan_jvp(primals, tangents, *, jaxpr, num_consts, num_carry, length, reverse):
    consts, carry, xs = _split(primals, num_consts, num_carry)
    t_consts, t_carry, t_xs = _split(tangents, num_consts, num_carry)
    const_nz, carry_nz, xs_nz = ([_nonzero(t) for t in ts] for ts in (t_consts, t_carry, t_xs))
    n_ys = len(jaxpr.out_avals) - num_carry
    while True:
        jvp_body, out_nz = ad.jvp_jaxpr(jaxpr, const_nz + carry_nz + xs_nz,
                                        instantiate=carry_nz + [False] * n_ys)
        if _or(carry_nz, out_nz[:num_carry]) == carry_nz:
            break
        carry_nz = _or(carry_nz, out_nz[:num_carry])
    ys_nz = out_nz[num_carry:]
    body, hoisted = _hoist(jvp_body)
    sizes = [len(hoisted), num_consts, num_carry, len(xs), sum(const_nz), sum(carry_nz), sum(xs_nz)]
    body = _reorder(body, in_order=_ranges(sizes, (0, 1, 4, 2, 5, 3, 6)),
                    out_order=_ranges([num_carry, n_ys, sum(carry_nz), sum(ys_nz)], (0, 2, 1, 3)))
    nz = lambda ts, mask: [ad.instantiate(t) for t, m in zip(ts, mask) if m]
    outs = scan_p.bind(*hoisted, *consts, *nz(t_consts, const_nz), *carry, *nz(t_carry, carry_nz),
                       *xs, *nz(t_xs, xs_nz), jaxpr=body,
                       num_consts=len(hoisted) + num_consts + sum(const_nz),
                       num_carry=num_carry + sum(carry_nz), length=length, reverse=reverse)
    carry_out, t_carry_out, ys, t_ys = _split(outs, num_carry, sum(carry_nz), n_ys)
    it_c, it_y = iter(t_carry_out), iter(t_ys)
    return (carry_out + ys,
            [next(it_c) if m else Zero.like(p) for p, m in zip(carry_out, carry_nz)]
            + [next(it_y) if m else Zero.like(p) for p, m in zip(ys, ys_nz)])


def _ranges(sizes: Sequence[int], order: Sequence[int] | None = None):
    """Consecutive index ranges of the given sizes (concatenated in ``order`` when given)."""
    out, start = [], 0
    for n in sizes:
        out.append(list(range(start, start + n)))
        start += n
    if order is None:
        return out
    return [i for k in order for i in out[k]]


def _scan_partial_eval(eqn: Eqn, in_unknown: Sequence[bool]):
    """Split the body into a known and an unknown part. The known scan computes the known
    carries and ys and stacks, per iteration, the residuals the unknown part reads. Residuals
    that are xs are passed through, and those that depend only on consts (the weights, or
    ``w.T``) are computed once before the loop, instead of being stacked."""
    p = eqn.params
    body, nc, nk, length = p["jaxpr"].jaxpr, p["num_consts"], p["num_carry"], p["length"]
    const_uk, carry_uk, xs_uk = _split(list(in_unknown), nc, nk)
    n_ys = len(eqn.outvars) - nk
    while True:
        known, unknown, out_uk, num_res = ad.partial_eval(body, const_uk + carry_uk + xs_uk,
                                                          instantiate=carry_uk + [False] * n_ys)
        if _or(carry_uk, out_uk[:nk]) == carry_uk:
            break
        carry_uk = _or(carry_uk, out_uk[:nk])
    if not any(out_uk):
        return [eqn], [], out_uk
    if all(const_uk + carry_uk + xs_uk):
        return [], [eqn], [True] * len(eqn.outvars)

    consts_in, carry_in, xs_in = _split(eqn.invars, nc, nk)
    k_consts, k_carry = _known(consts_in, const_uk), _known(carry_in, carry_uk)
    k_xs = _known(xs_in, xs_uk)
    n_known_out = out_uk.count(False)
    residuals = known.outvars[n_known_out:]
    res_in = unknown.invars[:num_res]
    hoisted_eqns, invariant = _loop_invariants(known, k_consts, residuals)
    xs_pos = {v: i for i, v in enumerate(known.invars[len(k_consts) + len(k_carry):])}
    fwd_consts, fwd_xs, stacked = [], [], []
    for r, r_in in zip(residuals, res_in):
        if r in invariant:
            fwd_consts.append((invariant[r], r_in))
        elif r in xs_pos:
            fwd_xs.append((k_xs[xs_pos[r]], r_in))
        else:
            stacked.append((r, r_in))
    stacked_vars = [Var(ShapedArray((length,) + r.aval.shape, r.aval.dtype)) for r, _ in stacked]

    known_body = core.dce_jaxpr(Jaxpr([], known.invars, known.eqns,
                            known.outvars[:n_known_out] + [r for r, _ in stacked]))
    known_eqn = eqn.replace(
        invars=k_consts + k_carry + k_xs,
        outvars=_known(eqn.outvars, out_uk) + stacked_vars,
        params=dict(p, jaxpr=ClosedJaxpr(known_body, []), num_consts=len(k_consts),
                    num_carry=len(k_carry)))
    u_consts, u_carry, u_xs = _split(unknown.invars[num_res:], const_uk.count(True),
                                     carry_uk.count(True))
    unknown_body = Jaxpr([], [v for _, v in fwd_consts] + u_consts + u_carry
                         + [v for _, v in stacked] + [v for _, v in fwd_xs] + u_xs,
                         unknown.eqns, unknown.outvars)
    unknown_eqn = eqn.replace(
        invars=([a for a, _ in fwd_consts] + _unknown(consts_in, const_uk)
                + _unknown(carry_in, carry_uk) + stacked_vars + [a for a, _ in fwd_xs]
                + _unknown(xs_in, xs_uk)),
        outvars=_unknown(eqn.outvars, out_uk),
        params=dict(p, jaxpr=ClosedJaxpr(unknown_body, []),
                    num_consts=len(fwd_consts) + len(u_consts), num_carry=len(u_carry)))
    return hoisted_eqns + ([known_eqn] if known_eqn.outvars else []), [unknown_eqn], out_uk


def _loop_invariants(body: Jaxpr, const_atoms: Sequence, wanted: Sequence[Var]):
    """For the ``wanted`` values of a loop body that depend only on its leading inputs (the
    consts, fed by ``const_atoms``): equations computing them outside the loop, with fresh
    variables, and a map from each such value to its outer atom."""
    outer = dict(zip(body.invars[:len(const_atoms)], const_atoms))
    invariant = set(outer)
    invariant_eqns = []
    for eqn in body.eqns:
        if all(type(a) is not Var or a in invariant for a in eqn.invars):
            invariant.update(eqn.outvars)
            invariant_eqns.append(eqn)
    targets = [v for v in wanted if v in invariant]
    eqns = []
    for eqn in core.dce_jaxpr(Jaxpr([], [], invariant_eqns, targets)).eqns:
        outvars = [Var(v.aval) for v in eqn.outvars]
        invars = [outer.get(a, a) if type(a) is Var else a for a in eqn.invars]
        eqns.append(eqn.replace(invars=invars, outvars=outvars))
        outer.update(zip(eqn.outvars, outvars))
    return eqns, {v: outer[v] for v in targets}


def _scan_transpose(cts, *args, jaxpr, num_consts, num_carry, length, reverse):
    """A scan in the opposite direction: its carry holds the carry cotangent and the
    accumulated cotangents of the linear consts; each step transposes the body."""
    consts, init, xs = _split(args, num_consts, num_carry)
    # Every carry is linear: a carry of the linear scan that starts from a known value
    # starts from an instantiated zero tangent (partial_eval made it unknown).
    const_lin = [ad.is_undefined(c) for c in consts]
    xs_lin = [ad.is_undefined(x) for x in xs]
    res_consts = [c for c, lin in zip(consts, const_lin) if not lin]
    res_xs = [x for x, lin in zip(xs, xs_lin) if not lin]
    ct_carry, ct_ys = cts[:num_carry], cts[num_carry:]
    ct_carry = [ad.instantiate(c) for c in ct_carry]
    ys_nz = [_nonzero(c) for c in ct_ys]
    nz_ct_ys = [c for c in ct_ys if _nonzero(c)]
    acc0 = [ad.zeros(c.aval) for c, lin in zip(consts, const_lin) if lin]
    y_avals = jaxpr.out_avals[num_carry:]
    body_in = jaxpr.in_avals
    n_res_c, n_acc, n_res_x = len(res_consts), len(acc0), len(res_xs)

    def body_t(*a):
        res_c, acc, ct_c, res_x, ct_y = _split(a, n_res_c, n_acc, num_carry, n_res_x)
        rc, rx, cy = iter(res_c), iter(res_x), iter(ct_y)
        c_avals, k_avals, x_avals = _split(body_in, num_consts, num_carry)
        full = ([ad.UndefinedPrimal(av) if lin else next(rc) for av, lin in zip(c_avals, const_lin)]
                + [ad.UndefinedPrimal(av) for av in k_avals]
                + [ad.UndefinedPrimal(av) if lin else next(rx) for av, lin in zip(x_avals, xs_lin)])
        cts_out = list(ct_c) + [next(cy) if nz else Zero(av.strip_weak_type())
                                for av, nz in zip(y_avals, ys_nz)]
        cts_in = ad.backward_pass(jaxpr.jaxpr, [], full, cts_out)
        ct_consts, ct_init, ct_xs = _split(cts_in, num_consts, num_carry)
        ct_consts = [c for c, lin in zip(ct_consts, const_lin) if lin]
        return ([ad.instantiate(ad.add_tangents(s, c)) for s, c in zip(acc, ct_consts)]
                + [ad.instantiate(c) for c in ct_init]
                + [ad.instantiate(c) for c, lin in zip(ct_xs, xs_lin) if lin])

    avals = ([core.get_aval(v) for v in res_consts + acc0 + ct_carry]
             + [ShapedArray(core.get_aval(v).shape[1:], core.get_aval(v).dtype)
                for v in res_xs + nz_ct_ys])
    body, hoisted = _trace(body_t, avals, "transpose")
    outs = scan_p.bind(*hoisted, *res_consts, *acc0, *ct_carry, *res_xs, *nz_ct_ys, jaxpr=body,
                       num_consts=len(hoisted) + n_res_c, num_carry=n_acc + num_carry,
                       length=length, reverse=not reverse)
    ct_consts, ct_init, ct_xs = _split(outs, n_acc, num_carry)
    it_c, it_x = iter(ct_consts), iter(ct_xs)
    return ([next(it_c) if lin else None for lin in const_lin]
            + [ct if ad.is_undefined(c) else None for ct, c in zip(ct_init, init)]
            + [next(it_x) if lin else None for lin in xs_lin])


def _scan_batch(args, dims, *, jaxpr, num_consts, num_carry, length, reverse):
    size = batching.batch_size(args, dims)
    consts, init, xs = _split(args, num_consts, num_carry)
    const_dims, init_dims, xs_dims = _split(dims, num_consts, num_carry)
    # Axis 0 of xs is the scanned axis: a batch axis there moves to axis 1.
    xs = [batching.moveaxis(x, 0, 1) if d == 0 else x for x, d in zip(xs, xs_dims)]
    x_dims = [None if d is None else builtins.max(d, 1) - 1 for d in xs_dims]
    carry_b = [d is not None for d in init_dims]
    while True:
        out_b = _batched_outs(jaxpr, const_dims + [0 if b else None for b in carry_b] + x_dims, size)
        if _or(carry_b, out_b[:num_carry]) == carry_b:
            break
        carry_b = _or(carry_b, out_b[:num_carry])
    out_dims = [0 if b else None for b in carry_b + out_b[num_carry:]]
    in_dims = const_dims + out_dims[:num_carry] + x_dims
    body, hoisted = _hoist(batching.batch_jaxpr(jaxpr, in_dims, size, out_dims)[0])
    init = [batching.move_to_front_or_broadcast(x, d, size) if b else x
            for x, d, b in zip(init, init_dims, carry_b)]
    outs = scan_p.bind(*hoisted, *consts, *init, *xs, jaxpr=body, num_consts=len(hoisted) + num_consts,
                       num_carry=num_carry, length=length, reverse=reverse)
    return outs, out_dims[:num_carry] + [None if d is None else 1 for d in out_dims[num_carry:]]


scan_p.impl = _scan_impl
scan_p.abstract_eval = _scan_abstract
scan_p.jvp = _scan_jvp
scan_p.partial_eval = _scan_partial_eval
scan_p.transpose = _scan_transpose
scan_p.batch = _scan_batch

# ---------------------------------------------------------------------------------------------
# User-facing functions (funcgrad.lax)


def _flat_avals(api: str, what: str, tree) -> tuple[list, list[ShapedArray], Any]:
    """Leaves, their avals (Python scalars are weakly typed), and the treedef."""
    leaves, treedef = tree_flatten(tree)
    avals = []
    for path, leaf in tree_flatten_with_path(tree)[0]:
        try:
            avals.append(core.get_aval(leaf))
        except TypeError:
            raise TypeError(f"{api}: {what}{keystr(path)} has type {type(leaf).__name__}, not an "
                            "array (values passed through control flow must be arrays or scalars)"
                            f"{_at(core.user_source_info())}") from None
    return leaves, avals, treedef


def _as_operand(leaf, aval: ShapedArray):
    """An operand for bind of type ``aval``: Python scalars become arrays, and an initial
    carry whose dtype was promoted is converted."""
    if dtypes.is_python_scalar(leaf):
        return np.asarray(leaf, aval.dtype)
    if core.get_aval(leaf).dtype != aval.dtype:
        return ew.convert_element_type(leaf, aval.dtype)
    return leaf


def _labeler(*named: tuple[str, Any]) -> Callable[[int], str]:
    """Name flat input i by argument name and pytree path (computed only for messages)."""
    def label_of(i: int) -> str:
        labels = [name + keystr(path) for name, tree in named
                  for path, _ in tree_flatten_with_path(tree)[0]]
        return labels[i] if i < len(labels) else f"input {i}"
    return label_of


def _flat_fun(fun: Callable, in_trees: Sequence, out_trees: list, pair_of: str | None = None):
    """``fun`` over pytrees -> a function of flat leaves returning flat leaves. Records the
    output treedef in ``out_trees``; with ``pair_of`` (the function's name for messages) the
    output must be a pair and the two treedefs are recorded."""
    def flat(*leaves):
        args, start = [], 0
        for t in in_trees:
            args.append(tree_unflatten(t, leaves[start:start + t.num_leaves]))
            start += t.num_leaves
        out = fun(*args)
        if pair_of is None:
            leaves_out, tree = tree_flatten(out)
            out_trees.append(tree)
            return leaves_out
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            got = (core.get_aval(out).str_short() if isinstance(out, core.Tracer) or core.is_array(out)
                   else type(out).__name__)
            raise TypeError(f"{pair_of} must return a pair (carry, y), got {got}"
                            f"{_at(core.user_source_info())}")
        (first, first_tree), (second, second_tree) = tree_flatten(out[0]), tree_flatten(out[1])
        out_trees.append((first_tree, second_tree))
        return first + second
    return flat


def _leaf_paths(treedef) -> list[str]:
    example = treedef.unflatten([0] * treedef.num_leaves)
    return [keystr(path) for path, _ in tree_flatten_with_path(example)[0]]


def _join_types(api: str, names: Sequence[str], out_avals: Sequence[Sequence[ShapedArray]],
                treedef) -> list[ShapedArray]:
    """One type per output position of several branches: equal shapes, and one dtype up to
    weak typing (a weakly typed value takes the strong dtype, as in arithmetic)."""
    joined = []
    for k, column in enumerate(zip(*out_avals)):
        dtype, weak = dtypes.result_type(*column)
        if any(a.shape != column[0].shape or (not a.weak_type and a.dtype != dtype) for a in column):
            types = ", ".join(f"{a.str_short()} in {name}" for a, name in zip(column, names))
            raise core.type_error(api, f"{' and '.join(names)} must return the same types, but "
                                  f"output{_leaf_paths(treedef)[k]} is {types}")
        joined.append(ShapedArray(column[0].shape, dtype, weak))
    return joined


def _cast_outputs(closed: ClosedJaxpr, out_avals: Sequence[ShapedArray]) -> ClosedJaxpr:
    """``closed`` with each output converted to the dtype of ``out_avals`` where it differs."""
    if all(a.dtype == b.dtype for a, b in zip(closed.out_avals, out_avals)):
        return closed

    def fun(*args):
        outs = core.eval_jaxpr(closed.jaxpr, [], *args)
        return [o if core.get_aval(o).dtype == a.dtype
                else ew.convert_element_type(o, a.dtype, a.weak_type) for o, a in zip(outs, out_avals)]

    return _trace(fun, closed.in_avals, "cast")[0]


def _check_trees(api: str, names: Sequence[str], trees: Sequence):
    for name, t in zip(names[1:], trees[1:]):
        if t != trees[0]:
            raise core.type_error(api, f"{names[0]} and {name} must return the same pytree "
                                  f"structure, but {names[0]} returns {trees[0]} and {name} "
                                  f"returns {t}")


def _scalar_operand(api: str, x, what: str) -> ShapedArray:
    aval = core.get_aval(x)
    if aval.shape != ():
        raise core.type_error(api, f"{what} must be a scalar (under vmap, each example has its own "
                              "scalar); for elementwise choices use funcgrad.numpy.where", [aval])
    return aval


def _pred_index(pred):
    """A cond predicate (bool or number) as an int32 branch index: 1 for true."""
    aval = _scalar_operand("cond", pred, "the predicate")
    if dtypes.is_python_scalar(pred) or isinstance(pred, np.generic):
        return np.asarray(int(bool(pred)), dtypes.int32)
    if aval.dtype.kind != "b":
        if aval.dtype.kind not in "iuf":
            raise core.type_error("cond", "the predicate must be a boolean or a real number", [aval])
        pred = ew.ne(pred, 0)
    return ew.convert_element_type(pred, dtypes.int32)


def _clamped_index(index, n: int):
    """A switch index as an int32 in [0, n) (out-of-range indices are clamped, as JAX does)."""
    aval = _scalar_operand("switch", index, "the index")
    if not dtypes.is_integer(aval.dtype):
        raise core.type_error("switch", "the index must be an integer", [aval])
    if dtypes.is_python_scalar(index) or isinstance(index, np.generic):
        return np.asarray(builtins.min(builtins.max(int(index), 0), n - 1), dtypes.int32)
    return ew.convert_element_type(ew.clamp(index, 0, n - 1), dtypes.int32)


def cond(pred, true_fun: Callable, false_fun: Callable, *operands):
    """``true_fun(*operands)`` if ``pred`` else ``false_fun(*operands)``, as one primitive.

    Both branches are traced; their outputs must have the same pytree structure and types.
    Under vmap with a batched ``pred`` both run and each row takes its branch's result."""
    return _switch("cond", _pred_index(pred), (false_fun, true_fun), ("false_fun", "true_fun"),
                   operands)


def switch(index, branches: Sequence[Callable], *operands):
    """``branches[clamp(index, 0, len(branches) - 1)](*operands)``, as one primitive."""
    branches = tuple(branches)
    if not branches:
        raise ValueError("switch: branches must be a non-empty sequence of callables")
    index = _clamped_index(index, len(branches))
    if len(branches) == 1:
        return branches[0](*operands)
    return _switch("switch", index, branches, [f"branches[{i}]" for i in range(len(branches))],
                   operands)


def _switch(api: str, index, funs: Sequence[Callable], names: Sequence[str], operands: tuple):
    for f, name in zip(funs, names):
        if not callable(f):
            raise TypeError(f"{api}: {name} must be callable, got {type(f).__name__}")
    leaves, avals, in_tree = _flat_avals(api, "operands", operands)
    label_of = _labeler(("operands", operands))
    traced, out_trees = [], []
    for f in funs:
        flat = _flat_fun(lambda ops, f=f: f(*ops), [in_tree], out_trees)
        traced.append(_trace(flat, avals, api, label_of))
    _check_trees(api, names, out_trees)
    out_avals = _join_types(api, names, [b.out_avals for b, _ in traced], out_trees[0])
    branches, consts = _join_branches([(_cast_outputs(b, out_avals), c) for b, c in traced])
    ops = [_as_operand(x, a) for x, a in zip(leaves, avals)]
    outs = cond_p.bind(index, *consts, *ops, branches=branches)
    return tree_unflatten(out_trees[0], outs)


def _trace_loop_body(api: str, names: tuple[str, str], fun: Callable, carry_tree, carry_avals,
                     extra_trees: Sequence = (), extra_avals: Sequence[ShapedArray] = (),
                     label_of=None, pair: bool = False):
    """Trace a loop body whose (first) output is the new carry, keeping the carry's type.

    A weakly typed initial carry adopts the dtype the body gives it (the body is traced a
    second time); a weakly typed carry output is cast to the carry's dtype. ``names`` are the
    body's and the initial value's names for messages. Returns (body, hoisted consts, carry
    avals, output treedefs)."""
    fun_name, init_name = names
    for attempt in range(2):
        out_trees: list = []
        flat = _flat_fun(fun, [carry_tree, *extra_trees], out_trees,
                         f"{api}: {fun_name}" if pair else None)
        body, consts = _trace(flat, list(carry_avals) + list(extra_avals), api, label_of)
        out_tree = out_trees[0][0] if pair else out_trees[0]
        if out_tree != carry_tree:
            raise core.type_error(api, f"{fun_name} must return a carry with the structure of "
                                  f"{init_name}, but {init_name} is {carry_tree} and {fun_name} "
                                  f"returns {out_tree}")
        outs = body.out_avals[:len(carry_avals)]
        promoted = [o if c.weak_type and c.shape == o.shape and dtypes.result_type(c, o)[0] == o.dtype
                    else c for c, o in zip(carry_avals, outs)]
        if attempt or all(p.dtype == c.dtype for p, c in zip(promoted, carry_avals)):
            break
        carry_avals = promoted
    paths = _leaf_paths(carry_tree)
    for path, c, o in zip(paths, carry_avals, outs):
        if c.shape != o.shape or (o.dtype != c.dtype and not (
                o.weak_type and dtypes.result_type(c.update(weak_type=False), o)[0] == c.dtype)):
            raise core.type_error(api, f"{fun_name} must return a carry of the same type as "
                                  f"{init_name}, but carry{path} is {c.str_short()} in {init_name} "
                                  f"and {o.str_short()} in the output of {fun_name}")
    body = _cast_outputs(body, list(carry_avals) + body.out_avals[len(carry_avals):])
    return body, consts, list(carry_avals), out_trees[0]


def while_loop(cond_fun: Callable, body_fun: Callable, init_val):
    """``val = init_val; while cond_fun(val): val = body_fun(val)``, as one primitive.

    Forward-differentiable; for reverse mode use ``fori_loop`` with static bounds or ``scan``."""
    leaves, avals, tree = _flat_avals("while_loop", "init_val", init_val)
    label_of = _labeler(("val", init_val))
    body, body_consts, avals, _ = _trace_loop_body("while_loop", ("body_fun", "init_val"), body_fun,
                                                   tree, avals, label_of=label_of)
    cond_trees: list = []
    cond, cond_consts = _trace(_flat_fun(cond_fun, [tree], cond_trees), avals, "while_loop", label_of)
    pred = cond.out_avals
    if len(pred) != 1 or pred[0].shape != () or pred[0].dtype != dtypes.bool_:
        got = ", ".join(a.str_short() for a in pred)
        raise core.type_error("while_loop", f"cond_fun must return a boolean scalar, got ({got})")
    init = [_as_operand(x, a) for x, a in zip(leaves, avals)]
    outs = while_p.bind(*cond_consts, *body_consts, *init, cond_jaxpr=cond, body_jaxpr=body,
                        cond_nconsts=len(cond_consts), body_nconsts=len(body_consts))
    return tree_unflatten(tree, outs)


def fori_loop(lower, upper, body_fun: Callable, init_val):
    """``val = body_fun(i, val)`` for ``i`` in ``range(lower, upper)``.

    With Python/NumPy integer bounds this is a ``scan`` of ``upper - lower`` steps, so it is
    reverse-differentiable; with traced bounds it is a ``while_loop``."""
    lo_aval, hi_aval = core.get_aval(lower), core.get_aval(upper)
    index_dtype, _ = dtypes.result_type(lo_aval, hi_aval)
    if lo_aval.shape or hi_aval.shape or not dtypes.is_integer(index_dtype):
        raise TypeError(f"fori_loop: lower and upper must be integer scalars, got {lo_aval.str_short()} "
                        f"and {hi_aval.str_short()}{_at(core.user_source_info())}")
    one = np.ones((), index_dtype)
    if not any(isinstance(b, core.Tracer) for b in (lower, upper)):
        def step(carry, _):
            i, val = carry
            return (i + one, body_fun(i, val)), None

        start = np.asarray(int(lower), index_dtype)
        length = builtins.max(int(upper) - int(lower), 0)
        (_, val), _ = scan(step, (start, init_val), None, length=length)
        return val

    def body(carry):
        i, hi, val = carry
        return i + one, hi, body_fun(i, val)

    bounds = tuple(ew.convert_element_type(b, index_dtype) for b in (lower, upper))
    return while_loop(lambda carry: ew.lt(carry[0], carry[1]), body, (*bounds, init_val))[2]


def scan(f: Callable, init, xs=None, length: int | None = None, reverse: bool = False,
         unroll: int | bool = 1):
    """Loop ``carry, y = f(carry, x)`` over the leading axis of ``xs``; returns the final
    carry and the stacked ``y`` (pytrees throughout; ``xs=None`` with ``length``).

    ``unroll`` is accepted for compatibility with ``jax.lax.scan``; evaluation is the same
    for every value."""
    if not callable(f):
        raise TypeError(f"scan: f must be callable, got {type(f).__name__}")
    if not (isinstance(unroll, bool) or (isinstance(unroll, int) and unroll >= 1)):
        raise ValueError(f"scan: unroll must be a positive int or a bool, got {unroll!r}")
    x_leaves, x_avals, x_tree = _flat_avals("scan", "xs", xs)
    if any(not a.shape for a in x_avals):
        raise core.type_error("scan", "every leaf of xs needs a leading axis to scan over", x_avals)
    lengths = {a.shape[0] for a in x_avals} | ({int(length)} if length is not None else set())
    if not lengths:
        raise core.type_error("scan", "give xs, or length when xs is None")
    if len(lengths) > 1:
        raise core.type_error("scan", "the leading axes of xs" + (f" and length={length}" if length
                              is not None else "") + " disagree", x_avals)
    n = lengths.pop()
    c_leaves, c_avals, c_tree = _flat_avals("scan", "init", init)
    x_example = tree_unflatten(x_tree, [0] * len(x_leaves))
    body, consts, c_avals, (_, y_tree) = _trace_loop_body(
        "scan", ("f", "init"), f, c_tree, c_avals, [x_tree],
        [ShapedArray(a.shape[1:], a.dtype, a.weak_type) for a in x_avals],
        _labeler(("carry", init), ("x", x_example)), pair=True)
    carry = [_as_operand(x, a) for x, a in zip(c_leaves, c_avals)]
    xs_ops = [_as_operand(x, a) for x, a in zip(x_leaves, x_avals)]
    outs = scan_p.bind(*consts, *carry, *xs_ops, jaxpr=body, num_consts=len(consts),
                       num_carry=len(carry), length=n, reverse=bool(reverse))
    return tree_unflatten(c_tree, outs[:len(carry)]), tree_unflatten(y_tree, outs[len(carry):])


def map(f: Callable, xs):
    """``stack([f(x) for x in xs])`` over the leading axis of ``xs``, as a scan."""
    return scan(lambda _, x: ((), f(x)), (), xs)[1]
