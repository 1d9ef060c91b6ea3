"""The user-facing transforms: make_jaxpr, grad, value_and_grad, vjp, jvp, linearize,
jacfwd, jacrev, hessian, vmap. Each flattens pytrees, traces the function into a jaxpr, hands
the jaxpr to an interpreter, and unflattens the result."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

import numpy as np

from . import core, dtypes
from .core import NO_VALUE, ShapedArray
from .interpreters import ad, batching
from .interpreters.ad import Zero
from .tree_util import (keystr, tree_flatten, tree_flatten_with_path, tree_map, tree_structure,
                        tree_unflatten)

# ---------------------------------------------------------------------------------------------
# Shared plumbing


def _fun_name(fun) -> str:
    return getattr(fun, "__name__", type(fun).__name__)


def _aval_of_arg(x, where: str) -> ShapedArray:
    try:
        return core.get_aval(x)
    except TypeError:
        raise TypeError(f"{where}: argument of type {type(x).__name__} is not an array "
                        f"(valid arguments are arrays, scalars, and pytrees of them): {x!r:.80}") from None


def _labels(fun, args: Sequence, argnums: Sequence[int]) -> Callable[[int], str]:
    """Lazily name flat input i by its parameter name and pytree path, for messages."""
    def label_of(i: int) -> str:
        try:
            names = list(inspect.signature(fun).parameters)
        except (TypeError, ValueError):
            names = []
        flat = []
        for n in argnums:
            pairs, _ = tree_flatten_with_path(args[n])
            base = names[n] if n < len(names) else f"args[{n}]"
            flat.extend(base + keystr(p) for p, _ in pairs)
        return flat[i] if i < len(flat) else f"input {i}"
    return label_of


def _normalize_argnums(argnums, nargs: int, name: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not -nargs <= n < nargs:
            raise ValueError(f"{name}: argnums={argnums} is out of range for a function called with "
                             f"{nargs} positional arguments")
    return tuple(n % nargs for n in nums)


def _trace_args(fun, args, kwargs, argnums, kind: str, concrete: bool = True):
    """Trace ``fun`` as a function of the leaves of ``args[argnums]`` (others are constants).

    Returns ``(closed_jaxpr, flat_inputs, in_tree, out_tree)``; ``out_tree`` is filled in
    after tracing (a one-element list)."""
    dyn = [args[n] for n in argnums]
    flat, in_tree = tree_flatten(dyn)
    avals = [_aval_of_arg(x, f"{kind} of {_fun_name(fun)}") for x in flat]
    out_tree: list = []

    def flat_fun(*leaves):
        new_args = list(args)
        for n, sub in zip(argnums, tree_unflatten(in_tree, leaves)):
            new_args[n] = sub
        out = fun(*new_args, **kwargs)
        out_flat, tree = tree_flatten(out)
        out_tree.append(tree)
        return out_flat

    # Python scalars keep their weak type in the avals; as values they become 0-d arrays, so
    # every impl sees an array (the jaxpr's explicit casts decide the arithmetic dtypes).
    flat = [np.asarray(x) if dtypes.is_python_scalar(x) else x for x in flat]
    values = flat if concrete else None
    closed, _ = core.trace_flat(flat_fun, avals, values, _labels(fun, args, argnums), kind)
    return closed, flat, in_tree, out_tree[0]


def make_jaxpr(fun: Callable, static_argnums: int | Sequence[int] = (), return_shape: bool = False):
    """``make_jaxpr(f)(*args)`` returns the ClosedJaxpr of ``f`` traced at the args' shapes."""
    static = {static_argnums} if isinstance(static_argnums, int) else set(static_argnums)

    @functools.wraps(fun)
    def make(*args, **kwargs):
        argnums = tuple(i for i in range(len(args)) if i not in static)
        closed, _, _, out_tree = _trace_args(fun, args, kwargs, argnums, "make_jaxpr", concrete=False)
        if return_shape:
            shapes = tree_unflatten(out_tree, [_ShapeDtype(a.shape, a.dtype) for a in closed.out_avals])
            return closed, shapes
        return closed

    return make


class _ShapeDtype:
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype

    def __repr__(self):
        return f"ShapeDtypeStruct(shape={self.shape}, dtype={self.dtype})"


def _zeros_for(aval: ShapedArray):
    return ad.zeros(ShapedArray(aval.shape, dtypes.tangent_dtype(aval.dtype)))


# ---------------------------------------------------------------------------------------------
# Reverse mode


def vjp(fun: Callable, *primals, has_aux: bool = False):
    """``(out, vjp_fn)`` or ``(out, vjp_fn, aux)``; ``vjp_fn(ct)`` returns a tuple with one
    cotangent pytree per primal. ``vjp_fn`` may be called many times."""
    call = (lambda *a: _split_aux(fun(*a), "vjp")) if has_aux else fun
    closed, flat, in_tree, out_tree = _trace_args(call, primals, {}, tuple(range(len(primals))), "vjp")
    diff = [dtypes.is_differentiable(a.dtype) for a in closed.in_avals]
    outs, backward = ad.vjp_flat(closed, flat, diff)
    if has_aux:
        out_tree, aux_tree = out_tree.children
        n_out = out_tree.num_leaves
        outs, aux = outs[:n_out], outs[n_out:]
    else:
        n_out = len(outs)
    out_avals = closed.out_avals[:n_out]

    def vjp_fn(ct):
        ct_flat = out_tree.flatten_up_to(ct)
        cts = []
        for c, a in zip(ct_flat, out_avals):
            c_aval = core.get_aval(c)
            if not dtypes.is_differentiable(a.dtype):
                cts.append(Zero(c_aval))
                continue
            if c_aval.shape != a.shape:
                raise ValueError(f"vjp: cotangent of shape {c_aval.shape} for an output of shape {a.shape}")
            cts.append(c)
        cts += [Zero(ShapedArray(a.shape, dtypes.tangent_dtype(a.dtype)))
                for a in closed.out_avals[n_out:]]
        cts_in = backward(cts)
        res = [ad.instantiate(c) if c is not None else _zeros_for(a)
               for c, a in zip(cts_in, closed.in_avals)]
        return tuple(tree_unflatten(in_tree, res))

    out = tree_unflatten(out_tree, outs)
    if has_aux:
        return out, vjp_fn, tree_unflatten(aux_tree, aux)
    return out, vjp_fn


def _split_aux(result, name: str):
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError(f"{name} with has_aux=True: the function must return a pair (output, aux), "
                        f"got {type(result).__name__}")
    return tuple(result)


def value_and_grad(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
                   holomorphic: bool = False, allow_int: bool = False):
    """Return ``f`` that computes ``(fun(*args), grad)``, or ``((value, aux), grad)``."""
    return _value_and_grad(fun, argnums, has_aux, holomorphic, allow_int, "value_and_grad")


def _value_and_grad(fun: Callable, argnums, has_aux: bool, holomorphic: bool, allow_int: bool,
                    name: str):
    """value_and_grad; as ``grad`` (``name``) the value is not computed (it is None)."""
    if holomorphic:
        raise NotImplementedError("holomorphic=True is not supported (complex gradients)")
    need_value = name != "grad"

    @functools.wraps(fun)
    def value_and_grad_f(*args, **kwargs):
        nums = _normalize_argnums(argnums, len(args), name)
        for n in nums:
            for leaf in tree_flatten(args[n])[0]:
                dt = _aval_of_arg(leaf, name).dtype
                if not dtypes.is_differentiable(dt) and not allow_int:
                    raise TypeError(
                        f"grad requires real-valued (floating-point) inputs, but argument {n} of "
                        f"{_fun_name(fun)} has dtype {dt}. Use vjp, or grad(..., allow_int=True) "
                        "for integer inputs (their gradient is float0 zeros).")

        def scalar_fun(*a, **kw):
            out = fun(*a, **kw)
            value, aux = _split_aux(out, name) if has_aux else (out, None)
            aval = _aval_of_arg(value, name)
            if aval.shape != ():
                raise TypeError(f"grad requires a scalar output, but {_fun_name(fun)} returned an "
                                f"array of shape {aval.shape} ({aval.str_short()}). Sum it, or use "
                                "vjp or jacrev for non-scalar outputs.")
            if not dtypes.is_differentiable(aval.dtype):
                raise TypeError(f"grad requires a floating-point output, but {_fun_name(fun)} "
                                f"returned {aval.str_short()}: integer and boolean outputs are "
                                "not differentiable.")
            return (value, aux) if has_aux else value

        closed, flat, in_tree, out_tree = _trace_args(scalar_fun, args, kwargs, nums, name)
        diff = [dtypes.is_differentiable(a.dtype) for a in closed.in_avals]
        outs_needed = [need_value] + [True] * (len(closed.out_avals) - 1)
        outs, backward = ad.vjp_flat(closed, flat, diff, outs_needed)
        value_aval = closed.out_avals[0]
        one = np.ones((), value_aval.dtype)
        cts = [one] + [Zero(ShapedArray(a.shape, dtypes.tangent_dtype(a.dtype)))
                       for a in closed.out_avals[1:]]
        cts_in = backward(cts)
        grads = [ad.instantiate(c) if c is not None else _zeros_for(a)
                 for c, a in zip(cts_in, closed.in_avals)]
        grads = tree_unflatten(in_tree, grads)
        g = grads[0] if isinstance(argnums, int) else tuple(grads)
        result = tree_unflatten(out_tree, outs)
        return (tuple(result), g) if has_aux else (result, g)

    return value_and_grad_f


def grad(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
         holomorphic: bool = False, allow_int: bool = False):
    """The gradient of a scalar function with respect to ``argnums`` (pytrees allowed)."""
    vg = _value_and_grad(fun, argnums, has_aux, holomorphic, allow_int, "grad")

    @functools.wraps(fun)
    def grad_f(*args, **kwargs):
        (value_and_aux, g) = vg(*args, **kwargs)
        return (g, value_and_aux[1]) if has_aux else g

    return grad_f


# ---------------------------------------------------------------------------------------------
# Forward mode


def _check_tangent(p, t):
    pa, ta = core.get_aval(p), core.get_aval(t)
    want = dtypes.tangent_dtype(pa.dtype)
    if pa.shape != ta.shape:
        raise ValueError(f"jvp: primal of shape {pa.shape} has a tangent of shape {ta.shape}")
    if ta.dtype != want and not (ta.weak_type and want.kind == "f"):
        raise TypeError(f"jvp: primal of dtype {pa.dtype} needs a tangent of dtype {want}, got {ta.dtype}")


def jvp(fun: Callable, primals: Sequence, tangents: Sequence, has_aux: bool = False):
    """``(fun(*primals), tangent of the output)`` (and aux with ``has_aux``)."""
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples or lists")
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    call = (lambda *a: _split_aux(fun(*a), "jvp")) if has_aux else fun
    closed, flat, in_tree, out_tree = _trace_args(call, tuple(primals), {}, tuple(range(len(primals))), "jvp")
    flat_t = in_tree.flatten_up_to(list(tangents))
    tans = []
    for p, t in zip(flat, flat_t):
        _check_tangent(p, t)
        tans.append(Zero.like(p) if not dtypes.is_differentiable(core.get_aval(p).dtype) else
                    _cast_tangent(t, core.get_aval(p).dtype))
    outs, touts = ad.jvp_eval(closed.jaxpr, closed.consts, flat, tans)
    touts = [ad.instantiate(t) for t in touts]
    if has_aux:
        o_tree, aux_tree = out_tree.children
        n = o_tree.num_leaves
        return (tree_unflatten(o_tree, outs[:n]), tree_unflatten(o_tree, touts[:n]),
                tree_unflatten(aux_tree, outs[n:]))
    return tree_unflatten(out_tree, outs), tree_unflatten(out_tree, touts)


def _cast_tangent(t, dtype):
    if core.get_aval(t).dtype != dtype:
        from .primitives.elementwise import convert_element_type
        return convert_element_type(t, dtype)
    return t


def linearize(fun: Callable, *primals):
    """``(fun(*primals), f_jvp)`` where ``f_jvp(*tangents)`` evaluates the linearized function
    without re-running the primal computation."""
    closed, flat, in_tree, out_tree = _trace_args(fun, primals, {}, tuple(range(len(primals))), "linearize")
    diff = [dtypes.is_differentiable(a.dtype) for a in closed.in_avals]
    known, linear, out_nonzero, num_res = ad.linearize_jaxpr(closed, diff)
    results = core.eval_jaxpr(known.jaxpr, known.consts, *flat)
    n_out = len(closed.out_avals)
    outs, residuals = results[:n_out], results[n_out:]

    def f_jvp(*tangents):
        flat_t = in_tree.flatten_up_to(list(tangents))
        for p, t in zip(flat, flat_t):
            _check_tangent(p, t)
        ts = [t for t, d in zip(flat_t, diff) if d]
        lin_outs = iter(core.eval_jaxpr(linear, [], *residuals, *ts))
        touts = [next(lin_outs) if nz else _zeros_for(a) for nz, a in zip(out_nonzero, closed.out_avals)]
        return tree_unflatten(out_tree, touts)

    return tree_unflatten(out_tree, outs), f_jvp


# ---------------------------------------------------------------------------------------------
# Jacobians: vmap of jvp (forward) and of vjp (reverse)


def _std_basis(flat_avals: Sequence[ShapedArray]):
    """One-hot tangents for every entry of every input leaf: ``(total, *leaf.shape)`` each."""
    sizes = [a.size for a in flat_avals]
    total = sum(sizes)
    out, start = [], 0
    for a, n in zip(flat_avals, sizes):
        eye = np.zeros((total, n), a.dtype)
        eye[start:start + n] = np.eye(n, dtype=a.dtype)
        out.append(eye.reshape((total,) + a.shape))
        start += n
    return out, sizes


def _split_jac(flat_jac, axis_shapes, leading: bool):
    """Split the stacked basis axis (size = sum of input sizes) into per-input axes."""
    from . import numpy as fnp
    pieces, start = [], 0
    for shape in axis_shapes:
        n = int(np.prod(shape, dtype=np.int64))
        if leading:
            sl = flat_jac[start:start + n]
            pieces.append(fnp.reshape(sl, tuple(shape) + sl.shape[1:]))
        else:
            sl = flat_jac[..., start:start + n]
            pieces.append(fnp.reshape(sl, sl.shape[:-1] + tuple(shape)))
        start += n
    return pieces


def _dynamic_part(fun: Callable, args: tuple, argnums, name: str):
    """``(f, dyn)``: ``f(*dyn)`` is ``fun(*args)`` with the ``argnums`` arguments replaced."""
    nums = _normalize_argnums(argnums, len(args), name)

    def f(*dyn):
        full = list(args)
        for n, v in zip(nums, dyn):
            full[n] = v
        return fun(*full)

    return f, tuple(args[n] for n in nums)


def jacfwd(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False):
    """Jacobian by forward mode (vmap of jvp over a one-hot basis): output leaves have shape
    ``out.shape + in.shape``."""

    def jacfun(*args):
        f, dyn = _dynamic_part(fun, args, argnums, "jacfwd")
        flat, in_tree = tree_flatten(dyn)
        avals = [core.get_aval(x) for x in flat]

        def push(*flat_t):
            res = jvp(f, dyn, list(tree_unflatten(in_tree, flat_t)), has_aux=has_aux)
            return (res[1], res[2]) if has_aux else res[1]

        basis, _ = _std_basis(avals)
        result = vmap(push, in_axes=0, out_axes=(-1, None) if has_aux else -1)(*basis)
        stacked, aux = result if has_aux else (result, None)
        out_leaves, out_tree = tree_flatten(stacked)
        per_out = [_split_jac(j, [a.shape for a in avals], leading=False) for j in out_leaves]
        jac = _assemble(out_tree, in_tree, per_out, isinstance(argnums, int))
        return (jac, aux) if has_aux else jac

    return jacfun


def jacrev(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False):
    """Jacobian by reverse mode (vmap of vjp over a one-hot cotangent basis)."""

    def jacfun(*args):
        f, dyn = _dynamic_part(fun, args, argnums, "jacrev")
        _, in_tree = tree_flatten(dyn)
        res = vjp(f, *dyn, has_aux=has_aux)
        out, pullback = res[0], res[1]
        out_leaves, out_tree = tree_flatten(out)
        out_avals = [core.get_aval(o) for o in out_leaves]
        basis, _ = _std_basis(out_avals)
        cts = vmap(lambda *b: pullback(tree_unflatten(out_tree, b)))(*basis)
        ct_leaves = tree_flatten(cts)[0]     # one per input leaf, each (total_out, *in.shape)
        per_out = [[None] * len(ct_leaves) for _ in out_avals]
        for j, leaf in enumerate(ct_leaves):
            for i, piece in enumerate(_split_jac(leaf, [a.shape for a in out_avals], leading=True)):
                per_out[i][j] = piece
        jac = _assemble(out_tree, in_tree, per_out, isinstance(argnums, int))
        return (jac, res[2]) if has_aux else jac

    return jacfun


def _assemble(out_tree, in_tree, per_out, single_arg: bool):
    """Nest as JAX does: output structure outside, input structure inside."""
    inner = [tree_unflatten(in_tree, row) for row in per_out]
    if single_arg:
        inner = [x[0] for x in inner]
    return tree_unflatten(out_tree, inner)


def hessian(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False):
    """Second derivatives: jacfwd of jacrev."""
    return jacfwd(jacrev(fun, argnums, has_aux), argnums, has_aux)


# ---------------------------------------------------------------------------------------------
# vmap


def _flat_axes(in_axes, args: tuple, name: str) -> list:
    """Broadcast an in_axes prefix tree over the args, returning one axis per flat leaf."""
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)
    if isinstance(in_axes, (int, type(None))):
        return [in_axes] * len(tree_flatten(args)[0])
    if not isinstance(in_axes, tuple) or len(in_axes) != len(args):
        raise ValueError(f"{name}: in_axes must be an int, None, or a tuple with one entry per "
                         f"positional argument ({len(args)}), got {in_axes!r}")
    axes_leaves, axes_tree = tree_flatten(in_axes, is_leaf=lambda x: x is None)
    try:
        subtrees = axes_tree.flatten_up_to(args)
    except ValueError as e:
        raise ValueError(f"{name}: in_axes structure does not match the arguments: {e}") from None
    out = []
    for ax, sub in zip(axes_leaves, subtrees):
        out.extend([ax] * len(tree_flatten(sub)[0]))
    return out


def vmap(fun: Callable, in_axes: Any = 0, out_axes: Any = 0, axis_size: int | None = None):
    """Vectorize ``fun`` over a mapped axis of its inputs. Keyword arguments are mapped
    along axis 0. No loops: every primitive has a batching rule."""
    name = f"vmap({_fun_name(fun)})"

    @functools.wraps(fun)
    def vmapped(*args, **kwargs):
        all_args = (args, kwargs)
        flat, in_tree = tree_flatten(all_args)
        axes = _flat_axes(in_axes, args, name) + [0] * len(tree_flatten(kwargs)[0])
        sizes = {}
        avals, values, dims = [], [], []
        for i, (x, ax) in enumerate(zip(flat, axes)):
            if ax is None:
                if isinstance(x, core.Tracer) or core.is_array(x) or dtypes.is_python_scalar(x) \
                        or isinstance(x, np.generic):
                    avals.append(core.get_aval(x))
                    values.append(x)
                else:  # a static, non-array leaf: close over it
                    avals.append(None)
                    values.append(x)
                dims.append(None)
                continue
            aval = _aval_of_arg(x, name)
            if not isinstance(ax, int) or not -aval.ndim <= ax < max(aval.ndim, 0) or aval.ndim == 0:
                raise ValueError(f"{name}: in_axes={ax} is out of range for argument "
                                 f"{_arg_names(fun, all_args)[i]} of shape {aval.shape}")
            ax %= aval.ndim
            sizes[i] = aval.shape[ax]
            avals.append(ShapedArray(aval.shape[:ax] + aval.shape[ax + 1:], aval.dtype, aval.weak_type))
            values.append(NO_VALUE)
            dims.append(ax)
        distinct = set(sizes.values())
        if len(distinct) > 1:
            names = _arg_names(fun, all_args)
            detail = ", ".join(f"{names[i]} has size {n} (axis {dims[i]} of "
                               f"{core.get_aval(flat[i]).str_short()})" for i, n in sizes.items())
            raise ValueError(f"{name}: inconsistent sizes along the mapped axes: {detail}")
        if not sizes and axis_size is None:
            raise ValueError(f"{name}: no argument is mapped (all in_axes are None); give axis_size")
        size = distinct.pop() if distinct else axis_size
        if axis_size is not None and size != axis_size:
            raise ValueError(f"{name}: axis_size={axis_size} but the mapped arguments have size {size}")

        traced_idx = [i for i, a in enumerate(avals) if a is not None]
        out_tree: list = []

        def flat_fun(*leaves):
            full = list(flat)
            for i, leaf in zip(traced_idx, leaves):
                full[i] = leaf
            a, kw = tree_unflatten(in_tree, full)
            out = fun(*a, **kw)
            out_flat, tree = tree_flatten(out)
            out_tree.append(tree)
            return out_flat

        closed, _ = core.trace_flat(flat_fun, [avals[i] for i in traced_idx],
                                    [values[i] for i in traced_idx], kind="vmap")
        batched_args = [np.asarray(flat[i]) if dtypes.is_python_scalar(flat[i]) else flat[i] for i in traced_idx]
        outs, out_dims = batching.batch_eval(closed.jaxpr, closed.consts, batched_args,
                                             [dims[i] for i in traced_idx])
        out_ax = _flat_out_axes(out_axes, out_tree[0], name)
        for i, (o, d, w) in enumerate(zip(outs, out_dims, out_ax)):
            _check_out_axis(name, out_tree[0], i, w, core.get_aval(o).ndim - (d is not None), d)
        outs = [batching.match_out_dim(o, d, w, size) for o, d, w in zip(outs, out_dims, out_ax)]
        return tree_unflatten(out_tree[0], outs)

    return vmapped


def _arg_names(fun, all_args: tuple) -> list[str]:
    """Names of the leaves of ``(args, kwargs)`` for messages: the parameter's name (from
    ``fun``'s signature, else ``args[i]``) and the path inside it, as in ``params['w']``."""
    try:
        params = inspect.signature(fun).parameters.values()
        positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        positional = []
    names = []
    for path, _ in tree_flatten_with_path(all_args)[0]:
        kind, key = path[0], path[1]
        base = key if kind == 1 else positional[key] if key < len(positional) else f"args[{key}]"
        names.append(base + keystr(path[2:]))
    return names


def _flat_out_axes(out_axes, out_tree, name: str) -> list:
    if isinstance(out_axes, (int, type(None))):
        return [out_axes] * out_tree.num_leaves
    axes_leaves, axes_tree = tree_flatten(out_axes, is_leaf=lambda x: x is None)
    try:
        # Expand the prefix over the output structure.
        dummy = out_tree.unflatten([0] * out_tree.num_leaves)
        subtrees = axes_tree.flatten_up_to(dummy)
    except ValueError as e:
        raise ValueError(f"{name}: out_axes structure does not match the outputs: {e}") from None
    out = []
    for ax, sub in zip(axes_leaves, subtrees):
        out.extend([ax] * tree_structure(sub).num_leaves)
    return out


def _check_out_axis(name: str, out_tree, i: int, axis, ndim: int, batched_at) -> None:
    """out_axes[i] must be None (for an unbatched output) or an axis of the batched output."""
    def where() -> str:
        paths = [keystr(p) for p, _ in tree_flatten_with_path(out_tree.unflatten(
            range(out_tree.num_leaves)))[0]]
        return f"output{paths[i]}" if paths[i] else "the output"

    if axis is None:
        if batched_at is not None:
            raise ValueError(f"{name}: out_axes=None for {where()}, but it varies along the mapped "
                             "axis (only outputs that do not depend on mapped inputs can be "
                             "unmapped)")
    elif not isinstance(axis, (int, np.integer)) or not -(ndim + 1) <= axis <= ndim:
        raise ValueError(f"{name}: out_axes={axis!r} is out of range for {where()}, which has "
                         f"{ndim} dimension{'s' if ndim != 1 else ''} per example")


# ---------------------------------------------------------------------------------------------


def stop_gradient(x):
    """The identity, with a zero derivative (applied to every leaf of a pytree)."""
    from .primitives.elementwise import stop_gradient as sg
    return tree_map(lambda v: sg(v) if dtypes.is_differentiable(core.get_aval(v).dtype) else v, x)
