"""Numerical checks of derivatives, for tests (and for users' own rules).

``check_grads(f, args, order)`` compares forward mode against central differences and reverse
mode against forward mode (``<u, J v> == <J^T u, v>`` for random u, v), then recurses on the
derivative functions up to ``order``. Pytrees of arrays are accepted everywhere.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from . import api, dtypes
from .tree_util import tree_flatten, tree_map

_DEFAULT_TOL = {np.dtype(np.float16): 1e-1, np.dtype(np.float32): 2e-2, np.dtype(np.float64): 1e-5,
                np.dtype(np.complex64): 2e-2, np.dtype(np.complex128): 1e-5}
_DEFAULT_EPS = {np.dtype(np.float16): 1e-1, np.dtype(np.float32): 1e-2, np.dtype(np.float64): 1e-4}


def default_tolerance(dtype) -> float:
    return _DEFAULT_TOL.get(np.dtype(dtype), 1e-5)


def _leaves(tree):
    return tree_flatten(tree)[0]


def _float_dtype(tree) -> np.dtype:
    ds = [np.asarray(x).dtype for x in _leaves(tree) if dtypes.is_inexact(np.asarray(x).dtype)]
    return max(ds, key=lambda d: d.itemsize) if ds else np.dtype(np.float64)


def _vdot(a, b) -> float:
    return float(sum(np.vdot(np.asarray(x, np.float64), np.asarray(y, np.float64))
                     for x, y in zip(_leaves(a), _leaves(b))))


def _axpy(a: float, x, y):
    return tree_map(lambda u, v: (np.asarray(v) + a * np.asarray(u)).astype(np.asarray(v).dtype), x, y)


def _rand_like(rng: np.random.Generator, tree):
    def one(x):
        x = np.asarray(x)
        if not dtypes.is_differentiable(x.dtype):
            return np.zeros(x.shape, dtypes.float0)
        return rng.standard_normal(x.shape).astype(x.dtype)
    return tree_map(one, tree)


def _scrub_float0(tree):
    """Zero tangents of integer inputs: numerics skip them."""
    return tree_map(lambda x: np.zeros(np.shape(x), np.float64) if np.asarray(x).dtype == dtypes.float0
                    else x, tree)


def assert_allclose(actual, expected, atol: float, rtol: float, err_msg: str = ""):
    a_leaves, e_leaves = _leaves(actual), _leaves(expected)
    if len(a_leaves) != len(e_leaves):
        raise AssertionError(f"{err_msg}: structures differ ({len(a_leaves)} vs {len(e_leaves)} leaves)")
    for a, e in zip(a_leaves, e_leaves):
        a = np.asarray(a)
        e = np.asarray(e)
        if a.dtype == dtypes.float0 or e.dtype == dtypes.float0:
            continue
        np.testing.assert_allclose(a.astype(np.float64) if a.dtype.kind != "c" else a,
                                   e.astype(np.float64) if e.dtype.kind != "c" else e,
                                   atol=atol, rtol=rtol, err_msg=err_msg)


def numerical_jvp(f: Callable, primals: Sequence, tangents: Sequence, eps: float):
    """Central difference ``(f(x + eps t) - f(x - eps t)) / (2 eps)``."""
    plus = f(*_axpy(eps, _scrub_float0(tangents), primals))
    minus = f(*_axpy(-eps, _scrub_float0(tangents), primals))

    def diff(p, m):
        p, m = np.asarray(p), np.asarray(m)
        if not dtypes.is_inexact(p.dtype):          # integer outputs: no derivative
            return np.zeros(p.shape, np.float64)
        return (p.astype(np.float64) - m.astype(np.float64)) / (2 * eps)

    return tree_map(diff, plus, minus)


def check_jvp(f: Callable, args: Sequence, atol=None, rtol=None, eps=None, rng=None) -> None:
    rng = rng or np.random.default_rng(0)
    dt = _float_dtype(args)
    atol = default_tolerance(dt) if atol is None else atol
    rtol = default_tolerance(dt) if rtol is None else rtol
    eps = _DEFAULT_EPS.get(dt, 1e-4) if eps is None else eps
    tangents = _rand_like(rng, list(args))
    out, tout = api.jvp(f, list(args), tangents)
    expected = numerical_jvp(f, list(args), tangents, eps)
    assert_allclose(tout, expected, atol, rtol, "JVP does not match central differences")


def check_vjp(f: Callable, args: Sequence, atol=None, rtol=None, eps=None, rng=None,
              against_jvp: bool = True) -> None:
    """Reverse mode against central differences and (``against_jvp``) forward mode:
    ``<u, J v> == <J^T u, v>``."""
    rng = rng or np.random.default_rng(1)
    dt = _float_dtype(args)
    atol = default_tolerance(dt) if atol is None else atol
    rtol = default_tolerance(dt) if rtol is None else rtol
    out, pullback = api.vjp(f, *args)
    v = _rand_like(rng, list(args))
    u = _rand_like(rng, out)
    ct = pullback(u)
    rhs = _vdot(_scrub_float0(list(ct)), _scrub_float0(v))
    scale = max(1.0, abs(rhs))
    if against_jvp:
        _, tout = api.jvp(f, list(args), v)
        lhs = _vdot(_scrub_float0(u), _scrub_float0(tout))
        scale = max(scale, abs(lhs))
        if not abs(lhs - rhs) <= atol * scale + rtol * scale:
            raise AssertionError(f"VJP does not match JVP: <u, Jv> = {lhs!r} but <J^T u, v> = {rhs!r}")
    # And directly against numerics, so a wrong forward rule cannot hide a wrong reverse rule.
    eps = _DEFAULT_EPS.get(dt, 1e-4) if eps is None else eps
    num = numerical_jvp(f, list(args), v, eps)
    num_lhs = _vdot(_scrub_float0(u), num)
    if not abs(num_lhs - rhs) <= atol * scale * 10 + rtol * scale * 10:
        raise AssertionError(f"VJP does not match central differences: {num_lhs!r} vs {rhs!r}")


def check_grads(f: Callable, args: Sequence, order: int = 2, modes: Sequence[str] = ("fwd", "rev"),
                atol=None, rtol=None, eps=None) -> None:
    """Check derivatives of ``f`` at ``args`` up to ``order`` in the given modes.

    Float64 inputs give tight checks; tolerances default per dtype. Raises AssertionError
    with the failing mode and order."""
    args = tuple(args)
    rng = np.random.default_rng(0)

    def check(fun, primals, k):
        if "fwd" in modes:
            check_jvp(fun, primals, atol, rtol, eps, rng)
        if "rev" in modes:
            check_vjp(fun, primals, atol, rtol, eps, rng, against_jvp="fwd" in modes)
        if k <= 1:
            return
        if "fwd" in modes:
            tangents = _rand_like(rng, list(primals))
            check(lambda *p: api.jvp(fun, list(p), tangents)[1], primals, k - 1)
        if "rev" in modes:
            out = fun(*primals)
            u = _rand_like(rng, out)
            check(lambda *p: api.vjp(fun, *p)[1](u), primals, k - 1)

    check(f, args, order)
