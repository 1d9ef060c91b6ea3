"""vmap as a jaxpr rewrite.

``batch_eval`` runs a per-example jaxpr on batched values: each value is either unbatched
(``dim is None``) or batched along one axis. Equations whose inputs are all unbatched run as
they are; the others go through their primitive's batching rule, which returns the batched
result and the axis it is batched along. Rules move batch axes only when they must, and
never loop over the batch. ``batch_jaxpr`` traces that into a jaxpr.
"""
from __future__ import annotations

from typing import Any, Sequence

from .. import core
from ..core import ClosedJaxpr, Jaxpr, ShapedArray, Var


def moveaxis(x, src: int, dst: int):
    from ..primitives.structural import transpose
    nd = core.get_aval(x).ndim
    src, dst = src % nd, dst % nd
    if src == dst:
        return x
    perm = [i for i in range(nd) if i != src]
    perm.insert(dst, src)
    return transpose(x, tuple(perm))


def broadcast_batch(x, size: int, dim: int = 0):
    """Give an unbatched value a batch axis of ``size`` at ``dim``."""
    from ..primitives.structural import broadcast_in_dim
    aval = core.get_aval(x)
    shape = list(aval.shape)
    shape.insert(dim, size)
    kept = tuple(i for i in range(len(shape)) if i != dim)
    return broadcast_in_dim(x, tuple(shape), kept)


def move_to_front_or_broadcast(x, dim: int | None, size: int):
    """The value batched along axis 0 (broadcast if it was unbatched)."""
    if dim is None:
        return broadcast_batch(x, size, 0)
    return moveaxis(x, dim, 0)


def batch_size(args: Sequence, dims: Sequence[int | None]) -> int:
    for a, d in zip(args, dims):
        if d is not None:
            return core.get_aval(a).shape[d]
    raise ValueError("no batched argument")


def batch_eval(jaxpr: Jaxpr, consts: Sequence, args: Sequence, dims: Sequence[int | None]):
    """Evaluate ``jaxpr`` on batched args; returns ``(outs, out_dims)``."""
    env: dict[Var, Any] = dict(zip(jaxpr.constvars, consts))
    denv: dict[Var, int | None] = {}
    env.update(zip(jaxpr.invars, args))
    denv.update(zip(jaxpr.invars, dims))
    for eqn in jaxpr.eqns:
        vals = [env[v] if type(v) is Var else v.val for v in eqn.invars]
        in_dims = [denv.get(v) if type(v) is Var else None for v in eqn.invars]
        prim = eqn.primitive
        with core.source_info_from(eqn.source_info):
            if all(d is None for d in in_dims):
                outs = prim.bind(*vals, **eqn.params)
                out_dims = [None] * len(outs) if prim.multiple_results else None
            else:
                if prim.batch is None:
                    raise NotImplementedError(f"batching rule for '{prim.name}' not implemented")
                outs, out_dims = prim.batch(vals, in_dims, **eqn.params)
        if prim.multiple_results:
            env.update(zip(eqn.outvars, outs))
            denv.update(zip(eqn.outvars, out_dims))
        else:
            env[eqn.outvars[0]] = outs
            denv[eqn.outvars[0]] = out_dims
    return ([env[v] if type(v) is Var else v.val for v in jaxpr.outvars],
            [denv.get(v) if type(v) is Var else None for v in jaxpr.outvars])


def batch_jaxpr(closed: ClosedJaxpr, in_dims: Sequence[int | None], axis_size: int,
                out_dims_wanted: Sequence[int | None] | None = None) -> tuple[ClosedJaxpr, list]:
    """Trace the batched jaxpr. Inputs are batched at ``in_dims``; outputs are moved to
    ``out_dims_wanted`` when given (see :func:`match_out_dim`; None there requires an
    unbatched output), else left where the rules put them. Returns (jaxpr, out_dims)."""
    in_avals = []
    for a, d in zip(closed.in_avals, in_dims):
        shape = list(a.shape)
        if d is not None:
            shape.insert(d, axis_size)
        in_avals.append(ShapedArray(tuple(shape), a.dtype, a.weak_type))
    result_dims: list = []

    def fun(*args):
        outs, dims = batch_eval(closed.jaxpr, closed.consts, args, in_dims)
        if out_dims_wanted is not None:
            outs = [match_out_dim(o, d, w, axis_size) for o, d, w in zip(outs, dims, out_dims_wanted)]
            dims = list(out_dims_wanted)
        result_dims.extend(dims)
        return outs

    jaxpr, _ = core.trace_flat(fun, in_avals, kind="vmap")
    return jaxpr, result_dims


def match_out_dim(x, dim: int | None, wanted: int | None, size: int):
    """Put the batch axis of ``x`` at ``wanted`` (broadcasting an unbatched value)."""
    if wanted is None:
        if dim is not None:
            raise ValueError("vmap: an output with out_axes=None is batched (it varies along "
                             "the mapped axis)")
        return x
    if dim is None:
        return broadcast_batch(x, size, wanted % (core.get_aval(x).ndim + 1))
    return moveaxis(x, dim, wanted)
