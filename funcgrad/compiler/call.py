"""``jit_call``: the call primitive a jitted function becomes when it is called under a trace.

``jit_call[jaxpr, name](*args)`` runs the closed jaxpr ``jaxpr`` on ``args``. Outer
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
from . import passes, pipeline

jit_call_p = core.Primitive("jit_call", multiple_results=True)
passes.CALLS[jit_call_p] = "jaxpr"

_derived: "weakref.WeakKeyDictionary[ClosedJaxpr, dict]" = weakref.WeakKeyDictionary()


def _memo(closed: ClosedJaxpr, key, compute: Callable):
    """``compute()``, remembered for ``(closed, key)`` while ``closed`` lives."""
    table = _derived.get(closed)
    if table is None:
        table = _derived[closed] = {}
    if key not in table:
        table[key] = compute()
    return table[key]


def jit_call(args, jaxpr: ClosedJaxpr, name: str) -> list:
    return jit_call_p.bind(*args, jaxpr=jaxpr, name=name)


def _impl(xp, *args, jaxpr: ClosedJaxpr, name: str):
    return pipeline.compile_jaxpr(jaxpr, "cupy" if xp.__name__ == "cupy" else "numpy")(*args)


def _abstract_eval(*avals, jaxpr: ClosedJaxpr, name: str):
    expected = jaxpr.in_avals
    if len(avals) != len(expected) or any(a.shape != e.shape or a.dtype != e.dtype
                                          for a, e in zip(avals, expected)):
        raise core.type_error(f"jit_call of {name}", "arguments do not match the callee's "
                              f"inputs ({', '.join(e.str_short() for e in expected)})", avals)
    return jaxpr.out_avals


def _zero_tangent(aval: ShapedArray) -> Zero:
    return Zero(ShapedArray(aval.shape, dtypes.tangent_dtype(aval.dtype)))


def _jvp(primals, tangents, *, jaxpr: ClosedJaxpr, name: str):
    nonzeros = tuple(type(t) is not Zero for t in tangents)
    jvp_closed, out_nonzero = _memo(jaxpr, ("jvp", nonzeros),
                                    lambda: ad.jvp_jaxpr(jaxpr, nonzeros, instantiate=False))
    outs = jit_call([*primals, *(t for t in tangents if type(t) is not Zero)],
                    jvp_closed, f"jvp({name})")
    n = len(jaxpr.out_avals)
    it = iter(outs[n:])
    return outs[:n], [next(it) if nz else _zero_tangent(a)
                      for nz, a in zip(out_nonzero, jaxpr.out_avals)]


def _split(jaxpr: ClosedJaxpr, in_unknown: tuple[bool, ...]):
    """``(known, unknown, out_unknown, num_res)``: known inputs -> known outputs + residuals;
    residuals + unknown inputs -> unknown outputs."""
    open_jaxpr, consts = ad.convert_constvars(jaxpr)
    nc = len(consts)
    known, unknown, out_unknown, num_res = ad.partial_eval(open_jaxpr, [False] * nc + list(in_unknown))
    known = Jaxpr(known.invars[:nc], known.invars[nc:], known.eqns, known.outvars)
    return ClosedJaxpr(known, consts), ClosedJaxpr(unknown, []), out_unknown, num_res


def _partial_eval(eqn: Eqn, in_unknown):
    jaxpr, name = eqn.params["jaxpr"], eqn.params["name"]
    in_unknown = tuple(in_unknown)
    known, unknown, out_unknown, num_res = _memo(jaxpr, ("partial_eval", in_unknown),
                                                 lambda: _split(jaxpr, in_unknown))
    residuals = [Var(a) for a in known.out_avals[len(known.out_avals) - num_res:]]
    known_eqn = Eqn(jit_call_p, [a for a, u in zip(eqn.invars, in_unknown) if not u],
                    [v for v, u in zip(eqn.outvars, out_unknown) if not u] + residuals,
                    {"jaxpr": known, "name": name}, eqn.source_info)
    if not any(out_unknown):
        return [known_eqn], [], out_unknown
    unknown_eqn = Eqn(jit_call_p, residuals + [a for a, u in zip(eqn.invars, in_unknown) if u],
                      [v for v, u in zip(eqn.outvars, out_unknown) if u],
                      {"jaxpr": unknown, "name": name}, eqn.source_info)
    return [known_eqn], [unknown_eqn], out_unknown


def _transpose(cts, *args, jaxpr: ClosedJaxpr, name: str):
    linear = tuple(ad.is_undefined(a) for a in args)
    transposed = _memo(jaxpr, ("transpose", linear),
                       lambda: ad.transpose_jaxpr(jaxpr.jaxpr, jaxpr.consts, linear))
    cts = [ad.zeros(a.strip_weak_type()) if type(ct) is Zero else ct
           for ct, a in zip(cts, jaxpr.out_avals)]
    outs = iter(jit_call([a for a, l in zip(args, linear) if not l] + cts, transposed,
                         f"transpose({name})"))
    return [next(outs) if l else None for l in linear]


def _batch(args, dims, *, jaxpr: ClosedJaxpr, name: str):
    dims = tuple(dims)
    size = batching.batch_size(args, dims)
    batched, out_dims = _memo(jaxpr, ("batch", dims, size),
                              lambda: batching.batch_jaxpr(jaxpr, dims, size))
    return jit_call(args, batched, f"vmap({name})"), out_dims


jit_call_p.impl = _impl
jit_call_p.abstract_eval = _abstract_eval
jit_call_p.jvp = _jvp
jit_call_p.partial_eval = _partial_eval
jit_call_p.transpose = _transpose
jit_call_p.batch = _batch
