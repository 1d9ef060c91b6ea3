"""The benchmark workloads, in the order of issue 9. Each module holds one workload and, in
it, one implementation per library; peer libraries are imported only inside the builders,
so a worker process imports nothing but its own library."""
from __future__ import annotations

from ..harness import Workload
from . import (cnn, compile_time, dispatch, eager_ops, elementwise, lstm, memory, mlp,
               per_example)

WORKLOADS: tuple[Workload, ...] = (
    eager_ops.WORKLOAD, dispatch.WORKLOAD, elementwise.WORKLOAD, mlp.WORKLOAD,
    mlp.GRAD_WORKLOAD, per_example.WORKLOAD, cnn.WORKLOAD, lstm.WORKLOAD, compile_time.WORKLOAD, memory.WORKLOAD)


def workload_named(name: str) -> Workload:
    for workload in WORKLOADS:
        if workload.name == name:
            return workload
    raise KeyError(f"no workload named {name!r}; known: {', '.join(w.name for w in WORKLOADS)}")
