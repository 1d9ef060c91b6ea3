"""One harness for every primitive: values, derivatives, batching, IR well-formedness.

A test describes a primitive application by

* ``fun(*arrays)``: applies the primitive (its params baked in) to array operands;
* ``operands``: one :class:`Operand` per array argument -- its shape, dtype and a *domain*,
  a function ``(shape, dtype) -> hypothesis strategy of arrays`` (see :func:`reals`);
* ``ref(*arrays)``: the NumPy reference.

and calls :func:`check_primitive` with a hypothesis ``data`` object. The harness draws
operand values from the domains and checks

1. values: ``fun`` eagerly vs ``ref``; the traced jaxpr's output types vs the eager result
   (abstract_eval agrees with impl); ``eval_jaxpr`` of the trace vs eager; ``check_jaxpr``;
2. derivatives: tangent and cotangent types at the drawn dtypes; on float64 operands
   (re-drawn in float64) ``check_grads`` to ``order`` in forward and reverse mode, and
   ``check_jaxpr`` on the JVP, linearized (known and linear) and transposed jaxprs;
3. batching: ``vmap`` over hypothesis-drawn ``in_axes`` (any axis, negative ones, ``None``
   mixed with batched operands) and batch sizes (0 included) vs a Python loop of eager
   calls; ``check_jaxpr`` on the batched jaxpr, whose size must not grow with the batch;
4. jit vs eager, once ``funcgrad.jit`` exists.

Domains should keep values where the primitive is differentiable (see the helpers below).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
from hypothesis import settings, strategies as st
from hypothesis.extra import numpy as hnp

import funcgrad
from funcgrad import core, dtypes, make_jaxpr, test_util, vmap
from funcgrad.interpreters import ad
from funcgrad.tree_util import tree_leaves, tree_map

Domain = Callable[[tuple, np.dtype], st.SearchStrategy]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
NUMERIC_DTYPES = FLOAT_DTYPES + (np.dtype(np.int32),)
ALL_DTYPES = NUMERIC_DTYPES + (np.dtype(np.bool_),)


def examples(fraction: float) -> settings:
    """Settings for ``fraction`` of the active profile's examples: each example of the full
    harness runs many checks, so tests use fewer than the profile's default."""
    return settings(max_examples=max(1, round(settings.default.max_examples * fraction)))


# ---------------------------------------------------------------------------------------------
# Domains: (shape, dtype) -> strategy of arrays


def reals(lo: float = -3.0, hi: float = 3.0, unique: bool = False) -> Domain:
    """Values in ``[lo, hi]`` (integers in the range for integer dtypes, any bool for bool).
    ``unique``: pairwise distinct entries (no ties): floats on a grid of step 1/8, integers
    in ``[8 lo, 8 hi]``."""

    def domain(shape, dtype):
        dtype = np.dtype(dtype)
        if dtype.kind == "b":
            return hnp.arrays(dtype, shape, elements=st.booleans())
        if dtype.kind in "iu" or unique:
            scale = 8 if unique else 1
            lo_i, hi_i = int(np.ceil(lo * scale)), int(np.floor(hi * scale))
            if dtype.kind == "u":
                lo_i, hi_i = max(lo_i, 0), max(hi_i, 0)
            ints = st.integers(lo_i, hi_i)
            if dtype.kind == "f":
                ints = ints.map(lambda k: k / scale)
            return hnp.arrays(dtype, shape, elements=ints, unique=unique)
        return hnp.arrays(dtype, shape, elements=_floats(lo, hi, dtype))

    return domain


def _floats(lo: float, hi: float, dtype: np.dtype) -> st.SearchStrategy:
    """Floats of ``dtype`` in ``[lo, hi]`` (bounds rounded inwards to the dtype)."""
    t = dtype.type
    lo_t, hi_t = t(lo), t(hi)
    lo_t = lo_t if lo_t >= lo else np.nextafter(lo_t, t(np.inf))
    hi_t = hi_t if hi_t <= hi else np.nextafter(hi_t, t(-np.inf))
    return st.floats(float(lo_t), float(hi_t), width=8 * dtype.itemsize)


def positive(lo: float = 0.1, hi: float = 5.0) -> Domain:
    return reals(lo, hi)


def off_grid(lo: int = -4, hi: int = 4, grid: float = 1.0, margin: float = 0.1) -> Domain:
    """Floats at least ``margin * grid`` away from multiples of ``grid`` (kinks of floor,
    round, sign, ...); integer dtypes draw integers."""

    def domain(shape, dtype):
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            return reals(lo, hi)(shape, dtype)
        frac = _floats(margin, 1 - margin, dtype)
        elem = st.tuples(st.integers(lo, hi - 1), frac).map(lambda kf: (kf[0] + kf[1]) * grid)
        return hnp.arrays(dtype, shape, elements=elem)

    return domain


def interleaved(offset: float, lo: int = -3, hi: int = 3) -> Domain:
    """Values ``k + offset`` for integers k. Two operands with offsets 0.25 and 0.75 never
    tie and stay 0.5 apart (kinks of max/min/clamp stay away from the checked points)."""

    def domain(shape, dtype):
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            return reals(lo, hi)(shape, dtype)
        return hnp.arrays(dtype, shape, elements=st.integers(lo, hi).map(lambda k: k + offset))

    return domain


@dataclasses.dataclass(frozen=True)
class Operand:
    """One array argument of a primitive application."""
    shape: tuple
    dtype: np.dtype
    domain: Domain = reals()
    differentiable: bool = True     # differentiate w.r.t. it when its dtype is floating

    def draw(self, data, dtype=None, shape=None) -> np.ndarray:
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        return data.draw(self.domain(self.shape if shape is None else shape, dtype))

    @property
    def is_diff(self) -> bool:
        return self.differentiable and dtypes.is_differentiable(np.dtype(self.dtype))


# ---------------------------------------------------------------------------------------------
# Shape strategies


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 0, max_side: int = 4):
    """Array shapes including 0-d and (with min_side=0) size-0 ones."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num: int, max_dims: int = 3, min_side: int = 0, max_side: int = 4):
    """``num`` shapes that broadcast together (ranks and 1-sized axes differ)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num, min_dims=0, max_dims=max_dims,
                                             min_side=min_side, max_side=max_side).map(
        lambda bs: bs.input_shapes)


# ---------------------------------------------------------------------------------------------
# Comparisons


def _tolerance(dtype) -> float:
    dtype = np.dtype(dtype)
    return {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 2e-6}.get(dtype, 1e-12)


def assert_same(actual, expected, rtol=None, atol=None, what: str = ""):
    """Equal shape and dtype, and values equal (integers, bools) or close (floats; NaNs in the
    same places). Lists/tuples are compared element by element."""
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{what}: {len(actual)} results, expected {len(expected)}"
        for a, e in zip(actual, expected):
            assert_same(a, e, rtol, atol, what)
        return
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype}, expected {expected.dtype}"
    if expected.dtype.kind in "fc":
        tol = _tolerance(expected.dtype)
        np.testing.assert_allclose(actual, expected, rtol=tol if rtol is None else rtol,
                                   atol=tol if atol is None else atol, err_msg=what)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def count_eqns(jaxpr) -> int:
    """Equations of a jaxpr, including those of its sub-jaxprs."""
    jaxpr = jaxpr.jaxpr if isinstance(jaxpr, core.ClosedJaxpr) else jaxpr
    return sum(1 + sum(count_eqns(sub) for sub in core.jaxprs_in_params(e.params))
               for e in jaxpr.eqns)


def primitives_in(jaxpr) -> set[str]:
    """Names of the primitives a jaxpr (and its sub-jaxprs) applies."""
    jaxpr = jaxpr.jaxpr if isinstance(jaxpr, core.ClosedJaxpr) else jaxpr
    names = set()
    for e in jaxpr.eqns:
        names.add(e.primitive.name)
        for sub in core.jaxprs_in_params(e.params):
            names |= primitives_in(sub)
    return names


def _eager(fun, args):
    with np.errstate(all="ignore"):
        return fun(*args)


# ---------------------------------------------------------------------------------------------
# The checks


def check_values(fun: Callable, args: Sequence, ref: Callable | None = None,
                 rtol=None, atol=None, prim: str | None = None) -> None:
    """Eager vs reference; traced types vs eager; eval of the trace vs eager; check_jaxpr;
    the trace applies primitive ``prim`` (when given)."""
    out = _eager(fun, args)
    if ref is not None:
        assert_same(out, _eager(ref, args), rtol, atol, "eager result vs numpy reference")
    closed = make_jaxpr(fun)(*args)
    core.check_jaxpr(closed)
    if prim is not None:
        assert prim in primitives_in(closed), f"{prim} is not applied by:\n{closed}"
    outs = out if isinstance(out, (list, tuple)) else [out]
    assert len(closed.out_avals) == len(outs)
    for aval, o in zip(closed.out_avals, outs):
        o = np.asarray(o)
        assert (aval.shape, aval.dtype) == (o.shape, o.dtype), (
            f"abstract_eval gives {aval} but the impl returns {o.dtype}{list(o.shape)}")
    with np.errstate(all="ignore"):
        evaluated = core.eval_jaxpr(closed.jaxpr, closed.consts, *args)
    assert_same(evaluated if isinstance(out, (list, tuple)) else evaluated[0], out, rtol, atol,
                "eval_jaxpr of the traced jaxpr vs eager")


def _of_differentiable(fun: Callable, args: Sequence, operands: Sequence[Operand]):
    """``fun`` as a function of its differentiable operands (the others fixed to ``args``),
    and the values of those operands."""
    diff = [i for i, op in enumerate(operands) if op.is_diff]

    def f(*diff_args):
        full = list(args)
        for i, a in zip(diff, diff_args):
            full[i] = a
        return fun(*full)

    return f, [args[i] for i in diff]


def check_derivatives(fun: Callable, args: Sequence, operands: Sequence[Operand], order: int = 2,
                      modes: Sequence[str] = ("fwd", "rev"), atol=None, rtol=None, eps=None) -> None:
    """check_grads with respect to the differentiable operands, and check_jaxpr on the JVP,
    linearized and transposed jaxprs."""
    f, diff_args = _of_differentiable(fun, args, operands)
    if diff_args:
        test_util.check_grads(f, diff_args, order=order, modes=modes, atol=atol, rtol=rtol, eps=eps)
        check_ad_jaxprs(f, diff_args)


def _ones_tangent(x):
    x = np.asarray(x)
    return np.ones_like(x) if dtypes.is_differentiable(x.dtype) else np.zeros(x.shape, dtypes.float0)


def _type_of(x):
    return np.asarray(x).dtype, np.shape(x)


def check_derivative_types(fun: Callable, args: Sequence, operands: Sequence[Operand]) -> None:
    """At the operands' own dtypes (float32 too): JVP tangents have the outputs' types and
    VJP cotangents the inputs' types (no silent promotion in the rules)."""
    f, primals = _of_differentiable(fun, args, operands)
    if not primals:
        return
    with np.errstate(all="ignore"):
        out, tangent = funcgrad.jvp(f, primals, [_ones_tangent(p) for p in primals])
        _, pullback = funcgrad.vjp(f, *primals)
        cts = pullback(tree_map(_ones_tangent, out))
    for o, t in zip(tree_leaves(out), tree_leaves(tangent)):
        want = (dtypes.tangent_dtype(np.asarray(o).dtype), np.shape(o))
        assert _type_of(t) == want, f"JVP tangent of type {_type_of(t)} for an output {_type_of(o)}"
    for p, ct in zip(primals, cts):
        assert _type_of(ct) == _type_of(p), (
            f"VJP cotangent of type {_type_of(ct)} for an input {_type_of(p)}")


def check_ad_jaxprs(f: Callable, args: Sequence) -> None:
    """check_jaxpr on the traced, JVP, known/linear (linearized) and transposed jaxprs."""
    closed = make_jaxpr(f)(*args)
    core.check_jaxpr(closed)
    mask = [dtypes.is_differentiable(a.dtype) for a in closed.in_avals]
    jvp_closed, _ = ad.jvp_jaxpr(closed, mask)
    core.check_jaxpr(jvp_closed)
    known, linear, _, num_res = ad.linearize_jaxpr(closed, mask)
    core.check_jaxpr(known)
    core.check_jaxpr(linear)
    transposed = ad.transpose_jaxpr(linear, [], [False] * num_res + [True] * sum(mask))
    core.check_jaxpr(transposed)


def check_batching(data, fun: Callable, operands: Sequence[Operand], args: Sequence,
                   rtol=None, atol=None) -> None:
    """vmap over drawn in_axes vs a loop; batched jaxpr well-typed and batch-size free."""
    if not operands:
        return
    axes = [data.draw(st.one_of(st.none(), st.integers(-len(op.shape) - 1, len(op.shape))),
                      label=f"in_axes[{i}]") for i, op in enumerate(operands)]
    if all(a is None for a in axes):
        axes[data.draw(st.integers(0, len(operands) - 1), label="forced batched operand")] = 0
    size = data.draw(st.integers(0, 3), label="batch size")

    def batched(op, arg, ax, n, draw):
        if ax is None:
            return arg
        stacked = op.draw(data, shape=(n,) + tuple(op.shape)) if draw else \
            np.zeros((n,) + tuple(op.shape), op.dtype)
        return np.moveaxis(stacked, 0, ax)

    bargs = [batched(op, a, ax, size, True) for op, a, ax in zip(operands, args, axes)]
    vfun = vmap(fun, in_axes=tuple(axes))
    with np.errstate(all="ignore"):
        out = vfun(*bargs)
    if size:
        rows = [_eager(fun, [a if ax is None else np.take(a, k, axis=ax) for a, ax in zip(bargs, axes)])
                for k in range(size)]
        expected = ([np.stack([r[j] for r in rows]) for j in range(len(rows[0]))]
                    if isinstance(rows[0], (list, tuple)) else np.stack(rows))
    else:   # an empty batch: the per-example result types, with a leading 0
        empty = [np.zeros((0,) + a.shape, a.dtype) for a in make_jaxpr(fun)(*args).out_avals]
        expected = empty if isinstance(out, (list, tuple)) else empty[0]
    assert_same(out, expected, rtol, atol, f"vmap(in_axes={tuple(axes)}) vs a loop")

    closed = make_jaxpr(vfun)(*bargs)
    core.check_jaxpr(closed)
    bigger = make_jaxpr(vfun)(*[batched(op, a, ax, size + 5, False)
                                for op, a, ax in zip(operands, args, axes)])
    assert count_eqns(bigger) == count_eqns(closed), (
        f"the batched jaxpr grows with the batch size:\n{closed}\nvs\n{bigger}")


def check_jit(fun: Callable, args: Sequence, rtol=None, atol=None) -> None:
    """jit vs eager; a no-op until ``funcgrad.jit`` exists."""
    jit = getattr(funcgrad, "jit", None)
    if jit is None:
        return
    with np.errstate(all="ignore"):
        assert_same(jit(fun)(*args), fun(*args), rtol, atol, "jit vs eager")


def check_primitive(data, fun: Callable, operands: Sequence[Operand], ref: Callable | None = None,
                    *, prim: str | None = None, order: int = 2,
                    modes: Sequence[str] = ("fwd", "rev"), rtol=None, atol=None,
                    grad_tol: float | None = None, batching: bool = True) -> list:
    """Run every check above on one drawn example; returns the drawn operand values.

    ``prim`` names the primitive ``fun`` must apply. ``order=0`` skips derivative checks
    (non-differentiable primitives); ``grad_tol`` overrides check_grads' tolerances.
    Derivative values are checked on a float64 redraw of all floating operands, derivative
    types at the drawn dtypes. ``batching=False`` skips the vmap checks."""
    operands = [dataclasses.replace(op, dtype=np.dtype(op.dtype)) for op in operands]
    args = [op.draw(data) for op in operands]
    check_values(fun, args, ref, rtol, atol, prim)
    if order and any(op.is_diff for op in operands):
        check_derivative_types(fun, args, operands)
        args64 = [op.draw(data, dtype=np.float64) if op.dtype.kind == "f" else a
                  for op, a in zip(operands, args)]
        check_derivatives(fun, args64, operands, order, modes, atol=grad_tol, rtol=grad_tol)
    if batching:
        check_batching(data, fun, operands, args, rtol, atol)
    check_jit(fun, args, rtol, atol)
    return args
