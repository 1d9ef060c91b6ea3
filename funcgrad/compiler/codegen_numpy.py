"""Code generation: a jaxpr becomes one straight-line Python function over an array module.

Each equation becomes one line, ``outs = <call>``, named after the IR variables and commented
with the primitive, the result type and the user's source line. Primitives with a template
below get a direct call (a ufunc, ``matmul``, a ufunc reduction, a view); every other
primitive -- including the ones that hold sub-jaxprs -- calls its ``impl`` with its params.

Buffers. Templates of kind ``OUT`` write into an ``out`` buffer when a dead one of the same
shape and dtype exists: a buffer this function allocated, that no later equation reads
(through any view of it), or a donated input, but only for a result the function returns.
Inputs, consts, views, and results of ``impl`` calls are never written to -- except those of
primitives declaring ``fresh_result`` (their impl returns new arrays).

Errors raised by a line are annotated (``add_note``) with the equation and the user's
source line it was traced from.

Fusion backends plug in through the ``templates`` argument of :func:`generate`: a template
for their kernel-call primitive (kind ``OUT``, so kernels write into reused buffers too).
"""
from __future__ import annotations

import functools
import itertools
import keyword
import linecache
import operator
import weakref
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from .. import core
from ..core import ClosedJaxpr, Eqn, Literal, Var
from ..interpreters import ad
from ..primitives import elementwise as ew, linalg, reduction as red, structural as st
from .passes import literal_key

# Template kinds: what a line's result is, for buffer reuse.
OUT = "out"        # a fresh array; the call takes an ``out`` buffer as its last argument
FRESH = "fresh"    # a fresh array; no ``out`` argument
VIEW = "view"      # may share memory with the inputs (views, most ``impl`` calls)


class Template(NamedTuple):
    """How to emit one equation: ``emit(args, out) -> expression`` (``out`` is a variable
    name or None), the kind of result, and whether ``out`` may be one of the inputs.
    ``every_output``: every result of an ``OUT`` template may take a buffer, and ``out`` is
    a list (a name or None per result)."""
    emit: Callable[[list[str], str | None], str]
    kind: str
    in_place: bool = False
    every_output: bool = False


TemplateRule = Callable[[Eqn, "Namespace"], Template | None]
"""Chooses a template for an equation, or None for the generic ``impl`` call."""


class Namespace:
    """The globals of a generated function: each object gets one readable name."""

    def __init__(self, xp):
        self.xp = xp
        self.values: dict[str, Any] = {}
        self._names: dict[Any, str] = {}
        self.comments: list[str] = []
        self._literals = 0

    def add(self, obj, name: str, key=None, comment: str | None = None) -> str:
        key = id(obj) if key is None else key
        found = self._names.get(key)
        if found is not None:
            return found
        base, n = name, itertools.count(2)
        while name in self.values:
            name = f"{base}{next(n)}"
        self.values[name] = obj
        self._names[key] = name
        if comment:
            self.comments.append(f"{name} = {comment}")
        return name

    def xp_fn(self, attr: str) -> str:
        """A function of the array module, e.g. ``add.reduce`` -> ``numpy_add_reduce``."""
        fn = operator.attrgetter(attr)(self.xp)
        return self.add(fn, f"{self.xp.__name__}_{attr.replace('.', '_')}", key=("xp", attr))

    def dtype(self, dtype: np.dtype) -> str:
        return self.add(dtype, f"dtype_{dtype.name}", key=("dtype", dtype))

    def literal(self, lit: Literal) -> str:
        """A 0-d array of the literal's dtype (ufuncs take those much faster than Python
        scalars, and they keep the dtype where every operand is a scalar)."""
        key = ("lit", literal_key(lit))
        if key in self._names:
            return self._names[key]
        value = self.xp.asarray(lit.val, dtype=lit.aval.dtype)
        self._literals += 1
        return self.add(value, f"lit{self._literals - 1}", key=key,
                        comment=f"{lit.val.item()!r}:{lit.aval.str_short()}")


# ---------------------------------------------------------------------------------------------
# Templates

def _call(fn: str, args: list[str], out: str | None, out_keyword: bool = False) -> str:
    """A call with ``out`` last: positional where allowed (it is the faster way)."""
    if out:
        args = args + [f"out={out}" if out_keyword else out]
    return f"{fn}({', '.join(args)})"


def _ufunc(name: str) -> TemplateRule:
    # numpy deprecates a positional `out` for maximum/minimum (they may become variadic).
    keyword = name in ("maximum", "minimum")

    def rule(eqn, ns):
        fn = ns.xp_fn(name)
        return Template(lambda args, out: _call(fn, args, out, keyword), OUT, in_place=True)
    return rule


UFUNCS = {
    ew.add_p: "add", ew.sub_p: "subtract", ew.mul_p: "multiply", ew.div_p: "true_divide",
    ew.max_p: "maximum", ew.min_p: "minimum", ew.pow_p: "power", ew.atan2_p: "arctan2",
    ew.rem_p: "remainder", ew.floor_divide_p: "floor_divide", ew.nextafter_p: "nextafter",
    ew.eq_p: "equal", ew.ne_p: "not_equal", ew.lt_p: "less", ew.le_p: "less_equal",
    ew.gt_p: "greater", ew.ge_p: "greater_equal", ew.and_p: "bitwise_and",
    ew.or_p: "bitwise_or", ew.xor_p: "bitwise_xor", ew.shift_left_p: "left_shift",
    ew.shift_right_p: "right_shift", ew.exp_p: "exp", ew.exp2_p: "exp2", ew.expm1_p: "expm1",
    ew.log_p: "log", ew.log1p_p: "log1p", ew.log2_p: "log2", ew.log10_p: "log10",
    ew.sqrt_p: "sqrt", ew.cbrt_p: "cbrt", ew.sin_p: "sin", ew.cos_p: "cos", ew.tan_p: "tan",
    ew.asin_p: "arcsin", ew.acos_p: "arccos", ew.atan_p: "arctan", ew.sinh_p: "sinh",
    ew.cosh_p: "cosh", ew.tanh_p: "tanh", ew.asinh_p: "arcsinh", ew.acosh_p: "arccosh",
    ew.atanh_p: "arctanh", ew.floor_p: "floor", ew.ceil_p: "ceil", ew.sign_p: "sign",
    ew.is_finite_p: "isfinite", ew.abs_p: "absolute", ew.neg_p: "negative",
    ew.not_p: "invert",
}
"""Elementwise primitives whose impl is exactly this ufunc of the array module."""


def _round(eqn, ns):
    # numpy.round of a float array with 0 decimals is the rint ufunc (half to even).
    return _ufunc("rint")(eqn, ns) if eqn.invars[0].aval.dtype.kind == "f" else None


def _integer_pow(eqn, ns):
    x, y = eqn.invars[0], eqn.params["y"]
    if y == 2:
        fn = ns.xp_fn("multiply")
        return Template(lambda args, out: _call(fn, [args[0], args[0]], out), OUT, in_place=True)
    if y < 0 and x.aval.dtype.kind in "iu":
        return None                  # the impl raises numpy's error
    fn = ns.xp_fn("power")
    exponent = ns.literal(Literal(np.asarray(y, x.aval.dtype), x.aval.strip_weak_type()))
    return Template(lambda args, out: _call(fn, [args[0], exponent], out), OUT, in_place=True)


REDUCERS = {
    red.reduce_sum_p: ("add", True), red.reduce_prod_p: ("multiply", True),
    red.reduce_max_p: ("maximum", False), red.reduce_min_p: ("minimum", False),
    red.reduce_and_p: ("logical_and", False), red.reduce_or_p: ("logical_or", False),
}
"""Reductions as ``ufunc.reduce(x, axes, dtype, out)``; True: pass the dtype (sums of small
integers would otherwise widen)."""


def _reduce(eqn, ns):
    axes = eqn.params["axes"]
    if not axes:
        return None
    name, pass_dtype = REDUCERS[eqn.primitive]
    fn = ns.xp_fn(f"{name}.reduce")
    dtype = ns.dtype(eqn.outvars[0].aval.dtype) if pass_dtype else "None"
    return Template(lambda args, out: _call(fn, [args[0], repr(axes), dtype], out), OUT)


def _dot_general(eqn, ns):
    """dot_general as ``matmul`` (with transposed operand views) where the layout allows."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars
    nl, nr, nb = lhs.aval.ndim, rhs.aval.ndim, len(lb)
    pet = eqn.params.get("preferred_element_type")
    if pet is not None and pet != lhs.aval.dtype:
        return None
    if all(lhs.aval.shape[i] == 1 for i in lc):
        return _outer_product(eqn, ns)
    if len(lc) != 1 or lhs.aval.dtype.kind == "b":
        return None
    if nb:
        if lb != tuple(range(nb)) or rb != lb or nl != nb + 2 or nr != nb + 2:
            return None
    elif not (1 <= nl <= 2 and 1 <= nr <= 2):
        return None
    # matmul contracts the last axis of lhs with the second-to-last (or only) axis of rhs.
    lhs_t = nl - nb == 2 and lc[0] == nb
    rhs_t = nr - nb == 2 and rc[0] == nr - 1
    fn = ns.xp_fn("matmul")

    def emit(args, out):
        a, b = args
        a = f"{a}.swapaxes(-1, -2)" if lhs_t else a
        b = f"{b}.swapaxes(-1, -2)" if rhs_t else b
        return _call(fn, [a, b], out)

    return Template(emit, OUT)


def _outer_product(eqn, ns):
    """A dot_general contracting one element (or none) as a broadcasting ``multiply`` of
    operand views (``matmul`` with a contraction of length 1 is several times slower)."""
    lhs, rhs = eqn.invars
    views = linalg.outer_product_operands(lhs.aval.shape, rhs.aval.shape,
                                          eqn.params["dimension_numbers"])
    fn = ns.xp_fn("multiply")

    def view(arg, perm, shape):
        moved = f"{arg}.transpose({perm!r})" if perm != tuple(range(len(perm))) else arg
        return f"{moved}.reshape({shape!r})"

    return Template(lambda args, out: _call(fn, [view(a, *v) for a, v in zip(args, views)], out),
                    OUT)


def _select(eqn, ns):
    fn = ns.xp_fn("where")
    return Template(lambda args, out: _call(fn, args, None), FRESH)


def _convert(eqn, ns):
    dtype = ns.dtype(eqn.params["new_dtype"])
    return Template(lambda args, out: f"{args[0]}.astype({dtype})", FRESH)


def _reshape(eqn, ns):
    shape = eqn.outvars[0].aval.shape
    return Template(lambda args, out: f"{args[0]}.reshape({shape!r})", VIEW)


def _transpose(eqn, ns):
    perm = eqn.params["permutation"]
    return Template(lambda args, out: f"{args[0]}.transpose({perm!r})", VIEW)


def _broadcast_in_dim(eqn, ns):
    shape, dims = eqn.params["shape"], eqn.params["broadcast_dimensions"]
    x = eqn.invars[0].aval
    fn = ns.xp_fn("broadcast_to")
    aligned = dims == tuple(range(len(shape) - x.ndim, len(shape)))
    expanded = [1] * len(shape)
    for i, d in enumerate(dims):
        expanded[d] = x.shape[i]

    def emit(args, out):
        src = args[0] if aligned else f"{args[0]}.reshape({tuple(expanded)!r})"
        return f"{fn}({src}, {shape!r})"

    return Template(emit, VIEW)


def _identity(eqn, ns):
    return Template(lambda args, out: args[0], VIEW)


TEMPLATES: dict[core.Primitive, TemplateRule] = {
    **{p: _ufunc(name) for p, name in UFUNCS.items()},
    ad.add_any_p: _ufunc("add"),
    ew.round_p: _round,
    ew.integer_pow_p: _integer_pow,
    ew.select_p: _select,
    ew.convert_element_type_p: _convert,
    ew.stop_gradient_p: _identity,      # only matters to differentiation, done by now
    **{p: _reduce for p in REDUCERS},
    linalg.dot_general_p: _dot_general,
    st.reshape_p: _reshape,
    st.squeeze_p: _reshape,
    st.expand_dims_p: _reshape,
    st.transpose_p: _transpose,
    st.broadcast_in_dim_p: _broadcast_in_dim,
}
"""Dedicated code per primitive, where a direct call pays; the rest call their ``impl``."""


def _impl_call(eqn: Eqn, ns: Namespace) -> Template:
    prim, params = eqn.primitive, eqn.params
    fn = functools.partial(prim.impl, ns.xp, **params)
    shown = ", ".join(f"{k}={_param_summary(v)}" for k, v in params.items())
    name = ns.add(fn, f"impl_{prim.name}", key=("impl", prim, _params_key(params)),
                  comment=f"{prim.name}.impl({ns.xp.__name__}{', ' if shown else ''}{shown})")
    return Template(lambda args, out: _call(name, args, None), FRESH if prim.fresh_result else VIEW)


def _param_summary(value) -> str:
    """A one-line rendering of a param for a comment (sub-jaxprs by their types)."""
    if isinstance(value, (core.Jaxpr, ClosedJaxpr)):
        ins = ", ".join(a.str_short() for a in value.in_avals)
        outs = ", ".join(a.str_short() for a in value.out_avals)
        return f"{{jaxpr ({ins}) -> ({outs})}}"
    if isinstance(value, tuple) and any(isinstance(v, (core.Jaxpr, ClosedJaxpr)) for v in value):
        return "(" + ", ".join(map(_param_summary, value)) + ")"
    text = core._pp_param(value, 0).strip()
    return text if "\n" not in text else " ".join(text.split())


def _params_key(params: dict):
    try:
        key = tuple(sorted(params.items()))
        hash(key)
        return key
    except TypeError:
        return id(params)


# ---------------------------------------------------------------------------------------------
# Buffer planning


def plan_buffers(jaxpr, templates: Sequence[Template], donated: Sequence[bool]) -> dict[int, Var | list]:
    """For each equation index whose result goes into an existing buffer, the variable that
    holds that buffer (a list of them, or None, per result for ``every_output`` templates;
    see the module docstring for the rules)."""
    eqns = jaxpr.eqns
    never = len(eqns)
    last_use: dict[Var, int] = {}
    for i, e in enumerate(eqns):
        for a in e.invars:
            if type(a) is Var:
                last_use[a] = i
    for a in jaxpr.outvars:
        if type(a) is Var:
            last_use[a] = never

    # Which logical buffers each variable may reference. A buffer is named by the variable
    # that first held it (an input, or the result of a line that allocates).
    # A buffer dies after the last line reading any variable that may reference it (a
    # result nobody reads dies on its own line).
    aliases: dict[Var, tuple[Var, ...]] = {v: (v,) for v in jaxpr.invars}
    end: dict[Var, int] = {v: -1 for v in jaxpr.invars}
    reusable: set[Var] = {v for v, d in zip(jaxpr.invars, donated) if d and v.aval.ndim}
    for i, (e, t) in enumerate(zip(eqns, templates)):
        if t.kind == VIEW:
            shared = tuple({b for a in e.invars if type(a) is Var for b in aliases.get(a, ())})
            for v in e.outvars:
                aliases[v] = shared
        else:
            for v in e.outvars:
                aliases[v] = (v,)
                end[v] = i
                if v.aval.ndim:
                    reusable.add(v)
    for v, bufs in aliases.items():
        t = last_use.get(v, -1)
        for b in bufs:
            if t > end[b]:
                end[b] = t
    ends_at: dict[int, list[Var]] = {}
    for b, t in end.items():
        if b in reusable and 0 <= t < never:
            ends_at.setdefault(t, []).append(b)

    donated_set = {v for v, d in zip(jaxpr.invars, donated) if d}
    pool: dict[tuple, list[Var]] = {}
    donor_pool: dict[tuple, list[Var]] = {}
    plan: dict[int, Var | list] = {}

    def release(bufs):
        for b in bufs:
            (donor_pool if b in donated_set else pool).setdefault((b.aval.shape, b.aval.dtype), []).append(b)

    for i, (e, t) in enumerate(zip(eqns, templates)):
        dying = ends_at.get(i, [])
        outs = set(e.outvars)
        if t.in_place:
            release([b for b in dying if b not in outs])
        if t.kind == OUT and e.outvars:
            chosen = []
            for out in (e.outvars if t.every_output else e.outvars[:1]):
                key = (out.aval.shape, out.aval.dtype)
                source = donor_pool if last_use.get(out) == never and donor_pool.get(key) else pool
                chosen.append(source[key].pop() if out.aval.ndim and source.get(key) else None)
            if any(b is not None for b in chosen):
                plan[i] = chosen if t.every_output else chosen[0]
        release([b for b in dying if (b in outs or not t.in_place)])
    return plan


# ---------------------------------------------------------------------------------------------
# The generated function


class Executable(NamedTuple):
    """A generated function and its source."""
    fn: Callable
    source: str
    name: str


_counter = itertools.count()


def _var_names():
    for name in core._var_names():
        yield name + "_" if keyword.iskeyword(name) else name


def generate(closed: ClosedJaxpr, xp=np, name: str = "jitted", donated: Sequence[bool] = (),
             templates: dict[core.Primitive, TemplateRule] | None = None,
             returns: str = "list") -> Executable:
    """Generate ``fn(*invars) -> outvars``, returned as a "list", a "tuple", or the "single"
    result.

    ``donated[i]``: input i may be overwritten by a result the function returns.
    ``templates`` extend or override :data:`TEMPLATES` (fusion backends add their kernels).
    """
    jaxpr = closed.jaxpr
    table = TEMPLATES if templates is None else {**TEMPLATES, **templates}
    donated = list(donated) + [False] * (len(jaxpr.invars) - len(donated))
    ns = Namespace(xp)
    names: dict[Var, str] = {}
    gen = _var_names()
    for v, c in zip(jaxpr.constvars, closed.consts):
        names[v] = next(gen)
        ns.values[names[v]] = c
    params = []
    for v in jaxpr.invars:
        names[v] = next(gen)
        params.append(names[v])
    chosen = []
    for e in jaxpr.eqns:
        rule = table.get(e.primitive)
        chosen.append((rule(e, ns) if rule is not None else None) or _impl_call(e, ns))
        for v in e.outvars:
            names[v] = next(gen)
    plan = plan_buffers(jaxpr, chosen, donated)

    def atom(a) -> str:
        return names[a] if type(a) is Var else ns.literal(a)

    body: list[str] = []
    line_eqns: dict[int, Eqn] = {}
    for v in jaxpr.invars:                 # Python scalars arrive for weakly typed inputs
        if v.aval.weak_type and not v.aval.shape:
            body.append(f"{names[v]} = {ns.xp_fn('asarray')}({names[v]}, {ns.dtype(v.aval.dtype)})")
    for i, (e, t) in enumerate(zip(jaxpr.eqns, chosen)):
        if t.every_output:
            out = [names[b] if b is not None else None for b in plan.get(i, [None] * len(e.outvars))]
        else:
            out = names[plan[i]] if i in plan else None
        expr = t.emit([atom(a) for a in e.invars], out)
        lhs = ", ".join(names[v] for v in e.outvars)
        if e.primitive.multiple_results:
            lhs = "_" if not e.outvars else lhs + ("," if len(e.outvars) == 1 else "")
        types = " ".join(v.aval.str_short() for v in e.outvars)
        where = f"  {e.source_info}" if e.source_info is not None else ""
        code = f"{lhs} = {expr}"
        body.append(f"{code:<44s} # {e.primitive.name} -> {types}{where}")
        line_eqns[len(body)] = e
    # Results are fresh, writable arrays: never a shared const or literal, nor a read-only
    # broadcast view (as `numpy.ones` would be).
    constvars = set(jaxpr.constvars)
    broadcasts = {v for e in jaxpr.eqns if e.primitive is st.broadcast_in_dim_p for v in e.outvars}
    results = [f"{atom(a)}.copy()" if type(a) is Literal or a in constvars or a in broadcasts
               else names[a] for a in jaxpr.outvars]
    if returns == "single":
        ret = results[0]
    elif returns == "tuple":
        ret = f"({', '.join(results)}{',' if len(results) == 1 else ''})"
    else:
        ret = f"[{', '.join(results)}]"

    fn_name = name if name.isidentifier() and not keyword.iskeyword(name) else "jitted"
    while fn_name in ns.values:                 # a const of the same name is a global too
        fn_name += "_"
    filename = f"<funcgrad.jit {fn_name} #{next(_counter)}>"
    header = [f"def {fn_name}({', '.join(params)}):"]
    header += [f"    # {c}" for c in ns.comments]
    first_body_line = len(header) + 2           # after "try:"
    lines = header + ["    try:"] + [f"        {b}" for b in body] + [
        f"        return {ret}",
        "    except Exception as exc_:",
        "        annotate_error(exc_)",
        "        raise"]
    source = "\n".join(lines) + "\n"
    by_line = {first_body_line + k - 1: e for k, e in line_eqns.items()}
    ns.values["annotate_error"] = _annotator(filename, by_line, fn_name)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), ns.values)
    fn = ns.values[fn_name]
    weakref.finalize(fn, linecache.cache.pop, filename, None)   # tracebacks show the source
    return Executable(fn, source, fn_name)


def _annotator(filename: str, by_line: dict[int, Eqn], fn_name: str) -> Callable:
    def annotate_error(err: BaseException):
        tb = err.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next
        eqn = by_line.get(tb.tb_lineno) if tb is not None else None
        if eqn is None:
            return
        src = eqn.source_info
        if src is None:
            where = "(no user source line was recorded)"
        else:
            text = linecache.getline(src.file, src.line).strip()
            where = f"traced at\n  {src.long()}" + (f"\n    {text}" if text else "")
        err.add_note(f"funcgrad.jit: raised by '{eqn.primitive.name}' "
                     f"({', '.join(v.aval.str_short() for v in eqn.invars)}) in jitted "
                     f"function {fn_name}, {where}")
    return annotate_error
