"""The compiler behind ``funcgrad.jit``: IR passes, code generation, the compiled-call primitive.

:mod:`.jit` traces a function per signature and hands the jaxpr to
:func:`~.pipeline.lower_jaxpr`: :mod:`.passes` optimize it, a backend may fuse it, and
:mod:`.codegen_numpy` generates straight-line Python over numpy or cupy.
:func:`compile_jaxpr` compiles any closed jaxpr (control-flow bodies use it).

Fusion (:mod:`.fusion`) groups elementwise equations into kernels; :mod:`.codegen_c` makes
them C++ loops for CPU arrays (compiled once, cached on disk by :mod:`.cache`), and
:mod:`.codegen_cupy` CUDA kernels for cupy arrays, from the same kernel bodies.
``funcgrad.config.backend`` / ``$FUNCGRAD_BACKEND`` chooses (see :mod:`funcgrad.config`).
"""
from . import jit  # noqa: F401  (the module; the function is funcgrad.jit)
from .call import jit_call_p
from .pipeline import Backend, Fused, compile_jaxpr, lower_jaxpr, register_backend

__all__ = ["compile_jaxpr", "lower_jaxpr", "Backend", "Fused", "register_backend", "jit_call_p"]
