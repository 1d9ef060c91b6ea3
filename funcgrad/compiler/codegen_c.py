"""C++ kernels for the CPU: one translation unit per jitted function, loaded with ctypes.

Each :class:`~.fusion.Kernel` becomes

* a **body**, ``kN_body(x0, x1, ..., y0&, r0&)``: one typed local per equation, built from
  the primitives' C expression templates (``c_expr``), from loaded operand values to output
  values. The body is plain C shared with the CUDA backend (:mod:`.codegen_cupy`);
* **loops** over the iteration space: ``fg_walk`` visits a range of it in segments along the
  last (coalesced) axis, and each segment is a ``#pragma omp simd`` loop reading operands
  through strides, so broadcasting and transposed reads are index arithmetic. Kernels with
  reductions accumulate 16 lanes per segment, combine lanes pairwise, and combine fixed-size
  chunks in order, so results do not depend on the number of threads;
* a **Python entry point** (``METH_FASTCALL``, built in the library and loaded with ctypes):
  it takes the input arrays (and, optionally, buffers for the outputs), allocates the other
  outputs, and runs the loops on raw pointers -- without the GIL above
  :data:`RELEASE_GIL_MIN` elements, and above :data:`PARALLEL_MIN` on
  ``$FUNCGRAD_NUM_THREADS`` OpenMP threads (default 1: measured on a 2-CPU machine, two
  threads made kernels slower, and 50x slower whenever another process was running, since
  each parallel region waits for a scheduler time slice). A call costs about 0.2 us.

Floating-point semantics are numpy's: no contraction into FMAs (``-ffp-contract=off``), no
fast-math. Arithmetic, comparisons, casts and rounding give numpy's bits (``-march=native``
changes only the vector width); math functions come from libm, vectorized through glibc's
libmvec where available, and may differ from numpy's own in the last bits (a few ulps).

Sizes and strides are not in the source: they travel in a small ``int64`` metadata block
bound to each kernel function, so one compiled library serves every shape with the same
broadcasting pattern, and the disk cache (:mod:`.cache`) is keyed by the source alone.

Primitives may bring their own C++ (a ``c_kernel`` rule returning a :class:`~funcgrad.core.
CKernel`, e.g. pooling): each such equation becomes a call of a kernel in the same
translation unit, with the same entry point, instead of the primitive's numpy impl. Its
code is wrapped in a namespace of its own with a row loop around it (parallel above
:data:`PARALLEL_MIN` work items).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import platform
import sysconfig
import warnings
from typing import Callable, NamedTuple, Sequence

import numpy as np

from ..core import CHelper, CImpl, CKernel, ClosedJaxpr, Eqn, Jaxpr, Literal, Primitive, ShapedArray
from ..primitives import elementwise as ew
from . import cache, fusion

PARALLEL_MIN = 1 << 16
"""Kernels over at least this many elements run their loop on all OpenMP threads."""
RELEASE_GIL_MIN = 1 << 14
"""Kernels over at least this many elements release the GIL while they run."""
CHUNK = 1 << 12
"""Reductions combine partial results of chunks of this many elements, in order."""
LANES = 16
"""Independent accumulators per reduction (vectorizable, and more accurate than one)."""

C_TYPES = {np.dtype(k): v for k, v in (
    ("bool", "bool"), ("int8", "int8_t"), ("int16", "int16_t"), ("int32", "int32_t"),
    ("int64", "int64_t"), ("uint8", "uint8_t"), ("uint16", "uint16_t"), ("uint32", "uint32_t"),
    ("uint64", "uint64_t"), ("float32", "float"), ("float64", "double"))}


def c_type(dtype) -> str:
    return C_TYPES[np.dtype(dtype)]


def c_literal(value, dtype) -> str:
    """An exact C literal of ``dtype`` (finite floats round-trip through their repr)."""
    dtype = np.dtype(dtype)
    value = np.asarray(value, dtype).item()
    if dtype.kind == "b":
        return "true" if value else "false"
    if dtype.kind == "f":
        bits = np.asarray(value, dtype).view(f"u{dtype.itemsize}").item()
        if not math.isfinite(value):
            return f"fg_bitcast<{c_type(dtype)}>(({c_type('u' + str(dtype.itemsize))}){bits}u)"
        text = repr(float(value))
        return text + "f" if dtype.itemsize == 4 else text
    if dtype.kind == "u":
        return f"(({c_type(dtype)}){value}ull)"
    if value == -2 ** 63:
        return "((int64_t)(-9223372036854775807ll - 1))"
    return f"(({c_type(dtype)}){value}ll)"


# ---------------------------------------------------------------------------------------------
# Iteration layout


class Layout(NamedTuple):
    """The iteration space after merging axes: ``sizes`` (kept axes, then reduced axes) and,
    per operand, its element strides over them."""
    sizes: tuple[int, ...]
    kept: int                                  # leading axes that are not reduced
    strides: tuple[tuple[int, ...], ...]       # per load

    @property
    def ndim(self) -> int:
        return len(self.sizes)

    def inner_class(self, k: int) -> str:
        """How load ``k`` moves along the innermost axis: "s"calar (never), "b"roadcast (not
        along it), "c"ontiguous, or "g"eneral stride."""
        st = self.strides[k]
        if not any(st):
            return "s"
        return {0: "b", 1: "c"}.get(st[-1], "g")


def layout(kernel: fusion.Kernel) -> Layout:
    shape = kernel.shape
    split = len(shape) - kernel.reduced
    loads = [strides for _, strides in kernel.loads.values()]

    def merge(axes: range) -> list[tuple[int, list[int]]]:
        dims: list[tuple[int, list[int]]] = []
        for a in axes:
            if shape[a] == 1:
                continue
            st = [s[a] for s in loads]
            if dims and all(p == q * shape[a] for p, q in zip(dims[-1][1], st)):
                dims[-1] = (dims[-1][0] * shape[a], st)
            else:
                dims.append((shape[a], st))
        return dims

    kept, red = merge(range(split)), merge(range(split, len(shape)))
    if kernel.reduced and not red:
        red = [(1, [0] * len(loads))]
    if not kept and not red:
        kept = [(1, [0] * len(loads))]
    dims = kept + red
    return Layout(tuple(n for n, _ in dims), len(kept),
                  tuple(tuple(st[k] for _, st in dims) for k in range(len(loads))))


# Metadata block: header, sizes, strides of the walking loads, output shapes.
META_N, META_ROWS, META_ROW_SIZE, META_NDIM, META_OUTPUTS, META_SIZES = range(6)


def metadata(kernel: fusion.Kernel, lay: Layout) -> bytes:
    walking = [k for k in range(len(lay.strides)) if lay.inner_class(k) != "s"]
    rows = math.prod(lay.sizes[:lay.kept]) if kernel.reduced else math.prod(lay.sizes)
    row_size = math.prod(lay.sizes[lay.kept:]) if kernel.reduced else 1
    body = list(lay.sizes) + [s for k in walking for s in lay.strides[k]]
    outputs = [x for a in kernel.out_avals for x in (a.ndim, *a.shape)]
    header = [math.prod(kernel.shape), rows, row_size, lay.ndim, META_SIZES + len(body)]
    return np.asarray(header + body + outputs, np.int64).tobytes()


# ---------------------------------------------------------------------------------------------
# The body (shared with the CUDA backend)


class Operand(NamedTuple):
    name: str          # body parameter
    input: int         # index of the kernel input it reads
    ctype: str


def operands(kernel: fusion.Kernel) -> list[Operand]:
    index = {v: i for i, v in enumerate(kernel.jaxpr.invars)}
    return [Operand(f"x{k}", index[base], c_type(v.aval.dtype))
            for k, (v, (base, _)) in enumerate(kernel.loads.items())]


def body(kernel: fusion.Kernel) -> str:
    """``FG_INLINE void kN_body(operand values..., element outputs&..., reduced values&...)``."""
    names: dict = {v: f"x{k}" for k, v in enumerate(kernel.loads)}
    lines = []
    counter = 0

    def atom(a) -> str:
        return c_literal(a.val, a.aval.dtype) if type(a) is Literal else names[a]

    reduced_operand = {}
    for e in kernel.jaxpr.eqns:
        if e.primitive in fusion.VIEWS:
            continue
        if e.primitive in fusion.REDUCTIONS:
            reduced_operand[e.outvars[0]] = atom(e.invars[0])
            continue
        out = e.outvars[0]
        expr = fusion.expression(e).format(*map(atom, e.invars), T=c_type(out.aval.dtype))
        names[out] = f"v{counter}"
        counter += 1
        where = f"  {e.source_info}" if e.source_info is not None else ""
        lines.append(f"  const {c_type(out.aval.dtype)} {names[out]} = {expr};"
                     f"  // {e.primitive.name}{where}")
    params = [f"const {op.ctype} {op.name}" for op in operands(kernel)]
    for k, (v, kind) in enumerate(zip(kernel.jaxpr.outvars, kernel.reduce_kinds)):
        params.append(f"{c_type(v.aval.dtype)}& {'r' if kind else 'y'}{k}")
        lines.append(f"  {'r' if kind else 'y'}{k} = {reduced_operand[v] if kind else names[v]};")
    return (f"FG_INLINE void {kernel.name}_body({', '.join(params)}) {{\n"
            + "\n".join(lines) + "\n}\n")


class Accumulator(NamedTuple):
    """How a reduction accumulates: lanes of ``lane`` dtype, chunk and row totals of
    ``total`` dtype (float32 sums add chunks in float64), its identity, and the C template
    ``combine`` of two partial values ``{a}`` and ``{b}``."""
    lane: np.dtype
    total: np.dtype
    identity: str
    combine: str


def accumulator(kind: str, dtype) -> Accumulator:
    dtype = np.dtype(dtype)
    if kind == "sum":
        if dtype.kind == "f":
            return Accumulator(dtype, np.dtype("float64"), "0", "({a} + {b})")
        return Accumulator(dtype, dtype, "0", "fg_add({a}, {b})")
    if dtype.kind == "f":
        inf = c_literal(np.inf, dtype)
        ident = inf if kind == "min" else f"(-{inf})"
    elif dtype.kind == "b":
        ident = "true" if kind == "min" else "false"
    else:
        info = np.iinfo(dtype)
        ident = c_literal(info.max if kind == "min" else info.min, dtype)
    return Accumulator(dtype, dtype, ident, f"fg_{kind}({{a}}, {{b}})")


# ---------------------------------------------------------------------------------------------
# CPU loops


def _loops(kernel: fusion.Kernel, lay: Layout) -> str:
    """``kN_range`` (elementwise) or ``kN_partial`` (reductions), and ``kN_run``."""
    ops = operands(kernel)
    n_in = len(kernel.jaxpr.invars)
    outs = list(zip(kernel.out_avals, kernel.reduce_kinds))
    walking = [k for k in range(len(ops)) if lay.inner_class(k) != "s"]
    nd = lay.ndim
    name = kernel.name
    head = [f"  const {c_type(a.dtype)}* in{i} = (const {c_type(a.dtype)}*)p[{i}];"
            for i, a in enumerate(kernel.in_avals)]
    head += [f"  {c_type(a.dtype)}* out{k} = ({c_type(a.dtype)}*)p[{n_in + k}];"
             for k, (a, kind) in enumerate(outs) if not kind]
    for k, op in enumerate(ops):
        cls = lay.inner_class(k)
        if cls == "s":
            head.append(f"  const {op.ctype} {op.name} = in{op.input}[0];")
        elif cls == "g":
            w = walking.index(k)
            head.append(f"  const int64_t st{k} = m[{META_SIZES + nd + w * nd + nd - 1}];")
    seg = []                       # inside the segment lambda, before the inner loop
    for k, op in enumerate(ops):
        cls = lay.inner_class(k)
        if cls == "s":
            continue
        w = walking.index(k)
        if cls == "b":
            seg.append(f"    const {op.ctype} {op.name} = in{op.input}[off[{w}]];")
        else:
            seg.append(f"    const {op.ctype}* a{k} = in{op.input} + off[{w}];")
    seg += [f"    {c_type(a.dtype)}* o{k} = out{k} + (i - j);"
            for k, (a, kind) in enumerate(outs) if not kind]

    def call(index: str) -> list[str]:
        args = []
        for k, op in enumerate(ops):
            cls = lay.inner_class(k)
            args.append(op.name if cls in "sb" else f"a{k}[{index}]" if cls == "c"
                        else f"a{k}[({index}) * st{k}]")
        decl = [f"{c_type(a.dtype)} {'r' if kind else 'y'}{k};" for k, (a, kind) in enumerate(outs)]
        args += [f"{'r' if kind else 'y'}{k}" for k, (a, kind) in enumerate(outs)]
        stores = [f"o{k}[{index}] = y{k};" for k, (a, kind) in enumerate(outs) if not kind]
        return decl + [f"{name}_body({', '.join(args)});"] + stores

    walk = (f"  fg_walk<{nd}, {len(walking)}>(m + {META_SIZES}, m + {META_SIZES + nd}, begin, end,\n"
            f"      [&](int64_t i, int64_t j, int64_t n, const int64_t* off) {{\n")
    if kernel.elementwise_only:
        inner = ["    #pragma omp simd", "    for (int64_t jj = j; jj < j + n; ++jj) {"]
        inner += [f"      {s}" for s in call("jj")] + ["    }"]
        rng = (f"static void {name}_range(char* const* p, const int64_t* m, int64_t begin, int64_t end) {{\n"
               + "\n".join(head) + "\n" + walk + "\n".join(seg + inner) + "\n  });\n}\n")
        run = (f"static void {name}_run(char* const* p, const int64_t* m) {{\n"
               f"  const int64_t n = m[{META_N}];\n"
               f"  if (fg_parallel(n)) {{\n"
               f"    #pragma omp parallel num_threads(fg_threads())\n"
               f"    {{ int64_t b, e; fg_thread_range(n, &b, &e); {name}_range(p, m, b, e); }}\n"
               f"  }} else {{\n"
               f"    {name}_range(p, m, 0, n);\n"
               f"  }}\n}}\n")
        return rng + run

    reds = [(k, a, kind) for k, (a, kind) in enumerate(outs) if kind]
    accs = {k: accumulator(kind, kernel.jaxpr.outvars[k].aval.dtype) for k, a, kind in reds}
    lanes = [f"  {c_type(accs[k].lane)} lane{k}[{LANES}];" for k, _, _ in reds]
    lanes += [f"  for (int l = 0; l < {LANES}; ++l) lane{k}[l] = {accs[k].identity};" for k, _, _ in reds]

    def fold(index: str) -> list[str]:
        return [f"lane{k}[{index}] = {accs[k].combine.format(a=f'lane{k}[{index}]', b=f'r{k}')};"
                for k, _, _ in reds]
    inner = ["    int64_t jj = j;", f"    for (; jj + {LANES} <= j + n; jj += {LANES}) {{",
             "      #pragma omp simd", f"      for (int l = 0; l < {LANES}; ++l) {{"]
    inner += [f"        {s}" for s in call("jj + l") + fold("l")] + ["      }", "    }"]
    inner += ["    for (; jj < j + n; ++jj) {"] + [f"      {s}" for s in call("jj") + fold("0")]
    inner += ["    }"]
    parts = ", ".join(f"{c_type(accs[k].total)}* part{k}" for k, _, _ in reds)
    finish = []
    for k, _, _ in reds:
        lane_t, comb_t = c_type(accs[k].lane), c_type(accs[k].total)
        combine = accs[k].combine.format(a="a", b="b")
        finish.append(f"  *part{k} = ({comb_t})fg_fold_lanes<{lane_t}>(lane{k}, "
                      f"[](const {lane_t} a, const {lane_t} b) {{ return ({lane_t}){combine}; }});")
    partial = (f"static void {name}_partial(char* const* p, const int64_t* m, int64_t begin, int64_t end, "
               f"{parts}) {{\n" + "\n".join(head + lanes) + "\n" + walk + "\n".join(seg + inner)
               + "\n  });\n" + "\n".join(finish) + "\n}\n")
    # Rows: each row is chunked; chunk partials are combined in order.
    decl_parts = "".join(f"    {c_type(accs[k].total)} t{k} = {accs[k].identity}, c{k};\n" for k, _, _ in reds)
    part_args = ", ".join(f"&c{k}" for k, _, _ in reds)
    comb = "".join(f"      t{k} = {accs[k].combine.format(a=f't{k}', b=f'c{k}')};\n" for k, _, _ in reds)
    store = "".join(f"    (({c_type(a.dtype)}*)p[{n_in + k}])[r] = ({c_type(a.dtype)})t{k};\n"
                    for k, a, _ in reds)
    rows = (f"static void {name}_rows(char* const* p, const int64_t* m, int64_t r0, int64_t r1) {{\n"
            f"  const int64_t K = m[{META_ROW_SIZE}];\n"
            f"  for (int64_t r = r0; r < r1; ++r) {{\n{decl_parts}"
            f"    for (int64_t c = 0; c < K; c += {CHUNK}) {{\n"
            f"      {name}_partial(p, m, r * K + c, r * K + (K - c < {CHUNK} ? K : c + {CHUNK}), {part_args});\n"
            f"{comb}    }}\n{store}  }}\n}}\n")
    # One big row (a full reduction): chunks in parallel into a buffer, combined in order.
    buf_decl = "".join(f"    {c_type(accs[k].total)}* b{k} = ({c_type(accs[k].total)}*)"
                       f"malloc(chunks * sizeof({c_type(accs[k].total)}));\n" for k, _, _ in reds)
    buf_args = ", ".join(f"&b{k}[c]" for k, _, _ in reds)
    buf_comb = "".join(f"      t{k} = {accs[k].combine.format(a=f't{k}', b=f'b{k}[c]')};\n" for k, _, _ in reds)
    buf_free = "".join(f"    free(b{k});\n" for k, _, _ in reds)
    ok = " && ".join(f"b{k}" for k, _, _ in reds)
    run = (f"static void {name}_run(char* const* p, const int64_t* m) {{\n"
           f"  const int64_t rows = m[{META_ROWS}], K = m[{META_ROW_SIZE}];\n"
           f"  const int64_t chunks = (K + {CHUNK - 1}) / {CHUNK};\n"
           f"  if (!fg_parallel(m[{META_N}])) {{ {name}_rows(p, m, 0, rows); return; }}\n"
           f"  if (rows >= fg_threads() || chunks < 2) {{\n"
           f"    #pragma omp parallel num_threads(fg_threads())\n"
           f"    {{ int64_t b, e; fg_thread_rows(rows, &b, &e); {name}_rows(p, m, b, e); }}\n"
           f"    return;\n  }}\n"
           f"  for (int64_t r = 0; r < rows; ++r) {{\n{buf_decl}"
           f"    if (!({ok})) {{ {buf_free.strip()} {name}_rows(p, m, r, r + 1); continue; }}\n"
           f"    #pragma omp parallel for schedule(static) num_threads(fg_threads())\n"
           f"    for (int64_t c = 0; c < chunks; ++c)\n"
           f"      {name}_partial(p, m, r * K + c * {CHUNK},\n"
           f"                     r * K + (K - c * {CHUNK} < {CHUNK} ? K : (c + 1) * {CHUNK}), {buf_args});\n"
           + "".join(f"    {c_type(accs[k].total)} t{k} = {accs[k].identity};\n" for k, _, _ in reds)
           + f"    for (int64_t c = 0; c < chunks; ++c) {{\n{buf_comb}    }}\n{store}{buf_free}  }}\n}}\n")
    return partial + rows + run


# ---------------------------------------------------------------------------------------------
# The translation unit


LIBMVEC_2_35 = ("exp2", "expm1", "log1p", "log2", "log10", "cbrt", "tan", "asin", "acos", "atan",
                "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf", "erfc")
"""Functions glibc 2.35+ has vector versions of (besides exp, log, sin, cos, pow)."""


def _simd_declarations(unary: tuple[str, ...], binary: tuple[str, ...]) -> str:
    """``omp declare simd`` redeclarations of math functions, float and double versions."""
    lines = []
    for names, params in ((unary, 1), (binary, 2)):
        for f in names:
            for name, t in ((f + "f", "float"), (f, "double")):
                lines += ["#pragma omp declare simd notinbranch",
                          f'extern "C" {t} {name}({", ".join([t] * params)}) noexcept;']
    return "\n".join(lines)


def _header() -> str:
    return r"""#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#define FG_INLINE static inline
#define FG_EXPORT extern "C" __attribute__((visibility("default")))
static_assert(sizeof(npy_intp) == sizeof(int64_t), "64-bit platforms only");
#if FG_LIBMVEC
// glibc's vector math library: lets `omp simd` loops call vectorized math functions.
""" + _simd_declarations(("exp", "log", "sin", "cos"), ("pow",)) + """
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35)
""" + _simd_declarations(LIBMVEC_2_35, ("atan2",)) + """
#endif
#endif
"""


RUNTIME = r"""
// ---- loops --------------------------------------------------------------------------------
// Visit the linear range [begin, end) of a row-major iteration space of ND axes in segments
// along the last axis: seg(i, j, n, off) covers linear indices i .. i+n-1, which are indices
// j .. j+n-1 along the last axis; off[k] is where walking operand k is at index 0 of it.
template <int ND, int NW, class Seg>
FG_INLINE void fg_walk(const int64_t* shape, const int64_t* strides, int64_t begin, int64_t end, Seg seg) {
  int64_t idx[ND], off[NW > 0 ? NW : 1];
  int64_t rest = begin;
  for (int d = ND - 1; d >= 0; --d) { idx[d] = rest % shape[d]; rest /= shape[d]; }
  for (int k = 0; k < NW; ++k) {
    off[k] = 0;
    for (int d = 0; d < ND - 1; ++d) off[k] += idx[d] * strides[k * ND + d];
  }
  int64_t i = begin, j = idx[ND - 1];
  while (i < end) {
    const int64_t n = shape[ND - 1] - j < end - i ? shape[ND - 1] - j : end - i;
    seg(i, j, n, (const int64_t*)off);
    i += n;
    j = 0;
    for (int d = ND - 2; d >= 0; --d) {
      for (int k = 0; k < NW; ++k) off[k] += strides[k * ND + d];
      if (++idx[d] < shape[d]) break;
      for (int k = 0; k < NW; ++k) off[k] -= strides[k * ND + d] * shape[d];
      idx[d] = 0;
    }
  }
}
template <class A, class Op> FG_INLINE A fg_fold_lanes(A* v, Op op) {
  for (int w = FG_LANES / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) v[l] = op(v[l], v[l + w]);
  return v[0];
}
// Threads a big kernel runs on: $FUNCGRAD_NUM_THREADS (read once; default 1), at most
// OpenMP's own count. One by default: a parallel region waits for its slowest thread, and on
// a busy machine that is a scheduler time slice (ms) per kernel call.
FG_INLINE int64_t fg_threads(void) {
#ifdef _OPENMP
  static int n = 0;
  if (n == 0) {
    const char* s = getenv("FUNCGRAD_NUM_THREADS");
    const int want = s ? atoi(s) : 1, most = omp_get_max_threads();
    n = want < 1 ? 1 : want > most ? most : want;
  }
  return n;
#else
  return 1;
#endif
}
FG_INLINE bool fg_parallel(int64_t n) { return n >= FG_PARALLEL_MIN && fg_threads() > 1; }
// This thread's share of [0, n) (whole cache lines), inside a parallel region.
FG_INLINE void fg_thread_range(int64_t n, int64_t* b, int64_t* e) {
#ifdef _OPENMP
  const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
  const int64_t t = 0, nt = 1;
#endif
  int64_t per = (n + nt - 1) / nt;
  per = (per + 15) / 16 * 16;
  *b = t * per < n ? t * per : n;
  *e = *b + per < n ? *b + per : n;
}
FG_INLINE void fg_thread_rows(int64_t rows, int64_t* b, int64_t* e) {
#ifdef _OPENMP
  const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
  const int64_t t = 0, nt = 1;
#endif
  *b = rows * t / nt;
  *e = rows * (t + 1) / nt;
}

// ---- the Python entry point ---------------------------------------------------------------
typedef void (*fg_run_fn)(char* const* p, const int64_t* m);
// strided: the kernel reads its inputs through strides it is given (else: C-contiguous ones).
struct fg_kernel { const char* name; int n_in, n_out; const int* in_types; const int* out_types; fg_run_fn run; int strided; };

// Whether the buffer given for output o can take it: 1 yes; 0 no, as it is laid out in
// another order (an array computed from transposed operands): the output gets a new array;
// -1 (an error) when it is not a writeable array of the output's shape and dtype.
static int fg_usable_output(const fg_kernel* k, int o, PyObject* out, const int64_t* d) {
  PyArrayObject* a = (PyArrayObject*)out;
  if (PyArray_CheckExact(out) && PyArray_TYPE(a) == k->out_types[o] && PyArray_ISWRITEABLE(a)
      && PyArray_NDIM(a) == d[0]) {
    int same = 1;
    for (int i = 0; i < d[0]; ++i) same &= PyArray_DIMS(a)[i] == d[1 + i];
    if (same) return PyArray_IS_C_CONTIGUOUS(a) && PyArray_ISALIGNED(a);
  }
  PyErr_Format(PyExc_TypeError, "kernel %s: the buffer for output %d is not a writeable "
               "array of its shape and dtype", k->name, o);
  return -1;
}

// kernel(inputs..., [output buffers or None...]) -> tuple of outputs; `self` holds the metadata.
static PyObject* fg_call(const fg_kernel* k, PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                         char** p, PyObject** held) {
  int n_held = 0, o = 0;
  const int64_t* m = (const int64_t*)PyBytes_AS_STRING(self);
  const int64_t* d = m + m[FG_META_OUTPUTS];
  PyObject* result = NULL;
  if (nargs < k->n_in || nargs > k->n_in + k->n_out) {
    PyErr_Format(PyExc_TypeError, "kernel %s takes %d arrays and up to %d output "
                 "buffers (%zd arguments given)", k->name, k->n_in, k->n_out, nargs);
    return NULL;
  }
  for (int a = 0; a < k->n_in; ++a) {
    PyObject* x = args[a];
    PyArrayObject* arr = (PyArrayObject*)x;
    if (PyArray_CheckExact(x) && PyArray_TYPE(arr) == k->in_types[a] && (k->strided || PyArray_IS_C_CONTIGUOUS(arr))
        && PyArray_ISALIGNED(arr)) {
      p[a] = PyArray_BYTES(arr);
    } else {
      PyObject* c = PyArray_FROM_OTF(x, k->in_types[a], NPY_ARRAY_IN_ARRAY);
      if (!c) goto fail;
      held[n_held++] = c;
      p[a] = PyArray_BYTES((PyArrayObject*)c);
    }
  }
  result = PyTuple_New(k->n_out);
  if (!result) goto fail;
  for (o = 0; o < k->n_out; ++o) {
    PyObject* out = NULL;
    if (k->n_in + o < nargs && args[k->n_in + o] != Py_None) {
      const int usable = fg_usable_output(k, o, args[k->n_in + o], d);
      if (usable < 0) goto fail;
      if (usable) {
        out = args[k->n_in + o];
        Py_INCREF(out);
      }
    }
    if (!out) {
      out = PyArray_SimpleNew((int)d[0], (npy_intp*)(d + 1), k->out_types[o]);
      if (!out) goto fail;
    }
    PyTuple_SET_ITEM(result, o, out);
    p[k->n_in + o] = PyArray_BYTES((PyArrayObject*)out);
    d += 1 + d[0];
  }
  if (m[FG_META_N] >= FG_RELEASE_GIL_MIN) {
    Py_BEGIN_ALLOW_THREADS
    k->run(p, m);
    Py_END_ALLOW_THREADS
  } else {
    k->run(p, m);
  }
  for (int h = 0; h < n_held; ++h) Py_DECREF(held[h]);
  return result;
fail:
  for (int h = 0; h < n_held; ++h) Py_DECREF(held[h]);
  Py_XDECREF(result);
  return NULL;
}
"""


class Unit(NamedTuple):
    """A translation unit: the ``header`` every unit starts with (precompiled once), the
    ``code`` of its kernels, and each kernel's own part of that code (for display)."""
    header: str
    code: str
    parts: list[str]

    @property
    def source(self) -> str:
        return self.header + self.code


@functools.lru_cache(maxsize=None)
def common_header() -> str:
    """Includes, the elementwise prelude and the loop/entry-point runtime: the same for every
    translation unit."""
    defines = [f"#define FG_LANES {LANES}", f"#define FG_PARALLEL_MIN {PARALLEL_MIN}",
               f"#define FG_RELEASE_GIL_MIN {RELEASE_GIL_MIN}", f"#define FG_META_N {META_N}",
               f"#define FG_META_OUTPUTS {META_OUTPUTS}"]
    return "\n".join(["// funcgrad fused kernels: common header", _header(), *defines,
                      ew.C_PRELUDE, RUNTIME])


def _entry(name: str, run: str, in_dtypes, out_dtypes, strided: bool = False,
           dynamic: bool = False) -> str:
    """A kernel's descriptor and its Python entry point ``{name}_py`` (see ``fg_call``),
    which is bound to the kernel's metadata, or (``dynamic``) takes it as first argument."""
    n_in, n_out = len(in_dtypes), len(out_dtypes)
    in_types = ", ".join(str(np.dtype(d).num) for d in in_dtypes) or "0"
    out_types = ", ".join(str(np.dtype(d).num) for d in out_dtypes)
    call = (f"  if (nargs < 1 || !PyBytes_Check(args[0])) {{\n"
            f"    PyErr_SetString(PyExc_TypeError, \"kernel {name} takes its metadata first\");\n"
            f"    return NULL;\n  }}\n"
            f"  return fg_call(&{name}_kernel, args[0], args + 1, nargs - 1, p, held);\n"
            if dynamic else f"  return fg_call(&{name}_kernel, self, args, nargs, p, held);\n")
    return (f"static const int {name}_in_types[] = {{{in_types}}};\n"
            f"static const int {name}_out_types[] = {{{out_types}}};\n"
            f"static const fg_kernel {name}_kernel = {{\"{name}\", {n_in}, {n_out}, "
            f"{name}_in_types, {name}_out_types, {run}, {int(strided)}}};\n"
            f"static PyObject* {name}_py(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {{\n"
            f"  char* p[{n_in + n_out}];\n  PyObject* held[{max(n_in, 1)}];\n{call}}}\n")


def translation_unit(kernels: list[fusion.Kernel], name: str,
                     primitive_kernels: list[PrimitiveKernel] = ()) -> Unit:
    """The fused ``kernels`` and the ``primitive_kernels`` in one unit, in that order."""
    parts, entries, names = [], [], []
    for k in kernels:
        parts.append(body(k) + _loops(k, layout(k))
                     + _entry(k.name, f"{k.name}_run", [a.dtype for a in k.in_avals],
                              [a.dtype for a in k.out_avals]))
        names.append(k.name)
    for k in primitive_kernels:
        parts.append(_primitive_code(k) + _entry(k.name, f"{k.name}::run", k.code.in_dtypes,
                                                 k.code.out_dtypes, k.code.strided, k.dynamic))
        names.append(k.name)
    entries = [f'  {{"{n}", (PyCFunction)(void (*)(void)){n}_py, METH_FASTCALL, NULL}},'
               for n in names]
    preludes = list(dict.fromkeys(k.code.prelude for k in primitive_kernels if k.code.prelude))
    exports = ("static PyMethodDef fg_methods[] = {\n" + "\n".join(entries) + "\n};\n"
               "FG_EXPORT int fg_init(void) { return _import_array(); }\n"
               "FG_EXPORT PyObject* fg_make(int k, PyObject* meta) {\n"
               "  return PyCFunction_NewEx(&fg_methods[k], meta, NULL);\n}\n")
    code = "\n".join([f"// funcgrad fused kernels of {name}", *preludes,
                      *(f"// ---- {n} " + "-" * 80 + "\n" + p for n, p in zip(names, parts)),
                      exports])
    return Unit(common_header(), code, parts)


# ---------------------------------------------------------------------------------------------
# Primitives' own kernels


class PrimitiveKernel(NamedTuple):
    """A primitive's C++ kernel (code from its ``c_kernel`` rule) in a translation unit,
    named ``name`` (its namespace). Its metadata (sizes) is bound per call site, or, for the
    ``dynamic`` helpers of a :class:`~funcgrad.core.CImpl`, given per call."""
    name: str
    primitive: Primitive | None
    code: CHelper               # dtypes as np.dtype
    dynamic: bool = False


def _code(prelude: str, decls: str, body: str, in_dtypes, out_dtypes,
          strided: bool = False) -> CHelper:
    """A kernel's code with its dtypes normalized (kernels of equal code are one kernel)."""
    return CHelper(prelude, decls, body, tuple(map(np.dtype, in_dtypes)),
                   tuple(map(np.dtype, out_dtypes)), strided)


class ImplCall(NamedTuple):
    """An equation run as array code calling helpers (indices of primitive kernels)."""
    run: Callable
    helpers: tuple[int, ...]


def primitive_kernels(jaxpr: Jaxpr) -> tuple[list[PrimitiveKernel], dict[Eqn, tuple[int, bytes] | ImplCall]]:
    """The kernels of the equations of ``jaxpr`` whose primitive's ``c_kernel`` rule returns
    one (a :class:`~funcgrad.core.CKernel`) or helpers (a :class:`~funcgrad.core.CImpl`) for
    them, operands and results of C types only: the distinct kernels, and per equation its
    kernel's index and metadata, or its :class:`ImplCall`."""
    kernels: list[PrimitiveKernel] = []
    index: dict[tuple, int] = {}
    calls: dict[Eqn, tuple[int, bytes] | ImplCall] = {}

    def add(prim, kernel: PrimitiveKernel) -> int:
        key = kernel[2:]                # its code and whether it is dynamic
        if key not in index:
            index[key] = len(kernels)
            kernels.append(kernel._replace(name=f"{prim.name}{len(kernels)}"))
        return index[key]

    for e in jaxpr.eqns:
        rule = e.primitive.c_kernel
        if rule is None:
            continue
        ins, outs = [a.aval for a in e.invars], [v.aval for v in e.outvars]
        if any(a.dtype not in C_TYPES for a in ins + outs):
            continue
        spec = rule(ins, outs, **e.params)
        if isinstance(spec, CKernel):
            code = _code(spec.prelude, spec.decls, spec.body, [a.dtype for a in ins],
                         [a.dtype for a in outs])
            k = add(e.primitive, PrimitiveKernel("", e.primitive, code))
            calls[e] = (k, primitive_metadata(spec, outs))
        elif isinstance(spec, CImpl):
            if any(np.dtype(d) not in C_TYPES for h in spec.helpers
                   for d in h.in_dtypes + h.out_dtypes):
                continue
            helpers = tuple(add(e.primitive, PrimitiveKernel("", e.primitive, _code(*h), True))
                            for h in spec.helpers)
            calls[e] = ImplCall(spec.run, helpers)
    return kernels, calls


class Helper:
    """A compiled helper of a :class:`~funcgrad.core.CImpl`:
    ``helper(rows, row_size, meta, out_shapes, *operands) -> tuple of results``."""
    __slots__ = ("fn",)

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, rows: int, row_size: int, meta, out_shapes, *operands) -> tuple:
        return self.fn(_metadata(rows, row_size, meta, out_shapes), *operands)


def primitive_metadata(spec: CKernel, out_avals: list[ShapedArray]) -> bytes:
    """The metadata of a :class:`~funcgrad.core.CKernel` for outputs ``out_avals``."""
    return _metadata(spec.rows, spec.row_size, spec.meta, [a.shape for a in out_avals])


def _metadata(rows: int, row_size: int, meta, out_shapes) -> bytes:
    """The header (work items, rows, row size, unused, where output shapes start), the
    rule's ``meta`` (``m`` in its code), and the output shapes."""
    shapes = [x for shape in out_shapes for x in (len(shape), *shape)]
    header = [rows * row_size, rows, row_size, 0, META_SIZES + len(meta)]
    return np.asarray(header + list(meta) + shapes, np.int64).tobytes()


def _primitive_code(k: PrimitiveKernel) -> str:
    """The rule's code as ``rows`` (rows [r0, r1)) and ``run`` (all rows, in parallel above
    :data:`PARALLEL_MIN` work items), in namespace ``k.name``."""
    n_in = len(k.code.in_dtypes)
    pointers = [f"  const {c_type(d)}* in{i} = (const {c_type(d)}*)p[{i}];"
                for i, d in enumerate(k.code.in_dtypes)]
    pointers += [f"  {c_type(d)}* out{i} = ({c_type(d)}*)p[{n_in + i}];"
                 for i, d in enumerate(k.code.out_dtypes)]
    return (f"namespace {k.name} {{\n{k.code.decls}"
            "static void rows(char* const* p, const int64_t* m, int64_t r0, int64_t r1) {\n"
            + "\n".join(pointers) + f"\n  {k.code.body}\n}}\n"
            "static void run(char* const* p, const int64_t* m) {\n"
            f"  const int64_t n = m[{META_ROWS}];\n"
            f"  if (!fg_parallel(m[{META_N}])) {{ rows(p, m + {META_SIZES}, 0, n); return; }}\n"
            "  #pragma omp parallel num_threads(fg_threads())\n"
            f"  {{ int64_t b, e; fg_thread_rows(n, &b, &e); rows(p, m + {META_SIZES}, b, e); }}\n"
            f"}}\n}}  // namespace {k.name}\n")


# ---------------------------------------------------------------------------------------------
# Building and loading


@functools.lru_cache(maxsize=None)
def compile_flags() -> tuple[str, ...]:
    """-O2, not -O3: the hot loops are ``omp simd`` loops, vectorized at either level, and
    measured equally fast (elementwise, Adam and dispatch benchmarks), while -O2 compiles
    about 30% faster. -march=native only widens the vectors: with -ffp-contract=off and no
    fast-math the arithmetic is the same IEEE operations, so results keep numpy's bits.
    -fno-trapping-math (nothing reads the floating-point flags; values are unchanged) lets
    GCC turn selects on float comparisons into blends: without it, on CPUs without AVX-512
    masks, any kernel with a ``where``/``logistic``/``max`` stayed scalar (12x slower)."""
    import numpy
    flags = ["-O2", "-march=native", "-fopenmp", "-shared", "-fPIC", "-ffp-contract=off",
             "-fno-math-errno", "-fno-trapping-math", "-fvisibility=hidden", "-std=c++17", "-w",
             f"-I{sysconfig.get_paths()['include']}", f"-I{numpy.get_include()}"]
    if platform.system() == "Linux" and platform.machine() == "x86_64" and ctypes.util.find_library("mvec"):
        flags += ["-DFG_LIBMVEC=1", "-lmvec"]
    return tuple(flags)


_loaded: dict[str, ctypes.PyDLL] = {}


def load(unit: Unit) -> ctypes.PyDLL:
    """Compile (or find in the cache) and load a translation unit."""
    lib = _loaded.get(unit.code)
    if lib is None:
        path = cache.build(unit.code, compile_flags(), header=unit.header)
        lib = ctypes.PyDLL(str(path))
        lib.fg_init.restype = ctypes.c_int
        if lib.fg_init() != 0:
            raise cache.CompileError(f"{path}: numpy's C API could not be initialized")
        lib.fg_make.restype = ctypes.py_object
        lib.fg_make.argtypes = [ctypes.c_int, ctypes.py_object]
        _loaded[unit.code] = lib
    return lib


def build(kernels: list[fusion.Kernel], name: str, primitive_kernels: list[PrimitiveKernel] = (),
          calls: dict | None = None) -> tuple[list[Callable], dict[Eqn, Callable | ImplCall], Unit]:
    """One callable per fused kernel; per equation of ``calls`` (see
    :func:`primitive_kernels`), its kernel bound to its metadata (``k(*inputs, [out
    buffers]) -> tuple of outputs``), or its :class:`ImplCall` with compiled helpers."""
    unit = translation_unit(kernels, name, primitive_kernels)
    lib = load(unit)
    fns = [lib.fg_make(i, metadata(k, layout(k))) for i, k in enumerate(kernels)]
    made: dict = {}

    def make(k: int, meta: bytes | None):
        if (k, meta) not in made:
            fn = lib.fg_make(len(kernels) + k, meta)
            made[k, meta] = fn if meta is not None else Helper(fn)
        return made[k, meta]

    bound = {e: (ImplCall(call.run, tuple(make(k, None) for k in call.helpers))
                 if isinstance(call, ImplCall) else make(*call))
             for e, call in (calls or {}).items()}
    return fns, bound, unit


def compile_helpers(helpers: Sequence[CHelper], name: str = "helpers") -> list[Helper]:
    """``helpers`` (of a :class:`~funcgrad.core.CImpl`) compiled on their own, outside any
    jitted function."""
    kernels = [PrimitiveKernel(f"{name}{i}", None, _code(*h), True)
               for i, h in enumerate(helpers)]
    lib = load(translation_unit([], name, kernels))
    return [Helper(lib.fg_make(i, None)) for i in range(len(kernels))]


def describe(kernel: fusion.Kernel | PrimitiveKernel, part: str) -> str:
    """A kernel's source as ``lower().kernels`` shows it: what it computes, then its code."""
    if isinstance(kernel, PrimitiveKernel):
        ins = ", ".join(d.name for d in kernel.code.in_dtypes)
        outs = ", ".join(d.name for d in kernel.code.out_dtypes)
        return f"// {kernel.name}: {kernel.primitive.name} ({ins}) -> ({outs})\n{part}"
    ins = ", ".join(a.str_short() for a in kernel.in_avals)
    outs = ", ".join(a.str_short() for a in kernel.out_avals)
    red = f", reducing the last {kernel.reduced} axes" if kernel.reduced else ""
    return (f"// {kernel.name}: ({ins}) -> ({outs}); loop over "
            f"[{','.join(map(str, kernel.shape))}]{red}\n{part}")


# ---------------------------------------------------------------------------------------------
# The backend's fusion step

_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Warn about ``key`` (a kind of failure) once per process."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def fusion_off(backend: str, error: Exception) -> None:
    warn_once(backend, f"funcgrad.jit: fused {backend} kernels are off, running array code "
              f"instead (set FUNCGRAD_BACKEND=numpy to choose that): {error}")


def _call_template(fn: str, in_place: bool, single: bool = False):
    """A call ``fn(*inputs, *output buffers)`` (None for outputs without a buffer; trailing
    Nones left out), which returns a tuple of outputs (``single``: take the one output)."""
    from .codegen_numpy import OUT, Template

    def emit(args, outs):
        while outs and outs[-1] is None:
            outs = outs[:-1]
        return f"{fn}({', '.join(args + [o or 'None' for o in outs])}){'[0]' if single else ''}"
    return Template(emit, OUT, in_place=in_place, every_output=True)


def kernel_template(fn_of: dict) -> Callable:
    """The code-generation template of ``fused_kernel`` equations: a call of the kernel's
    function, with reused buffers for the outputs that have one."""
    def rule(eqn, ns):
        kernel = eqn.params["kernel"]
        return _call_template(ns.add(fn_of[kernel], kernel.name), kernel.reads_in_place())
    return rule


def primitive_templates(fn_of: dict[Eqn, Callable | ImplCall], names: dict[Eqn, str]) -> dict:
    """Templates calling the primitive kernels of these equations, or running their
    :class:`ImplCall` (others of the same primitive keep their usual code)."""
    from .codegen_numpy import FRESH, TEMPLATES, VIEW, Template

    def template_for(prim):
        usual = TEMPLATES.get(prim)

        def rule(eqn, ns):
            fn = fn_of.get(eqn)
            if fn is None:
                return usual(eqn, ns) if usual is not None else None
            if isinstance(fn, ImplCall):
                run = ns.add(functools.partial(fn.run, ns.xp, fn.helpers), f"c_{prim.name}",
                             key=(id(fn.run), fn.helpers),
                             comment=f"{prim.name} calling the C++ helpers {names[eqn]}")
                return Template(lambda args, out: f"{run}({', '.join(args)})",
                                FRESH if prim.fresh_result else VIEW)
            return _call_template(ns.add(fn, f"c_{prim.name}", comment=f"the C++ kernel "
                                         f"{names[eqn]}"), in_place=False,
                                  single=not prim.multiple_results)
        return rule
    return {p: template_for(p) for p in {e.primitive for e in fn_of}}


def fuse(closed: ClosedJaxpr, name: str):
    """The C++ backend's fusion step (see :class:`~.pipeline.Backend`): fused kernels, and
    primitives' own kernels."""
    from .pipeline import Fused
    fused, kernels = fusion.fuse(closed)
    prims, calls = primitive_kernels(fused.jaxpr)
    if not kernels and not prims:
        return Fused(closed, {}, [])
    try:
        fns, prim_fns, unit = build(kernels, name, prims, calls)
    except cache.CompileError as e:
        fusion_off("C++", e)
        return Fused(closed, {}, [])
    names = {e: ", ".join(prims[k].name for k in call.helpers) if isinstance(call, ImplCall)
             else prims[call[0]].name for e, call in calls.items()}
    templates = {fusion.fused_kernel_p: kernel_template(dict(zip(kernels, fns))),
                 **primitive_templates(prim_fns, names)}
    shown = [describe(k, p) for k, p in zip([*kernels, *prims], unit.parts)]
    return Fused(fused, templates, shown)
