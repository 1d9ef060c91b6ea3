"""``checkpoint`` (alias ``remat``): recompute a function's forward pass during the backward
pass instead of storing its intermediate values.

Under a trace the wrapped function becomes one ``remat`` call equation (a call primitive,
like a nested ``jit``). Its rules are the call rules, except partial evaluation: where
ordinary reverse mode splits the callee into a known part that produces residuals and a
linear part that consumes them, ``remat`` keeps only the known *outputs* on the forward side
and moves the recomputation of the residuals, from the callee's known inputs, into the
linear side. The residuals passed from forward to backward are then just those inputs.

The compiler never inlines ``remat`` calls, so common-subexpression elimination cannot merge
the recomputation back into the forward pass (JAX's ``prevent_cse``).
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

from . import core
from .compiler.call import define_call, split_call
from .core import ClosedJaxpr, Eqn, Jaxpr
from .interpreters import ad
from .tree_util import tree_flatten, tree_unflatten

remat_p = define_call("remat", inline="never")


def _recompute_then_linear(known: ClosedJaxpr, unknown: ClosedJaxpr, n_known_out: int,
                           k_avals, u_avals) -> ClosedJaxpr:
    """One jaxpr: (known inputs, unknown inputs) -> unknown outputs, recomputing residuals."""
    def fun(*args):
        k_in, u_in = args[:len(k_avals)], args[len(k_avals):]
        residuals = core.eval_jaxpr(known.jaxpr, known.consts, *k_in)[n_known_out:]
        return core.eval_jaxpr(unknown.jaxpr, unknown.consts, *residuals, *u_in)

    closed, _ = core.trace_flat(fun, list(k_avals) + list(u_avals), kind="checkpoint")
    return ClosedJaxpr(core.dce_jaxpr(closed.jaxpr), closed.consts)


def _remat_partial_eval(eqn: Eqn, in_unknown: Sequence[bool]):
    jaxpr, name = eqn.params["jaxpr"], eqn.params["name"]
    known, unknown, out_unknown, num_res = split_call(jaxpr, tuple(in_unknown))
    if not any(out_unknown):
        return [eqn], [], out_unknown
    n_known_out = len(known.out_avals) - num_res
    k_in = [a for a, u in zip(eqn.invars, in_unknown) if not u]
    u_in = [a for a, u in zip(eqn.invars, in_unknown) if u]
    known_eqns = []
    if n_known_out:
        outputs_only = Jaxpr(known.jaxpr.constvars, known.jaxpr.invars, known.jaxpr.eqns,
                             known.jaxpr.outvars[:n_known_out])
        known_eqns.append(Eqn(remat_p, k_in, [v for v, u in zip(eqn.outvars, out_unknown) if not u],
                              {"jaxpr": ClosedJaxpr(core.dce_jaxpr(outputs_only), known.consts),
                               "name": name}, eqn.source_info))
    recompute = _recompute_then_linear(known, unknown, n_known_out,
                                       [a.aval for a in k_in], [a.aval for a in u_in])
    unknown_eqn = Eqn(remat_p, k_in + u_in, [v for v, u in zip(eqn.outvars, out_unknown) if u],
                      {"jaxpr": recompute, "name": f"recompute({name})"}, eqn.source_info)
    return known_eqns, [unknown_eqn], out_unknown


remat_p.partial_eval = _remat_partial_eval


def checkpoint(fun: Callable, *, static_argnums: int | Sequence[int] = (), prevent_cse: bool = True
               ) -> Callable:
    """Wrap ``fun`` so reverse mode recomputes its intermediate values instead of storing
    them: memory for compute. Arguments in ``static_argnums`` are treated as constants.
    (``prevent_cse`` is always in effect; the argument exists for JAX compatibility.)"""
    static = {static_argnums} if isinstance(static_argnums, int) else set(static_argnums)
    name = getattr(fun, "__name__", "checkpoint")

    @functools.wraps(fun)
    def wrapped(*args):
        if not core.is_tracing():
            return fun(*args)          # nothing is being differentiated: just run it
        dyn = [a for i, a in enumerate(args) if i not in static]
        flat, in_tree = tree_flatten(dyn)
        out_tree: list = []

        def flat_fun(*leaves):
            it = iter(tree_unflatten(in_tree, leaves))
            full = [a if i in static else next(it) for i, a in enumerate(args)]
            out_flat, tree = tree_flatten(fun(*full))
            out_tree.append(tree)
            return out_flat

        closed, _ = core.trace_flat(flat_fun, [core.get_aval(x) for x in flat], kind="checkpoint")
        jaxpr, consts = ad.convert_constvars(closed)
        outs = remat_p.bind(*consts, *flat, jaxpr=ClosedJaxpr(jaxpr, []), name=name)
        return tree_unflatten(out_tree[0], outs)

    return wrapped


remat = checkpoint
