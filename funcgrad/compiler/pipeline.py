"""From a closed jaxpr to an executable: optimize, fuse (per backend), generate code.

A :class:`Backend` names an array module and, optionally, a fusion step that rewrites the
optimized jaxpr (grouping equations into kernel calls) and supplies the code templates that
emit those calls. The numpy and cupy backends have no fusion step yet; fused backends
register themselves with :func:`register_backend`.

:func:`compile_jaxpr` is the entry point for code that holds a jaxpr (the ``jit_call``
primitive, control-flow bodies): it compiles once per jaxpr object and backend.
"""
from __future__ import annotations

import importlib
import sys
import time
import weakref
from typing import Callable, NamedTuple, Sequence

from ..core import ClosedJaxpr
from . import codegen_numpy, passes


class Fused(NamedTuple):
    """What a fusion step returns: the rewritten jaxpr, the templates that emit its kernel
    equations, and the kernels (objects whose ``str()`` is their source)."""
    jaxpr: ClosedJaxpr
    templates: dict
    kernels: list


class Backend(NamedTuple):
    name: str
    array_module: str                                   # module name: "numpy", "cupy"
    fuse: Callable[[ClosedJaxpr], Fused] | None = None


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    BACKENDS[backend.name] = backend


register_backend(Backend("numpy", "numpy"))
register_backend(Backend("cupy", "cupy"))


def backend_for(args: Sequence) -> str:
    """The backend for these arguments: cupy when any is a cupy array, else numpy."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and any(isinstance(a, cupy.ndarray) for a in args):
        return "cupy"
    return "numpy"


class Lowering(NamedTuple):
    """Every stage of compiling one jaxpr."""
    jaxpr: ClosedJaxpr                   # as traced
    optimized_jaxpr: ClosedJaxpr         # after the passes (and fusion)
    kernels: list
    executable: codegen_numpy.Executable
    timings: dict[str, float]            # seconds per stage


def lower_jaxpr(closed: ClosedJaxpr, backend: str = "numpy", name: str = "jitted",
                donated: Sequence[bool] = (), returns: str = "list") -> Lowering:
    """Optimize ``closed``, fuse it for ``backend``, and generate its code."""
    be = BACKENDS.get(backend)
    if be is None:
        raise ValueError(f"unknown backend {backend!r}; known: {sorted(BACKENDS)}")
    t0 = time.perf_counter()
    optimized = passes.optimize(passes.inline_for_execution(closed))
    t1 = time.perf_counter()
    fused = be.fuse(optimized) if be.fuse is not None else Fused(optimized, {}, [])
    t2 = time.perf_counter()
    exe = codegen_numpy.generate(fused.jaxpr, importlib.import_module(be.array_module), name,
                                 donated, fused.templates, returns)
    t3 = time.perf_counter()
    return Lowering(closed, fused.jaxpr, fused.kernels, exe,
                    {"optimize": t1 - t0, "fuse": t2 - t1, "codegen": t3 - t2})


_compiled: "weakref.WeakKeyDictionary[ClosedJaxpr, dict[str, Callable]]" = weakref.WeakKeyDictionary()


def compile_jaxpr(closed: ClosedJaxpr, backend: str = "numpy") -> Callable[..., list]:
    """``fn(*flat_args) -> list of outputs`` running ``closed`` as generated code. Cached
    per jaxpr object and backend for as long as the jaxpr lives."""
    per_jaxpr = _compiled.get(closed)
    if per_jaxpr is None:
        per_jaxpr = _compiled[closed] = {}
    fn = per_jaxpr.get(backend)
    if fn is None:
        fn = per_jaxpr[backend] = lower_jaxpr(closed, backend).executable.fn
    return fn
