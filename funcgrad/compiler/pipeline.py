"""From a closed jaxpr to an executable: optimize, fuse (per backend), generate code.

A :class:`Backend` names an array module and, optionally, a fusion step that rewrites the
optimized jaxpr (grouping equations into kernel calls) and supplies the code templates that
emit those calls. Registered backends: ``numpy`` (generated numpy code), ``c`` (numpy code
calling fused C++ kernels), ``cupy`` (cupy code calling fused CUDA kernels) and
``cupy_unfused`` (generated cupy code). :func:`backend_for` picks one for a call's
arguments and ``funcgrad.config.backend``.

:func:`compile_jaxpr` is the entry point for code that holds a jaxpr (the ``jit_call``
primitive, control-flow bodies): it compiles once per jaxpr object and backend.
"""
from __future__ import annotations

import importlib
import sys
import time
import weakref
from typing import Callable, NamedTuple, Sequence

import numpy as np

from ..config import config
from ..core import ClosedJaxpr
from . import codegen_c, codegen_cupy, codegen_numpy, passes


class Fused(NamedTuple):
    """What a fusion step returns: the rewritten jaxpr, the templates that emit its kernel
    equations, and the kernels (objects whose ``str()`` is their source)."""
    jaxpr: ClosedJaxpr
    templates: dict
    kernels: list


class Backend(NamedTuple):
    name: str
    array_module: str                                   # module name: "numpy", "cupy"
    fuse: Callable[[ClosedJaxpr, str], Fused] | None = None   # (optimized jaxpr, name)


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    BACKENDS[backend.name] = backend


register_backend(Backend("numpy", "numpy"))
register_backend(Backend("c", "numpy", codegen_c.fuse))
register_backend(Backend("cupy", "cupy", codegen_cupy.fuse))
register_backend(Backend("cupy_unfused", "cupy"))


class MixedDevicesError(TypeError):
    """Arguments of one call live on different devices (``cpu``/``gpu``: flat positions)."""

    def __init__(self, cpu: list[int], gpu: list[int]):
        self.cpu, self.gpu = cpu, gpu
        super().__init__(describe_mixed(cpu, gpu, lambda i: f"argument {i}"))


def describe_mixed(cpu: list[int], gpu: list[int], name: Callable[[int], str]) -> str:
    return (f"arguments on the GPU ({', '.join(map(name, gpu))}) and on the CPU "
            f"({', '.join(map(name, cpu))}) cannot be mixed in one call; move them with "
            "funcgrad.device_put(x, 'gpu') or funcgrad.device_put(x, 'cpu')")


def backend_for(args: Sequence) -> str:
    """The backend for a call with these (flat) arguments under ``funcgrad.config.backend``:
    cupy kernels for GPU (cupy) arrays, C++ kernels for CPU arrays, or no kernels for
    "numpy". Raises :class:`MixedDevicesError` for GPU and CPU arrays together."""
    mode = config.backend
    cupy = sys.modules.get("cupy")
    if cupy is not None and any(isinstance(a, cupy.ndarray) for a in args):
        cpu = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
        if cpu:
            raise MixedDevicesError(cpu, [i for i, a in enumerate(args) if isinstance(a, cupy.ndarray)])
        return "cupy_unfused" if mode == "numpy" else "cupy"
    if mode == "cupy":
        raise TypeError("funcgrad.config.backend is 'cupy', which runs on GPU arrays; these "
                        "arguments are on the CPU (move them with funcgrad.device_put(x, 'gpu'))")
    return "numpy" if mode == "numpy" else "c"


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
    fused = be.fuse(optimized, name) if be.fuse is not None else Fused(optimized, {}, [])
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
