"""Workload 8: first-call time of the jitted training steps of workloads 4 (MLP) and 6 (CNN),
in a fresh process each time: tracing, IR passes, code generation or XLA compilation, and the
first run. (funcgrad's on-disk kernel cache, once it exists, is warm after the first run.)"""
from __future__ import annotations

from dataclasses import replace

from ..harness import Workload
from . import cnn, mlp

JIT_VARIANTS = ("funcgrad.jit", "jax.jit")

WORKLOAD = Workload(
    "compile_time", "first call (trace + compile + run) of the jitted MLP and CNN steps",
    (replace(mlp.STEP, measured=JIT_VARIANTS), replace(cnn.STEP, measured=JIT_VARIANTS)),
    kind="first_call")
