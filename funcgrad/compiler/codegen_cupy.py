"""CUDA kernels for cupy arrays, from the same kernel bodies as the C++ backend.

One translation unit per jitted function, loaded as a ``cupy.RawModule``. Each kernel's body
(:func:`.codegen_c.body`) is wrapped in *device functions* that do one thread's work:

* ``kN_element(i, ...)``: the element at linear index ``i`` of an elementwise kernel;
* ``kN_part(t, ...)``: for a kernel with reductions, thread ``t`` handles row ``t / P`` and
  the elements ``t % P, t % P + P, ...`` of it (coalesced reads), storing the element outputs
  and one partial result per reduction; ``kN_finish(row, ...)`` combines a row's ``P``
  partials in order (no atomics: results are deterministic).

Operands are read through the strides in the metadata block shared with the C++ backend
(:func:`.codegen_c.metadata`): a contiguous operand at ``i``, a scalar at 0, any other by
decomposing ``i`` into indices. The ``__global__`` kernels only turn block and thread indices
into ``i``/``t``/``row`` (a grid-stride loop). Compiled by a host C++ compiler instead (no
``__CUDACC__``), the same source defines the same entry points as plain functions that run
every thread in turn: the tests run the GPU code path on the CPU that way, and compile-check
the CUDA side with NVRTC or nvcc.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..core import ClosedJaxpr
from ..primitives import elementwise as ew
from . import codegen_c as cc, fusion

THREADS = 256
"""Threads per block."""
MAX_BLOCKS = 8192
"""Blocks per launch (a grid-stride loop covers the rest)."""
ELEMENTS_PER_PARTIAL = 512
"""A reduction row gets one thread per this many elements (at most MAX_PARTIALS)."""
MAX_PARTIALS = 1024

HEADER = r"""#if defined(__CUDACC_RTC__)
typedef signed char int8_t; typedef unsigned char uint8_t;
typedef short int16_t; typedef unsigned short uint16_t;
typedef int int32_t; typedef unsigned int uint32_t;
typedef long long int64_t; typedef unsigned long long uint64_t;
#elif defined(__CUDACC__)
#include <stdint.h>
#else
#include <math.h>
#include <stdint.h>
#include <string.h>
#endif
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FG_INLINE __device__ __forceinline__
#define FG_ENTRY extern "C" __global__
#define FG_FOR(i, n) for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                          i += (int64_t)blockDim.x * gridDim.x)
#else
#define FG_INLINE static inline
#define FG_ENTRY extern "C" __attribute__((visibility("default")))
#define FG_FOR(i, n) for (int64_t i = 0; i < (n); ++i)
#endif
"""


def _partials(rows: int, row_size: int) -> int:
    """Threads per reduction row."""
    return max(1, min(MAX_PARTIALS, -(-row_size // ELEMENTS_PER_PARTIAL))) if rows * row_size else 1


def _params(kernel: fusion.Kernel) -> tuple[list[str], list[str]]:
    """Typed pointer parameters (inputs, outputs) and their names."""
    ins = [f"const {cc.c_type(a.dtype)}* in{i}" for i, a in enumerate(kernel.in_avals)]
    outs = [f"{cc.c_type(a.dtype)}* out{k}" for k, a in enumerate(kernel.out_avals)]
    decl = ins + outs + ["const int64_t* m"]
    names = [f"in{i}" for i in range(len(ins))] + [f"out{k}" for k in range(len(outs))] + ["m"]
    return decl, names


def _reads(kernel: fusion.Kernel, lay: cc.Layout, index: str) -> list[str]:
    """Statements computing each operand's offset for linear index ``index``, then the
    operand values ``x0, x1, ...``."""
    ops = cc.operands(kernel)
    nd = lay.ndim
    walking = [k for k in range(len(ops)) if lay.inner_class(k) != "s"]
    contiguous = fusion.contiguous_strides(lay.sizes)
    general = [k for k in walking if lay.strides[k] != contiguous]
    lines = []
    if general:
        lines.append(f"int64_t rest = {index};")
        lines += [f"int64_t o{k} = 0;" for k in general]
        lines.append(f"for (int d = {nd - 1}; d >= 0; --d) {{")
        lines.append(f"  const int64_t n = m[{cc.META_SIZES} + d], q = rest / n, id = rest - q * n;")
        lines.append("  rest = q;")
        lines += [f"  o{k} += id * m[{cc.META_SIZES + nd + walking.index(k) * nd} + d];" for k in general]
        lines.append("}")
    for k, op in enumerate(ops):
        at = "0" if k not in walking else f"o{k}" if k in general else index
        lines.append(f"const {op.ctype} {op.name} = in{op.input}[{at}];")
    return lines


def _call(kernel: fusion.Kernel) -> tuple[list[str], list[str]]:
    """Declarations of the body's outputs, and the body call."""
    outs = list(zip(kernel.out_avals, kernel.reduce_kinds))
    decl = [f"{cc.c_type(a.dtype)} {'r' if kind else 'y'}{k};" for k, (a, kind) in enumerate(outs)]
    args = [op.name for op in cc.operands(kernel)]
    args += [f"{'r' if kind else 'y'}{k}" for k, (a, kind) in enumerate(outs)]
    return decl, [f"{kernel.name}_body({', '.join(args)});"]


def device_functions(kernel: fusion.Kernel) -> str:
    lay = cc.layout(kernel)
    decl, _ = _params(kernel)
    name = kernel.name
    outs = list(zip(kernel.out_avals, kernel.reduce_kinds))
    declare, call = _call(kernel)
    if kernel.elementwise_only:
        lines = _reads(kernel, lay, "i") + declare + call
        lines += [f"out{k}[i] = y{k};" for k, _ in enumerate(outs)]
        return (f"FG_INLINE void {name}_element(int64_t i, {', '.join(decl)}) {{\n"
                + "".join(f"  {s}\n" for s in lines) + "}\n")
    reds = [(k, a, kind) for k, (a, kind) in enumerate(outs) if kind]
    accs = {k: cc.accumulator(kind, a.dtype) for k, a, kind in reds}
    parts = [f"{cc.c_type(accs[k].total)}* part{k}" for k, _, _ in reds]
    lines = [f"const int64_t K = m[{cc.META_ROW_SIZE}], row = t / P;"]
    lines += [f"{cc.c_type(accs[k].total)} acc{k} = {accs[k].identity};" for k, _, _ in reds]
    loop = ["const int64_t i = row * K + j;"] + _reads(kernel, lay, "i") + declare + call
    loop += [f"out{k}[i] = y{k};" for k, (a, kind) in enumerate(outs) if not kind]
    loop += [f"acc{k} = {accs[k].combine.format(a=f'acc{k}', b=f'({cc.c_type(accs[k].total)})r{k}')};"
             for k, _, _ in reds]
    lines += ["for (int64_t j = t % P; j < K; j += P) {"] + [f"  {s}" for s in loop] + ["}"]
    lines += [f"part{k}[t] = acc{k};" for k, _, _ in reds]
    part = (f"FG_INLINE void {name}_part(int64_t t, int64_t P, {', '.join(decl + parts)}) {{\n"
            + "".join(f"  {s}\n" for s in lines) + "}\n")
    fin = [f"{cc.c_type(accs[k].total)} acc{k} = {accs[k].identity};" for k, _, _ in reds]
    fin += ["for (int64_t t = row * P; t < row * P + P; ++t) {"]
    fin += [f"  acc{k} = {accs[k].combine.format(a=f'acc{k}', b=f'part{k}[t]')};" for k, _, _ in reds]
    fin += ["}"] + [f"out{k}[row] = ({cc.c_type(a.dtype)})acc{k};" for k, a, _ in reds]
    finish = (f"FG_INLINE void {name}_finish(int64_t row, int64_t P, {', '.join(decl + parts)}) {{\n"
              + "".join(f"  {s}\n" for s in fin) + "}\n")
    return part + finish


def entry_points(kernel: fusion.Kernel) -> str:
    """The ``__global__`` kernels. Built for the host, the same entry points run every
    thread in turn (grid and block sizes are then ignored)."""
    decl, names = _params(kernel)
    name = kernel.name
    if kernel.elementwise_only:
        kernels = [(name, ", ".join(decl), "i", f"m[{cc.META_N}]",
                    f"{name}_element(i, {', '.join(names)});")]
    else:
        reds = [(k, a, kind) for k, (a, kind) in enumerate(zip(kernel.out_avals, kernel.reduce_kinds)) if kind]
        parts = [f"{cc.c_type(cc.accumulator(kind, a.dtype).total)}* part{k}" for k, a, kind in reds]
        args = ", ".join(names + [f"part{k}" for k, _, _ in reds])
        full = ", ".join(decl + parts + ["int64_t P"])
        rows = f"m[{cc.META_ROWS}]"
        kernels = [(f"{name}_part_kernel", full, "t", f"{rows} * P", f"{name}_part(t, P, {args});"),
                   (f"{name}_finish_kernel", full, "r", rows, f"{name}_finish(r, P, {args});")]
    out = []
    for entry, params, v, n, call in kernels:
        out.append(f"FG_ENTRY void {entry}({params}) {{\n  FG_FOR({v}, {n}) {call}\n}}\n")
    return "".join(out)


def translation_unit(kernels: list[fusion.Kernel], name: str) -> cc.Unit:
    parts = [cc.body(k) + device_functions(k) + entry_points(k) for k in kernels]
    header = "\n".join(["// funcgrad CUDA kernels: common header", HEADER, ew.C_PRELUDE])
    code = "\n".join([f"// funcgrad CUDA kernels of {name}",
                      *(f"// ---- {k.name} " + "-" * 80 + "\n" + p for k, p in zip(kernels, parts))])
    return cc.Unit(header, code, parts)


# ---------------------------------------------------------------------------------------------
# Launching


class Launch(NamedTuple):
    """How one kernel runs: elements (or rows x partials) and the launch shape."""
    n: int
    rows: int
    partials: int


def launch_plan(kernel: fusion.Kernel) -> Launch:
    lay = cc.layout(kernel)
    n = math.prod(kernel.shape)
    if kernel.elementwise_only:
        return Launch(n, 0, 0)
    rows = math.prod(lay.sizes[:lay.kept])
    return Launch(n, rows, _partials(rows, math.prod(lay.sizes[lay.kept:])))


def _blocks(threads: int) -> int:
    return max(1, min(MAX_BLOCKS, -(-threads // THREADS)))


class GpuKernel:
    """Calls one kernel on cupy arrays: ``k(*inputs, *buffers) -> tuple of outputs`` (a
    buffer, or None, per output; trailing ones may be left out)."""

    def __init__(self, kernel: fusion.Kernel, module, meta: bytes):
        self.kernel = kernel
        self.module = module                 # the cupy.RawModule holding it
        self.meta_bytes = meta
        self.meta = None
        self.plan = launch_plan(kernel)
        self.n_in = len(kernel.in_avals)

    def __call__(self, *args):
        import cupy
        k, plan = self.kernel, self.plan
        if self.meta is None:
            self.meta = cupy.asarray(np.frombuffer(self.meta_bytes, np.int64))
        ins = [cupy.ascontiguousarray(cupy.asarray(a, dtype=av.dtype))
               for a, av in zip(args[:self.n_in], k.in_avals)]
        given = list(args[self.n_in:]) + [None] * (len(k.out_avals) + self.n_in - len(args))
        outs = [b if b is not None else cupy.empty(av.shape, av.dtype)
                for b, av in zip(given, k.out_avals)]
        module = self.module
        if k.elementwise_only:
            if plan.n:
                module.get_function(k.name)((_blocks(plan.n),), (THREADS,), (*ins, *outs, self.meta))
            return tuple(outs)
        parts = [cupy.empty(plan.rows * plan.partials, cc.accumulator(kind, av.dtype).total)
                 for av, kind in zip(k.out_avals, k.reduce_kinds) if kind]
        full = (*ins, *outs, self.meta, *parts, np.int64(plan.partials))
        if plan.rows:
            module.get_function(f"{k.name}_part_kernel")((_blocks(plan.rows * plan.partials),), (THREADS,), full)
            module.get_function(f"{k.name}_finish_kernel")((_blocks(plan.rows),), (THREADS,), full)
        return tuple(outs)


def compile_options() -> tuple[str, ...]:
    return ("-std=c++17",)


def entry_names(kernel: fusion.Kernel) -> list[str]:
    if kernel.elementwise_only:
        return [kernel.name]
    return [f"{kernel.name}_part_kernel", f"{kernel.name}_finish_kernel"]


def build(kernels: list[fusion.Kernel], name: str) -> tuple[list[GpuKernel], cc.Unit]:
    """Compile the kernels now (NVRTC, through cupy, which caches the result on disk), so a
    failure shows at compile time rather than at the first call."""
    import cupy
    unit = translation_unit(kernels, name)
    module = cupy.RawModule(code=unit.source, options=compile_options())
    for k in kernels:
        for entry in entry_names(k):
            module.get_function(entry)
    return [GpuKernel(k, module, cc.metadata(k, cc.layout(k))) for k in kernels], unit


def fuse(closed: ClosedJaxpr, name: str):
    """The cupy backend's fusion step (see :class:`~.pipeline.Backend`)."""
    from .pipeline import Fused
    fused, kernels = fusion.fuse(closed)
    if not kernels:
        return Fused(closed, {}, [])
    try:
        fns, unit = build(kernels, name)
    except Exception as e:            # cupy's compile errors have no common base class
        cc.fusion_off("CUDA", e)
        return Fused(closed, {}, [])
    templates = {fusion.fused_kernel_p: cc.kernel_template(dict(zip(kernels, fns)))}
    return Fused(fused, templates, [cc.describe(k, p) for k, p in zip(kernels, unit.parts)])
