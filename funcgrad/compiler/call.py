"""Call primitives: ``p[jaxpr, name](*args)`` runs the closed jaxpr ``jaxpr`` on ``args``.

``jit_call`` is what a jitted function becomes when it is called under a trace;
``funcgrad.checkpoint``'s ``remat`` is another call, with its own partial-eval rule. Outer
transforms see the callee and transform it as a whole, keeping the call boundary:

* jvp:          a call of ``ad.jvp_jaxpr(jaxpr)``;
* partial_eval: the callee is split by ``ad.partial_eval`` into a known and an unknown call;
* transpose:    a call of ``ad.transpose_jaxpr(jaxpr)``;
* batch:        a call of ``batching.batch_jaxpr(jaxpr)``;
* impl:         the compiled callee (``pipeline.compile_jaxpr``).

Derived jaxprs are memoized per callee object (weakly), so a transformed jitted function
called again with the same shapes reuses the same derived jaxprs and their compiled code.
``passes.inline_calls`` splices callees into the caller when the caller is compiled.
"""
from __future__ import annotations

import weakref
from typing import Callable

from .. import core, dtypes
from ..core import ClosedJaxpr, Eqn, Jaxpr, ShapedArray, Var
from ..interpreters import ad, batching
from ..interpreters.ad import Zero
from . import pipeline

_derived: "weakref.WeakKeyDictionary[ClosedJaxpr, dict]" = weakref.WeakKeyDictionary()


def _memo(closed: ClosedJaxpr, key, compute: Callable):
    """``compute()``, remembered for ``(closed, key)`` while ``closed`` lives."""
    table = _derived.get(closed)
    if table is None:
        table = _derived[closed] = {}
    if key not in table:
        table[key] = compute()
    return table[key]


def _zero_tangent(aval: ShapedArray) -> Zero:
    return Zero(ShapedArray(aval.shape, dtypes.tangent_dtype(aval.dtype)))


def split_call(jaxpr: ClosedJaxpr, in_unknown: tuple[bool, ...]):
    """``(known, unknown, out_unknown, num_res)``: known inputs -> known outputs + residuals;
    residuals + unknown inputs -> unknown outputs (memoized per callee)."""
    def split():
        open_jaxpr, consts = ad.convert_constvars(jaxpr)
        nc = len(consts)
        known, unknown, out_unknown, num_res = ad.partial_eval(open_jaxpr, [False] * nc + list(in_unknown))
        known = Jaxpr(known.invars[:nc], known.invars[nc:], known.eqns, known.outvars)
        return ClosedJaxpr(known, consts), ClosedJaxpr(unknown, []), out_unknown, num_res
    return _memo(jaxpr, ("partial_eval", tuple(in_unknown)), split)


def define_call(name: str, inline: str) -> core.Primitive:
    """A primitive ``name[jaxpr, name](*args)`` that runs the ClosedJaxpr ``jaxpr`` on its
    operands, with the call rules above (each transform rewrites the callee as a whole, and
    the result is again a call of the same primitive). ``inline``: see ``Primitive.inline``."""
    prim = core.Primitive(name, multiple_results=True)
    prim.callee, prim.inline = "jaxpr", inline

    def call(args, jaxpr: ClosedJaxpr, label: str) -> list:
        return prim.bind(*args, jaxpr=jaxpr, name=label)

    def impl(xp, *args, jaxpr: ClosedJaxpr, name: str):
        return pipeline.compile_jaxpr(jaxpr, pipeline.backend_for(args))(*args)

    def abstract_eval(*avals, jaxpr: ClosedJaxpr, name: str):
        expected = jaxpr.in_avals
        if len(avals) != len(expected) or any(a.shape != e.shape or a.dtype != e.dtype
                                              for a, e in zip(avals, expected)):
            raise core.type_error(f"{prim.name} of {name}", "arguments do not match the callee's "
                                  f"inputs ({', '.join(e.str_short() for e in expected)})", avals)
        return jaxpr.out_avals

    def jvp(primals, tangents, *, jaxpr: ClosedJaxpr, name: str):
        nonzeros = tuple(type(t) is not Zero for t in tangents)
        jvp_closed, out_nonzero = _memo(jaxpr, ("jvp", nonzeros),
                                        lambda: ad.jvp_jaxpr(jaxpr, nonzeros, instantiate=False))
        outs = call([*primals, *(t for t in tangents if type(t) is not Zero)], jvp_closed, f"jvp({name})")
        n = len(jaxpr.out_avals)
        it = iter(outs[n:])
        return outs[:n], [next(it) if nz else _zero_tangent(a) for nz, a in zip(out_nonzero, jaxpr.out_avals)]

    def partial_eval(eqn: Eqn, in_unknown):
        jaxpr, label = eqn.params["jaxpr"], eqn.params["name"]
        known, unknown, out_unknown, num_res = split_call(jaxpr, tuple(in_unknown))
        residuals = [Var(a) for a in known.out_avals[len(known.out_avals) - num_res:]]
        known_eqn = Eqn(prim, [a for a, u in zip(eqn.invars, in_unknown) if not u],
                        [v for v, u in zip(eqn.outvars, out_unknown) if not u] + residuals,
                        {"jaxpr": known, "name": label}, eqn.source_info)
        if not any(out_unknown):
            return [known_eqn], [], out_unknown
        unknown_eqn = Eqn(prim, residuals + [a for a, u in zip(eqn.invars, in_unknown) if u],
                          [v for v, u in zip(eqn.outvars, out_unknown) if u],
                          {"jaxpr": unknown, "name": label}, eqn.source_info)
        return [known_eqn], [unknown_eqn], out_unknown

    def transpose(cts, *args, jaxpr: ClosedJaxpr, name: str):
        linear = tuple(ad.is_undefined(a) for a in args)
        transposed = _memo(jaxpr, ("transpose", linear),
                           lambda: ad.transpose_jaxpr(jaxpr.jaxpr, jaxpr.consts, linear))
        cts = [ad.zeros(a.strip_weak_type()) if type(ct) is Zero else ct for ct, a in zip(cts, jaxpr.out_avals)]
        outs = iter(call([a for a, l in zip(args, linear) if not l] + cts, transposed, f"transpose({name})"))
        return [next(outs) if l else None for l in linear]

    def batch(args, dims, *, jaxpr: ClosedJaxpr, name: str):
        dims = tuple(dims)
        size = batching.batch_size(args, dims)
        batched, out_dims = _memo(jaxpr, ("batch", dims, size), lambda: batching.batch_jaxpr(jaxpr, dims, size))
        return call(args, batched, f"vmap({name})"), out_dims

    prim.impl, prim.abstract_eval, prim.jvp = impl, abstract_eval, jvp
    prim.partial_eval, prim.transpose, prim.batch = partial_eval, transpose, batch
    return prim


jit_call_p = define_call("jit_call", inline="always")


def jit_call(args, jaxpr: ClosedJaxpr, name: str) -> list:
    return jit_call_p.bind(*args, jaxpr=jaxpr, name=name)
