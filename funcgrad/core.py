"""The IR (jaxprs), primitives, tracing, and evaluation.

A *primitive* is an operation with a table of rules (impl, abstract_eval, jvp, transpose,
batch, ...), declared once in its family module under ``funcgrad/primitives/``. ``bind`` is
the one entry point: with no trace active it runs the impl on concrete arrays (eager mode);
under a trace it records an equation in the innermost trace and returns a :class:`Tracer`.

Tracers optionally know their concrete value. Traces made by ``grad``/``jvp`` outside ``jit``
give their inputs concrete values, and a tracer's value is computed lazily, only if Python
code asks for it (``bool(x)``, ``int(x)``, a boolean mask), so control flow on values works
while pure array code is traced once with no extra work. Traces made by ``jit`` are abstract:
asking for a value raises :class:`ConcretizationError`.

This module knows no particular primitive.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np

from . import dtypes

# ---------------------------------------------------------------------------------------------
# Abstract values

class ShapedArray:
    """The type of an array value: shape, dtype, and whether it is weakly typed."""

    __slots__ = ("shape", "dtype", "weak_type", "_hash")

    def __init__(self, shape: tuple[int, ...], dtype, weak_type: bool = False):
        self.shape = tuple(shape)
        self.dtype = dtype if type(dtype) is np.dtype else np.dtype(dtype)
        self.weak_type = weak_type
        self._hash = hash((self.shape, self.dtype, weak_type))

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape, dtype=np.int64)))

    def __eq__(self, other):
        return (type(other) is ShapedArray and self.shape == other.shape
                and self.dtype == other.dtype and self.weak_type == other.weak_type)

    def __hash__(self):
        return self._hash

    def update(self, shape=None, dtype=None, weak_type=None) -> "ShapedArray":
        return ShapedArray(self.shape if shape is None else shape,
                           self.dtype if dtype is None else dtype,
                           self.weak_type if weak_type is None else weak_type)

    def strip_weak_type(self) -> "ShapedArray":
        return self if not self.weak_type else ShapedArray(self.shape, self.dtype, False)

    def str_short(self) -> str:
        return f"{dtypes.short_name(self.dtype)}[{','.join(map(str, self.shape))}]"

    __str__ = str_short

    def __repr__(self):
        weak = ", weak_type=True" if self.weak_type else ""
        return f"ShapedArray({self.shape}, {self.dtype}{weak})"


def get_aval(x) -> ShapedArray:
    """The abstract value of a tracer, an array, or a Python scalar (weakly typed)."""
    if isinstance(x, Tracer):
        return x.aval
    if type(x) is Literal:
        return x.aval
    if type(x) in (bool, int, float, complex):
        return ShapedArray((), dtypes.python_scalar_dtype(x), True)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return ShapedArray(x.shape, x.dtype, False)
    raise TypeError(f"{type(x).__name__} is not a valid array value: {x!r:.60}")


def is_array(x) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "__cuda_array_interface__") and hasattr(x, "dtype"))


# ---------------------------------------------------------------------------------------------
# The IR

class Var:
    """A variable of a jaxpr. Identity is the object; names are given when printing."""

    __slots__ = ("aval",)

    def __init__(self, aval: ShapedArray):
        self.aval = aval

    def __repr__(self):
        return f"Var({self.aval})"


class Literal:
    """A scalar constant written inline in a jaxpr."""

    __slots__ = ("val", "aval")

    def __init__(self, val, aval: ShapedArray | None = None):
        if aval is None:
            aval = get_aval(val)
        self.val = np.asarray(val, aval.dtype) if type(val) is not np.ndarray else val
        self.aval = aval

    def __repr__(self):
        return f"Literal({self.val!r})"

    def key(self):
        return (self.val.item(), self.aval.dtype, self.aval.weak_type)


Atom = Var | Literal


class SourceInfo:
    """Where an equation came from: the user's file, line and function."""

    __slots__ = ("file", "line", "function")

    def __init__(self, file: str, line: int, function: str):
        self.file, self.line, self.function = file, line, function

    def __str__(self):
        return f"{os.path.basename(self.file)}:{self.line} ({self.function})"

    def long(self) -> str:
        return f'File "{self.file}", line {self.line}, in {self.function}'


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_source_info() -> SourceInfo | None:
    """The innermost stack frame outside the funcgrad package."""
    override = _state.source_info
    if override is not None:
        return override
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_PACKAGE_DIR):
        f = f.f_back
    if f is None:
        return None
    return SourceInfo(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)


class Eqn:
    """``outvars = primitive[params](*invars)``, with the user's source line."""

    __slots__ = ("primitive", "invars", "outvars", "params", "source_info")

    def __init__(self, primitive: "Primitive", invars: list[Atom], outvars: list[Var],
                 params: dict, source_info: SourceInfo | None):
        self.primitive = primitive
        self.invars = invars
        self.outvars = outvars
        self.params = params
        self.source_info = source_info

    def replace(self, **kw) -> "Eqn":
        fields = {s: getattr(self, s) for s in self.__slots__}
        fields.update(kw)
        return Eqn(**fields)

    def __repr__(self):
        return f"Eqn({self.primitive.name}, {len(self.invars)} in, {len(self.outvars)} out)"


class Jaxpr:
    """A typed, straight-line program: ``{ lambda constvars; invars. let eqns in outvars }``."""

    __slots__ = ("constvars", "invars", "eqns", "outvars")

    def __init__(self, constvars: list[Var], invars: list[Var], eqns: list[Eqn],
                 outvars: list[Atom]):
        self.constvars = list(constvars)
        self.invars = list(invars)
        self.eqns = list(eqns)
        self.outvars = list(outvars)

    in_avals = property(lambda self: [v.aval for v in self.invars])
    out_avals = property(lambda self: [v.aval for v in self.outvars])

    def __str__(self):
        return pp_jaxpr(self)

    __repr__ = __str__


class ClosedJaxpr:
    """A jaxpr together with the values of its constvars."""

    __slots__ = ("jaxpr", "consts", "__weakref__")   # compiled code is cached per jaxpr

    def __init__(self, jaxpr: Jaxpr, consts: Sequence):
        self.jaxpr = jaxpr
        self.consts = list(consts)
        if len(self.consts) != len(jaxpr.constvars):
            raise ValueError("ClosedJaxpr: consts do not match constvars")

    in_avals = property(lambda self: self.jaxpr.in_avals)
    out_avals = property(lambda self: self.jaxpr.out_avals)
    eqns = property(lambda self: self.jaxpr.eqns)

    def __call__(self, *args):
        return eval_jaxpr(self.jaxpr, self.consts, *args)

    def __str__(self):
        return pp_jaxpr(self.jaxpr)

    __repr__ = __str__


def jaxprs_in_params(params: dict) -> Iterable[Jaxpr]:
    """Sub-jaxprs held by an equation's params (control flow, calls)."""
    for v in params.values():
        for item in (v if isinstance(v, tuple) else (v,)):
            if isinstance(item, ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, Jaxpr):
                yield item


# ---------------------------------------------------------------------------------------------
# Pretty printing, in the style of JAX's jaxprs

def _var_names():
    letters = "abcdefghijklmnopqrstuvwxyz"
    for n in itertools.count(1):
        for combo in itertools.product(letters, repeat=n):
            yield "".join(combo)


class _Namer:
    def __init__(self):
        self.names: dict[Var, str] = {}
        self.gen = _var_names()

    def __call__(self, v: Atom) -> str:
        if isinstance(v, Literal):
            val = v.val.item()
            return repr(val) if v.aval.weak_type else f"{val!r}:{v.aval.str_short()}"
        name = self.names.get(v)
        if name is None:
            name = self.names[v] = next(self.gen)
        return name

    def binder(self, v: Var) -> str:
        return f"{self(v)}:{v.aval.str_short()}"


def _pp_param(value, indent: int) -> str:
    if isinstance(value, (Jaxpr, ClosedJaxpr)):
        j = value.jaxpr if isinstance(value, ClosedJaxpr) else value
        return "\n" + pp_jaxpr(j, indent + 4)
    if isinstance(value, tuple) and value and all(isinstance(x, (Jaxpr, ClosedJaxpr)) for x in value):
        return "(" + ",".join(_pp_param(x, indent) for x in value) + "\n" + " " * (indent + 2) + ")"
    if isinstance(value, np.dtype):
        return dtypes.short_name(value)
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return repr(value)


def pp_jaxpr(jaxpr: Jaxpr, indent: int = 0, source: bool = False) -> str:
    """Render a jaxpr; ``source=True`` appends each equation's user source line."""
    name = _Namer()
    pad = " " * indent
    consts = " ".join(name.binder(v) for v in jaxpr.constvars)
    ins = " ".join(name.binder(v) for v in jaxpr.invars)
    lines = [f"{pad}{{ lambda {consts}; {ins}. let"]
    for eqn in jaxpr.eqns:
        outs = " ".join(name.binder(v) for v in eqn.outvars) or "_"
        shown = [(k, v) for k, v in eqn.params.items() if v is not None]   # None: the default
        params = ""
        if shown:
            params = "[" + " ".join(f"{k}={_pp_param(v, indent + 4)}" for k, v in shown) + "]"
        args = " ".join(name(v) for v in eqn.invars)
        line = f"{pad}    {outs} = {eqn.primitive.name}{params} {args}".rstrip()
        if source and eqn.source_info is not None:
            line += f"    # {eqn.source_info}"
        lines.append(line)
    outs = ", ".join(name(v) for v in jaxpr.outvars)
    lines.append(f"{pad}  in ({outs}{',' if len(jaxpr.outvars) == 1 else ''}) }}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Errors

class FuncgradError(Exception):
    """Base class of funcgrad's own errors."""


class ConcretizationError(FuncgradError, TypeError):
    """Python needed the value of an abstract (traced) array."""


class UnexpectedTracerError(FuncgradError):
    """A tracer was used after the trace that made it ended (it leaked)."""


class TracerConversionError(FuncgradError, TypeError):
    """A traced value was converted to a non-traced type where that would lose derivatives."""


def _where(src: SourceInfo | None) -> str:
    return f" at {src}" if src is not None else ""


def type_error(prim_name: str, message: str, avals: Sequence[ShapedArray] = ()) -> TypeError:
    """A trace-time shape/dtype error naming the operation, its operand types and user line."""
    src = user_source_info()
    operands = ", ".join(a.str_short() for a in avals)
    full = f"{prim_name}: {message}"
    if avals:
        full += f" (operands: {operands})"
    full += _where(src)
    return TypeError(full)


# ---------------------------------------------------------------------------------------------
# Primitives

class Primitive:
    """An operation of the IR and the table of its rules.

    Rules (set by the primitive's family module, all in one place):
      impl(xp, *arrays, **params)               concrete evaluation; xp is numpy or cupy
      abstract_eval(*avals, **params)           -> aval (or list of avals)
      jvp(primals, tangents, **params)          -> (primal_out, tangent_out); tangents may be Zero
      transpose(cts, *args, **params)           -> cotangents for args that are UndefinedPrimal
      batch(args, dims, **params)               -> (out, out_dim); dims[i] is an int or None
      partial_eval(eqn, in_unknown)             only for primitives holding sub-jaxprs
      c_expr                                     elementwise C expression template (fusion)
      c_kernel(in_avals, out_avals, **params)   -> CKernel, CImpl or None: what the C backend
                                                 runs instead of impl (C++, or array code
                                                 calling C++ helpers)
    and one flag:
      fresh_result   impl returns arrays that share memory with no operand and no other
                     array (new buffers, or views covering one): compiled code may write
                     into them once they are dead
    """

    def __init__(self, name: str, multiple_results: bool = False):
        self.name = name
        self.multiple_results = multiple_results
        self.impl: Callable | None = None
        self.abstract_eval: Callable | None = None
        self.jvp: Callable | None = None
        self.transpose: Callable | None = None
        self.batch: Callable | None = None
        self.partial_eval: Callable | None = None
        self.c_expr: Any = None
        self.c_kernel: Callable | None = None
        self.fresh_result = False
        self.elementwise = False
        # Call primitives apply a ClosedJaxpr held in the param named ``callee`` to their
        # operands in order; ``inline`` says when the compiler may splice it into the caller:
        # "always", "execution" (only when generating code: no transform sees it again), "never".
        self.callee: str | None = None
        self.inline = "never"
        registry[name] = self

    def __repr__(self):
        return self.name

    def bind(self, *args, **params):
        stack = _state.stack
        if not stack:
            return self.impl(array_module(args), *args, **params)
        return stack[-1].process(self, args, params)


class CKernel(NamedTuple):
    """A primitive's C++ implementation, from its ``c_kernel`` rule (for given operand and
    result types and params). The work is ``rows`` independent rows of ``row_size`` items;
    ``body`` is C++ statements computing rows ``[r0, r1)``, with in scope: typed pointers
    ``in0, in1, ...`` (C-contiguous operands) and ``out0, ...`` (C-contiguous results, not
    initialized), and ``m``, the int64 array ``meta`` (values known only at run time, e.g.
    sizes, so that one compiled kernel serves many shapes). ``decls``: C++ definitions the
    body uses (namespace scope, private to the kernel); ``prelude``: definitions shared by
    many kernels, emitted once per translation unit. Code is plain C++ that CUDA device
    functions could run (no allocation, no library calls but math functions): a GPU would
    run each row in a thread of its own."""
    prelude: str
    decls: str
    body: str
    rows: int
    row_size: int
    meta: tuple[int, ...] = ()


class CHelper(NamedTuple):
    """C++ for array code to call (see :class:`CImpl`): code as in a :class:`CKernel`, with
    the work and ``meta`` given per call. ``strided``: the operands may have any strides
    (the code reads them from ``meta``), else they arrive C-contiguous."""
    prelude: str
    decls: str
    body: str
    in_dtypes: tuple[np.dtype, ...]
    out_dtypes: tuple[np.dtype, ...]
    strided: bool = False


class CImpl(NamedTuple):
    """A primitive run by the C backend as array code calling C++ helpers: the backend
    compiles ``helpers`` and runs ``run(xp, helpers, *operands)``, in which ``helpers[i]``
    is a function ``(rows, row_size, meta, out_shapes, *operands) -> tuple of results``."""
    helpers: tuple[CHelper, ...]
    run: Callable


registry: dict[str, Primitive] = {}
"""Every primitive by name (tests enumerate it to check that each has all its rules)."""


def array_module(args: Sequence):
    """numpy, or cupy when any argument is a cupy array. Rejects leaked tracers."""
    for a in args:
        if type(a) is Tracer:
            raise _leaked_error(a)
    if "cupy" in sys.modules:
        cupy = sys.modules["cupy"]
        for a in args:
            if isinstance(a, cupy.ndarray):
                return cupy
    return np


# ---------------------------------------------------------------------------------------------
# Traces and tracers

class _State(threading.local):
    def __init__(self):
        self.stack: list[Trace] = []
        self.source_info: SourceInfo | None = None


_state = _State()


def is_tracing() -> bool:
    return bool(_state.stack)


def current_trace() -> "Trace | None":
    """The innermost active trace, if any."""
    return _state.stack[-1] if _state.stack else None


class _NoValue:
    def __repr__(self):
        return "<no value>"


NO_VALUE = _NoValue()


class Trace:
    """Records equations into a jaxpr. One trace per ``make_jaxpr``/transform invocation."""

    _ids = itertools.count()

    def __init__(self, kind: str = "trace"):
        self.kind = kind                     # names the transform in error messages
        self.level = len(_state.stack)
        self.id = next(Trace._ids)
        self.alive = True
        self.eqns: list[Eqn] = []
        self.invars: list[Var] = []
        self.constvars: list[Var] = []
        self.const_vals: list = []
        self._const_index: dict[int, Var] = {}
        self.values: dict[Var, Any] = {}     # concrete values known or computed so far
        self.producer: dict[Var, Eqn] = {}
        self.label_of: Callable[[int], str] | None = None   # input index -> argument name
        self.value_dependent = False

    # -- building ------------------------------------------------------------------------

    def new_arg(self, aval: ShapedArray, value: Any = NO_VALUE) -> "Tracer":
        v = Var(aval)
        self.invars.append(v)
        if value is not NO_VALUE:
            self.values[v] = value
        return Tracer(self, v)

    def to_atom(self, x) -> Atom:
        t = type(x)
        if t is Tracer:
            if x._trace is self:
                return x.ir_var
            if not x._trace.alive:
                raise _leaked_error(x)
            return self._const(x)              # an outer trace's value: a const of this one
        if t is Literal:
            return x
        if t in (float, int, bool, complex):
            return Literal(x)
        if t is np.ndarray:
            if x.ndim == 0:
                return Literal(x)
            return self._const(x)
        if isinstance(x, np.generic):
            return Literal(np.asarray(x))
        if is_array(x):
            return self._const(x)
        raise TypeError(f"{type(x).__name__} is not a valid array value: {x!r:.80}")

    def const(self, x) -> "Tracer":
        """``x`` (a concrete array) as a constant of this trace."""
        return Tracer(self, self._const(x))

    def _const(self, x) -> Var:
        v = self._const_index.get(id(x))
        if v is None:
            v = Var(get_aval(x).strip_weak_type() if type(x) is not Tracer else x.aval)
            self._const_index[id(x)] = v
            self.constvars.append(v)
            self.const_vals.append(x)
            self.values[v] = x
        return v

    def process(self, prim: Primitive, args: Sequence, params: dict):
        invars = [self.to_atom(a) for a in args]
        in_avals = [v.aval for v in invars]
        out = prim.abstract_eval(*in_avals, **params)
        src = user_source_info()
        if prim.multiple_results:
            outvars = [Var(a) for a in out]
        else:
            outvars = [Var(out)]
        eqn = Eqn(prim, invars, outvars, params, src)
        self.eqns.append(eqn)
        producer = self.producer
        for v in outvars:
            producer[v] = eqn
        if prim.multiple_results:
            return [Tracer(self, v) for v in outvars]
        return Tracer(self, outvars[0])

    def to_jaxpr(self, outs: Sequence) -> ClosedJaxpr:
        outvars = [self.to_atom(x) for x in outs]
        jaxpr = Jaxpr(self.constvars, self.invars, self.eqns, outvars)
        return ClosedJaxpr(jaxpr, self.const_vals)

    # -- concrete values -----------------------------------------------------------------

    def concrete_value(self, var: Var, why: str):
        """The value of ``var``, evaluating its producers on demand; raises if abstract."""
        values = self.values
        if var in values:
            return _concrete(values[var], why)
        todo = [var]
        prev, _state.stack = _state.stack, []     # impls run eagerly, whatever is being traced
        try:
            while todo:
                v = todo[-1]
                if v in values:
                    todo.pop()
                    continue
                eqn = self.producer.get(v)
                if eqn is None:
                    raise _concretization_error(self, v, why)
                missing = [u for u in eqn.invars if type(u) is Var and u not in values]
                if missing:
                    todo.extend(missing)
                    continue
                args = [_concrete(values[u], why) if type(u) is Var else u.val for u in eqn.invars]
                outs = eqn.primitive.bind(*args, **eqn.params)
                for o, val in zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]):
                    values[o] = val
                todo.pop()
        finally:
            _state.stack = prev
        return _concrete(values[var], why)


def _concrete(x, why: str):
    if type(x) is Tracer:
        return x._trace.concrete_value(x.ir_var, why)
    return x


def _concretization_error(trace: Trace, var: Var, why: str) -> ConcretizationError:
    label = None
    if trace.label_of is not None and var in trace.invars:
        label = trace.label_of(trace.invars.index(var))
    src = user_source_info()
    origin = f" (it depends on argument `{label}`)" if label else ""
    if trace.kind == "vmap":
        cause = "the value is batched under vmap, so it has no single value"
    else:
        cause = f"the value is abstract inside {trace.kind}"
    return ConcretizationError(
        f"{why}{_where(src)}: {cause}{origin}.\n"
        "Python control flow and conversions need a concrete value. Use funcgrad.lax.cond, "
        "funcgrad.lax.while_loop or funcgrad.numpy.where for value-dependent control flow, or "
        "mark the argument static with jit(f, static_argnums=...).")


def _leaked_error(t: "Tracer") -> UnexpectedTracerError:
    eqn = t._trace.producer.get(t.ir_var)
    made = f", created at {eqn.source_info}" if eqn is not None and eqn.source_info else ""
    return UnexpectedTracerError(
        f"A traced value {t.aval.str_short()}{made} was used after the {t._trace.kind} that "
        "created it finished (a leaked tracer). Return values out of transformed functions "
        "instead of storing them in globals or closures.")


class Tracer:
    """A value being traced: stands for an IR variable, behaves like an ndarray.

    Arithmetic operators and ndarray methods are installed by ``funcgrad.numpy``.
    """

    __slots__ = ("_trace", "ir_var")
    __array_priority__ = 1000
    __hash__ = None     # like arrays: not hashable, so `x in set_of_tracers` is an error

    def __init__(self, trace: Trace, var: Var):
        self._trace = trace
        self.ir_var = var

    aval = property(lambda self: self.ir_var.aval)
    shape = property(lambda self: self.ir_var.aval.shape)
    dtype = property(lambda self: self.ir_var.aval.dtype)
    ndim = property(lambda self: len(self.ir_var.aval.shape))
    size = property(lambda self: self.ir_var.aval.size)
    weak_type = property(lambda self: self.ir_var.aval.weak_type)

    def concrete_value(self, why: str = "a concrete value was needed"):
        """The value, computed if needed; marks the trace as value-dependent."""
        trace = self._trace
        if not trace.alive:
            raise _leaked_error(self)
        val = trace.concrete_value(self.ir_var, why)
        t = self
        while type(t) is Tracer:             # this trace and the ones the value came from
            t._trace.value_dependent = True
            t = t._trace.values.get(t.ir_var)
        return val

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"The truth value of an array of shape {self.shape} is ambiguous. "
                             "Use .any() or .all().")
        return bool(self.concrete_value(f"bool() of a traced {self.aval.str_short()}"))

    def __int__(self):
        return int(self.concrete_value(f"int() of a traced {self.aval.str_short()}"))

    def __index__(self):
        if not dtypes.is_integer(self.dtype):
            raise TypeError(f"only integer arrays can be used as an index, got {self.aval.str_short()}")
        return int(self.concrete_value(f"a traced {self.aval.str_short()} used as an index"))

    def __float__(self):
        raise TracerConversionError(
            f"float() of a traced {self.aval.str_short()}{_where(user_source_info())}: converting "
            "a traced value to a Python float would silently drop it from the computation. Keep "
            "it an array, or return it from the function and convert the result.")

    __complex__ = __float__

    def __array__(self, dtype=None, copy=None):
        if not self._trace.alive:
            raise _leaked_error(self)
        raise TracerConversionError(
            f"a traced {self.aval.str_short()} was converted to a numpy array"
            f"{_where(user_source_info())}. Inside funcgrad transforms use funcgrad.numpy "
            "(or numpy functions on the traced value, which dispatch to it) instead of "
            "numpy.array/asarray on traced values. To index a NumPy array with a traced "
            "index, convert the array first: funcgrad.numpy.asarray(table)[i].")

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of unsized object (a traced scalar)")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self):
        trace = self._trace
        if trace.alive and self.ir_var in trace.values and type(trace.values[self.ir_var]) is not Tracer:
            return f"Traced<{self.aval.str_short()}>(value={trace.values[self.ir_var]!r})"
        return f"Traced<{self.aval.str_short()}>"


# ---------------------------------------------------------------------------------------------
# Tracing a Python function into a jaxpr

def trace_flat(fun: Callable, in_avals: Sequence[ShapedArray], in_values: Sequence | None = None,
               label_of: Callable[[int], str] | None = None, kind: str = "trace"):
    """Trace ``fun(*flat_args) -> flat list of outputs`` into a ClosedJaxpr.

    ``in_values`` (entries may be NO_VALUE) give inputs concrete values; ``label_of(i)`` names
    input ``i`` in error messages (computed only if needed). Returns
    ``(closed_jaxpr, value_dependent)``.
    """
    trace = Trace(kind)
    trace.label_of = label_of
    values = in_values if in_values is not None else [NO_VALUE] * len(in_avals)
    args = [trace.new_arg(a, v) for a, v in zip(in_avals, values)]
    _state.stack.append(trace)
    prev_src, _state.source_info = _state.source_info, None
    try:
        outs = fun(*args)
    finally:
        _state.stack.pop()
        _state.source_info = prev_src
    try:
        closed = trace.to_jaxpr(outs)
    finally:
        trace.alive = False
    return closed, trace.value_dependent


# ---------------------------------------------------------------------------------------------
# Evaluation

def eval_jaxpr(jaxpr: Jaxpr, consts: Sequence, *args) -> list:
    """Run a jaxpr by binding each equation's primitive: eagerly, or into an outer trace."""
    env: dict[Var, Any] = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    state = _state
    prev = state.source_info
    try:
        for eqn in jaxpr.eqns:
            state.source_info = eqn.source_info
            invals = [env[v] if type(v) is Var else v.val for v in eqn.invars]
            outs = eqn.primitive.bind(*invals, **eqn.params)
            if eqn.primitive.multiple_results:
                env.update(zip(eqn.outvars, outs))
            else:
                env[eqn.outvars[0]] = outs
    finally:
        state.source_info = prev
    return [env[v] if type(v) is Var else v.val for v in jaxpr.outvars]


class source_info_from:
    """Context: equations bound inside are attributed to ``eqn``'s user source line."""

    __slots__ = ("src", "prev")

    def __init__(self, src: SourceInfo | None):
        self.src = src

    def __enter__(self):
        self.prev = _state.source_info
        if self.src is not None:
            _state.source_info = self.src

    def __exit__(self, *exc):
        _state.source_info = self.prev


def dce_jaxpr(jaxpr: Jaxpr) -> Jaxpr:
    """Drop the equations none of whose outputs are used (primitives have no side effects)."""
    live = {v for v in jaxpr.outvars if type(v) is Var}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in live for v in eqn.outvars):
            kept.append(eqn)
            live.update(v for v in eqn.invars if type(v) is Var)
    if len(kept) == len(jaxpr.eqns):
        return jaxpr
    return Jaxpr(jaxpr.constvars, jaxpr.invars, kept[::-1], jaxpr.outvars)


# ---------------------------------------------------------------------------------------------
# Checking

class JaxprTypeError(FuncgradError, TypeError):
    """A jaxpr is ill-typed or uses a variable out of scope (a bug in a transform)."""


def check_jaxpr(jaxpr: Jaxpr | ClosedJaxpr) -> None:
    """Verify scoping (each var bound once, before use) and types (each eqn's outputs match
    its primitive's abstract_eval). Recurses into sub-jaxprs."""
    if isinstance(jaxpr, ClosedJaxpr):
        for v, c in zip(jaxpr.jaxpr.constvars, jaxpr.consts):
            aval = get_aval(c)
            if aval.shape != v.aval.shape or aval.dtype != v.aval.dtype:
                raise JaxprTypeError(f"const of type {aval} bound to constvar of type {v.aval}")
        jaxpr = jaxpr.jaxpr
    defined: set[Var] = set()

    def bind_var(v):
        if type(v) is not Var:
            raise JaxprTypeError(f"binder {v!r} is not a Var")
        if v in defined:
            raise JaxprTypeError(f"variable {v} bound twice")
        defined.add(v)

    def read(a):
        if type(a) is Literal:
            if a.val.shape != () or a.val.dtype != a.aval.dtype:
                raise JaxprTypeError(f"literal {a.val!r} does not match its type {a.aval}")
            return a.aval
        if a not in defined:
            raise JaxprTypeError(f"variable {a} used before it is bound")
        return a.aval

    for v in jaxpr.constvars + jaxpr.invars:
        bind_var(v)
    for eqn in jaxpr.eqns:
        in_avals = [read(a) for a in eqn.invars]
        try:
            out = eqn.primitive.abstract_eval(*in_avals, **eqn.params)
        except TypeError as e:
            raise JaxprTypeError(f"in equation {eqn.primitive.name}: {e}") from e
        outs = out if eqn.primitive.multiple_results else [out]
        if len(outs) != len(eqn.outvars):
            raise JaxprTypeError(f"{eqn.primitive.name}: {len(outs)} results, {len(eqn.outvars)} binders")
        for v, a in zip(eqn.outvars, outs):
            if v.aval.shape != a.shape or v.aval.dtype != a.dtype:
                raise JaxprTypeError(f"{eqn.primitive.name}: binder type {v.aval} but rule "
                                     f"gives {a}")
            bind_var(v)
        for sub in jaxprs_in_params(eqn.params):
            check_jaxpr(sub)
    for a in jaxpr.outvars:
        read(a)
