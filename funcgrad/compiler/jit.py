"""``jit``: trace a function once per signature, optimize its jaxpr, generate code, cache it.

A signature is (argument structure, each leaf's shape/dtype/weak type, the static
arguments, the backend). A call with a known signature flattens the arguments, finds the
compiled function, calls it and unflattens the result -- nothing else. Called while another
transform is tracing (``grad(jit(f))``, ``vmap(jit(f))``, ``jit(... jit(f) ...)``), a
jitted function instead binds ``jit_call`` with its optimized jaxpr, so the outer transform
transforms the callee (see :mod:`funcgrad.compiler.call`).

Donation (``donate_argnums``): the arrays of donated arguments may be overwritten with
results of the call. A donated input whose buffer is reused becomes that result -- the
returned array *is* the donated array object -- so reading the donated argument afterwards
gives the new value, never garbage. A donated array that cannot safely be overwritten
(read-only, or sharing memory with another argument) is copied first.
"""
from __future__ import annotations

import functools
import inspect
import time
import warnings
from typing import Callable, NamedTuple, Sequence

import numpy as np
from numpy.lib.array_utils import byte_bounds

from .. import core
from ..config import config
from ..core import ClosedJaxpr, Jaxpr, ShapedArray
from ..tree_util import PyTreeDef, keystr, tree_flatten, tree_flatten_with_path, tree_unflatten
from . import call, passes, pipeline

RECOMPILE_WARNING_THRESHOLD = 16
"""A jitted function warns (once) when it has compiled this many signatures."""

_ndarray = np.ndarray


class CacheInfo(NamedTuple):
    hits: int
    misses: int        # calls that traced and compiled a new signature
    currsize: int


class _Signature(NamedTuple):
    in_tree: tuple           # (positional arguments' treedef, keyword arguments' or None)
    leaves: tuple            # (shape, dtype, weak_type) per leaf
    static: tuple            # static positional and keyword arguments
    backend: str


_PYTHON_SCALARS = (bool, int, float, complex)


def _leaf_key(x):
    """``(shape, dtype, weak_type)`` of an array leaf; None for anything else."""
    t = type(x)
    if t is _ndarray or isinstance(x, np.generic) or core.is_array(x):
        return (x.shape, x.dtype, False)
    if t is core.Tracer:
        a = x.aval
        return (a.shape, a.dtype, a.weak_type)
    if t in _PYTHON_SCALARS:
        return ((), core.get_aval(x).dtype, True)
    return None


class Lowered:
    """One signature of a jitted function, lowered: every stage can be read.

    ``jaxpr`` (as traced), ``optimized_jaxpr`` (after the passes and fusion), ``source``
    (the generated Python), and ``kernels`` (each fused kernel's C++ or CUDA source; empty
    when nothing was fused); ``timings`` gives the seconds spent per stage. ``compile()``
    gives the callable."""

    def __init__(self, fun_name: str, lowering: pipeline.Lowering, in_tree: tuple,
                 out_tree: PyTreeDef, donated: tuple[bool, ...], backend: str,
                 trace_time: float):
        self.name = fun_name
        self.jaxpr = lowering.jaxpr
        self.optimized_jaxpr = lowering.optimized_jaxpr
        self.kernels = [str(k) for k in lowering.kernels]
        self.source = lowering.executable.source
        self.in_tree, self.out_tree, self.donated, self.backend = in_tree, out_tree, donated, backend
        self.timings = {"trace": trace_time, **lowering.timings}
        self._fn = lowering.executable.fn

    def compile(self) -> "Compiled":
        return Compiled(self)

    def __repr__(self):
        return f"Lowered({self.name}, {self.backend})"


def _result_form(tree: PyTreeDef) -> str | None:
    """How generated code can return this output structure itself ("single", "tuple",
    "list"), or None when the caller must unflatten a list of the leaves."""
    if tree.node is None:
        return "single"
    if tree.node.name in ("tuple", "list") and all(c.node is None for c in tree.children):
        return tree.node.name
    return None


class Compiled:
    """A compiled signature: call it with the dynamic (non-static) arguments."""

    def __init__(self, lowered: Lowered):
        self.lowered = lowered
        self.fn = lowered._fn                    # flat args -> flat outputs (or the one output)
        tree = lowered.out_tree
        # None: the generated function returns the result's structure itself.
        self.unflatten = tree.unflatten if _result_form(tree) is None else None
        self.has_donations = any(lowered.donated)

    def call_flat(self, flat: list):
        if self.has_donations:
            flat = _prepare_donations(flat, self.lowered.donated)
        out = self.fn(*flat)
        return out if self.unflatten is None else self.unflatten(out)

    def __call__(self, *args, **kwargs):
        flat, in_tree = _flatten_args(args, kwargs)
        expected = [(a.shape, a.dtype, a.weak_type) for a in self.lowered.jaxpr.in_avals]
        if in_tree != self.lowered.in_tree or [_leaf_key(x) for x in flat] != expected:
            got = ", ".join(core.get_aval(x).str_short() if _leaf_key(x) else type(x).__name__
                            for x in flat)
            raise TypeError(f"{self.lowered.name}: compiled for arguments {self.lowered.in_tree[0]} "
                            f"of types ({', '.join(a.str_short() for a in self.lowered.jaxpr.in_avals)}), "
                            f"called with {in_tree[0]} of types ({got})")
        return self.call_flat(flat)


def _prepare_donations(flat: list, donated: Sequence[bool]) -> list:
    """Copy donated arrays that must not be overwritten: read-only ones, and ones sharing
    memory with another argument (overwriting them would change that argument)."""
    bounds = [byte_bounds(x) if isinstance(x, _ndarray) else None for x in flat]
    flat = list(flat)
    for i, d in enumerate(donated):
        x = flat[i]
        if not d or bounds[i] is None:
            continue
        lo, hi = bounds[i]
        if not x.flags.writeable or any(
                j != i and b is not None and b[0] < hi and lo < b[1] for j, b in enumerate(bounds)):
            flat[i] = x.copy()
    return flat


class Jitted:
    """The function ``jit`` returns. See :func:`jit`."""

    def __init__(self, fun: Callable, static_argnums, static_argnames, donate_argnums):
        functools.update_wrapper(self, fun)
        self._fun = fun
        self._name = _fun_name(fun)
        nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
        names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        params = _positional_params(fun)
        if not _takes_var_args(fun):        # negative numbers count from the last parameter
            nums = tuple(i + len(params) if -len(params) <= i < 0 else i for i in nums)
        if any(i < 0 for i in nums):
            raise ValueError(f"jit({_fun_name(fun)}): static_argnums {nums} out of range for "
                             f"its {len(params)} positional parameters")
        names += tuple(params[i] for i in nums if 0 <= i < len(params) and params[i] not in names)
        nums += tuple(params.index(n) for n in names if n in params and params.index(n) not in nums)
        self._static_argnums = frozenset(nums)
        self._static_argnames = frozenset(names)
        self._donate_argnums = frozenset((donate_argnums,) if isinstance(donate_argnums, int)
                                         else donate_argnums)
        if self._donate_argnums & self._static_argnums:
            raise ValueError(f"jit({self._name}): arguments "
                             f"{sorted(self._donate_argnums & self._static_argnums)} are both "
                             "static and donated")
        self._fast_ok = not (self._static_argnums or self._static_argnames or self._donate_argnums)
        self._cache: dict[_Signature, Compiled] = {}
        self._fast: dict[tuple, Compiled] = {}         # positional ndarray arguments only
        self._fast_epoch = config.epoch                # the settings `_fast` was filled under
        self._traced: dict[_Signature, tuple] = {}     # for calls under a trace
        self._hits = self._misses = 0
        self._warned = False

    # -- calling ------------------------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        if self._fast_epoch != config.epoch:           # the backend setting changed
            self._fast.clear()
            self._fast_epoch = config.epoch
        if self._fast_ok and not kwargs and not core._state.stack:
            key = []
            for a in args:
                if type(a) is not _ndarray:
                    break
                key.append(a.shape)
                key.append(a.dtype)
            else:
                entry = self._fast.get(tuple(key))
                if entry is not None:
                    self._hits += 1
                    out = entry.fn(*args)
                    return out if entry.unflatten is None else entry.unflatten(out)
        return self._call(args, kwargs)

    def _call(self, args: tuple, kwargs: dict, bound_self: bool = False):
        sig, flat, dyn = self._signature(args, kwargs, bound_self)
        if core._state.stack:
            return self._bind(sig, flat, dyn)
        entry = self._cache.get(sig)
        if entry is None:
            entry = self._compile(sig, dyn)
        else:
            self._hits += 1
        if self._fast_ok and not kwargs and all(type(a) is _ndarray for a in args):
            self._fast[tuple(x for a in args for x in (a.shape, a.dtype))] = entry
        return entry.call_flat(flat)

    def __get__(self, obj, objtype=None):
        """As a method: ``obj`` is the first argument (dynamic if it is a pytree of arrays,
        static -- by its hash -- otherwise)."""
        if obj is None:
            return self
        return _BoundJitted(self, obj)

    # -- signatures ---------------------------------------------------------------------------

    def _signature(self, args: tuple, kwargs: dict, bound_self: bool = False):
        """``(signature, flat dynamic leaves, (dynamic args, dynamic kwargs, static values))``."""
        static_pos = self._static_argnums
        if bound_self and not _is_pytree(args[0]):
            static_pos = static_pos | {0}
        if static_pos or self._static_argnames:
            static = tuple((i, args[i]) for i in sorted(static_pos) if i < len(args))
            static += tuple(sorted((k, v) for k, v in kwargs.items() if k in self._static_argnames))
            # By type too: 1, 1.0 and True are equal but trace differently.
            static_key = tuple((k, type(v), v) for k, v in static)
            dyn_args = tuple(a for i, a in enumerate(args) if i not in static_pos)
            dyn_kwargs = {k: v for k, v in kwargs.items() if k not in self._static_argnames}
        else:
            static = static_key = ()
            dyn_args, dyn_kwargs = args, kwargs
        flat, in_tree = _flatten_args(dyn_args, dyn_kwargs)
        leaves = []
        for i, x in enumerate(flat):
            key = _leaf_key(x)
            if key is None:
                raise TypeError(
                    f"jit({self._name}): argument {self._leaf_name(dyn_args, dyn_kwargs, static_pos, i)} "
                    f"is a {type(x).__name__}, not an array: jit traces array arguments (arrays, "
                    "scalars, and pytrees of them). Mark it static with static_argnums/"
                    "static_argnames if it configures the function.")
            leaves.append(key)
        try:
            backend = pipeline.backend_for(flat)
        except pipeline.MixedDevicesError as e:
            name = lambda i: self._leaf_name(dyn_args, dyn_kwargs, static_pos, i)
            raise TypeError(f"jit({self._name}): {pipeline.describe_mixed(e.cpu, e.gpu, name)}") from None
        sig = _Signature(in_tree, tuple(leaves), static_key, backend)
        try:
            hash(sig)
        except TypeError:
            raise self._unhashable_static(static) from None
        return sig, flat, (dyn_args, dyn_kwargs, static, len(args))

    def _leaf_name(self, dyn_args, dyn_kwargs, static_pos, i: int) -> str:
        """Name flat leaf ``i`` for messages: ``x['w']``, or ``args[2]`` without a name."""
        pairs, _ = tree_flatten_with_path((dyn_args, dyn_kwargs))
        path = pairs[i][0]
        if path[0] == 1:
            return f"{path[1]}{keystr(path[2:])}"
        positions = [p for p in range(len(dyn_args) + len(static_pos)) if p not in static_pos]
        pos = positions[path[1]]
        names = _positional_params(self._fun)
        return f"{names[pos] if pos < len(names) else f'args[{pos}]'}{keystr(path[2:])}"

    def _unhashable_static(self, static) -> TypeError:
        for k, v in static:
            try:
                hash(v)
            except TypeError:
                what = f"static argument {k}" if isinstance(k, int) else f"static argument '{k}'"
                return TypeError(
                    f"jit({self._name}): {what} has unhashable type {type(v).__name__}: static "
                    "arguments key the compilation cache, so they must be hashable (use a tuple "
                    "instead of a list, or pass arrays as non-static arguments).")
        return TypeError(f"jit({self._name}): the arguments cannot key the cache (unhashable)")

    # -- tracing and compiling ----------------------------------------------------------------

    def _trace(self, sig: _Signature, dyn) -> tuple[ClosedJaxpr, PyTreeDef, float]:
        dyn_args, dyn_kwargs, static, n_args = dyn
        static = dict(static)
        static_pos = {k for k in static if isinstance(k, int)}
        out_trees: list[PyTreeDef] = []

        def flat_fun(*leaves):
            a, kw = _unflatten_args(sig.in_tree, leaves)
            it = iter(a)
            full = [static[i] if i in static else next(it) for i in range(n_args)]
            kw.update((k, v) for k, v in static.items() if isinstance(k, str))
            out_flat, out_tree = tree_flatten(self._fun(*full, **kw))
            out_trees.append(out_tree)
            for x in out_flat:
                if _leaf_key(x) is None:
                    raise TypeError(f"jit({self._name}): the function returned a "
                                    f"{type(x).__name__}, which is not an array; jitted "
                                    "functions return arrays, scalars, and pytrees of them.")
            return out_flat

        avals = [ShapedArray(s, d, w) for s, d, w in sig.leaves]
        t0 = time.perf_counter()
        closed, _ = core.trace_flat(flat_fun, avals, None,
                                    lambda i: self._leaf_name(dyn_args, dyn_kwargs, static_pos, i),
                                    kind="jit")
        return closed, out_trees[0], time.perf_counter() - t0

    def _compile(self, sig: _Signature, dyn) -> Compiled:
        closed, out_tree, trace_time = self._trace(sig, dyn)
        donated = self._donated_leaves(sig, dyn)
        lowering = pipeline.lower_jaxpr(closed, sig.backend, self._name, donated,
                                        returns=_result_form(out_tree) or "list")
        entry = Lowered(self._name, lowering, sig.in_tree, out_tree, donated, sig.backend,
                        trace_time).compile()
        self._cache[sig] = entry
        self._misses += 1
        self._check_recompiles(sig)
        return entry

    def _donated_leaves(self, sig: _Signature, dyn) -> tuple[bool, ...]:
        if not self._donate_argnums:
            return (False,) * len(sig.leaves)
        _, _, static, n_args = dyn
        static_pos = {k for k, _ in static if isinstance(k, int)}
        positions = [i for i in range(n_args) if i not in static_pos]
        mask = []
        for pos, sub in zip(positions, sig.in_tree[0].children):
            donated = pos in self._donate_argnums or pos - n_args in self._donate_argnums
            mask += [donated] * sub.num_leaves
        return tuple(mask + [False] * (len(sig.leaves) - len(mask)))

    def _check_recompiles(self, sig: _Signature):
        n = len(self._cache)
        if n < RECOMPILE_WARNING_THRESHOLD or self._warned:
            return
        self._warned = True
        previous = list(self._cache)[-2]
        warnings.warn(
            f"jit({self._name}) has compiled {n} signatures; each new shape, dtype, pytree "
            f"structure or static argument value compiles again. The last two differ in "
            f"{_difference(previous, sig)}. Pad or bucket shapes, or pass varying values as "
            "arrays rather than static arguments.", RuntimeWarning, stacklevel=4)

    # -- under a trace ------------------------------------------------------------------------

    def _bind(self, sig: _Signature, flat: list, dyn):
        found = self._traced.get(sig)
        if found is None:
            closed, out_tree, _ = self._trace(sig, dyn)
            closed, captured = _hoist_traced_consts(closed)
            closed = passes.optimize(closed)
            found = (closed, out_tree, captured)
            if not captured:                 # closures over outer tracers differ per call
                self._traced[sig] = found
        closed, out_tree, captured = found
        outs = call.jit_call([*captured, *flat], closed, self._name)
        return tree_unflatten(out_tree, outs)

    # -- stages and statistics ----------------------------------------------------------------

    def lower(self, *args, **kwargs) -> Lowered:
        """Trace, optimize and generate code for these arguments (without running it)."""
        return self._lower(args, kwargs)

    def _lower(self, args, kwargs, bound_self: bool = False) -> Lowered:
        sig, _, dyn = self._signature(args, kwargs, bound_self)
        entry = self._cache.get(sig)
        return (entry if entry is not None else self._compile(sig, dyn)).lowered

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, len(self._cache))

    def clear_cache(self) -> None:
        self._cache.clear()
        self._fast.clear()
        self._traced.clear()

    def __repr__(self):
        return f"<jit({self._name})>"


class _BoundJitted:
    """A jitted method bound to its object."""

    __slots__ = ("_jitted", "_obj")

    def __init__(self, jitted: Jitted, obj):
        self._jitted, self._obj = jitted, obj

    def __call__(self, *args, **kwargs):
        return self._jitted._call((self._obj,) + args, kwargs, bound_self=True)

    def lower(self, *args, **kwargs) -> Lowered:
        return self._jitted._lower((self._obj,) + args, kwargs, bound_self=True)


def _flatten_args(args: tuple, kwargs: dict) -> tuple[list, tuple]:
    """Leaves of the arguments and ``(args treedef, kwargs treedef or None)``."""
    flat, args_tree = tree_flatten(args)
    if not kwargs:
        return flat, (args_tree, None)
    kw_flat, kw_tree = tree_flatten(kwargs)
    return flat + kw_flat, (args_tree, kw_tree)


def _unflatten_args(in_tree: tuple, leaves) -> tuple[tuple, dict]:
    args_tree, kw_tree = in_tree
    n = args_tree.num_leaves
    args = tree_unflatten(args_tree, leaves[:n])
    return args, (tree_unflatten(kw_tree, leaves[n:]) if kw_tree is not None else {})


def _fun_name(fun) -> str:
    while isinstance(fun, functools.partial):
        fun = fun.func
    return getattr(fun, "__name__", type(fun).__name__)


def _is_pytree(x) -> bool:
    leaves, tree = tree_flatten(x)
    return tree.node is not None


def _takes_var_args(fun) -> bool:
    try:
        return any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        return True


def _positional_params(fun) -> list[str]:
    try:
        sig = inspect.signature(fun)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _hoist_traced_consts(closed: ClosedJaxpr) -> tuple[ClosedJaxpr, list]:
    """Consts that are tracers of an outer trace (the function closed over them) become
    leading inputs, so the jaxpr can be passed as a param and the outer trace sees them."""
    j = closed.jaxpr
    traced = [i for i, c in enumerate(closed.consts) if isinstance(c, core.Tracer)]
    if not traced:
        return closed, []
    keep = [i for i in range(len(j.constvars)) if i not in traced]
    jaxpr = Jaxpr([j.constvars[i] for i in keep], [j.constvars[i] for i in traced] + j.invars,
                  j.eqns, j.outvars)
    return ClosedJaxpr(jaxpr, [closed.consts[i] for i in keep]), [closed.consts[i] for i in traced]


def _difference(a: _Signature, b: _Signature) -> str:
    if a.in_tree != b.in_tree:
        return f"argument structure ({a.in_tree} vs {b.in_tree})"
    if a.static != b.static:
        return f"static arguments ({a.static!r:.80} vs {b.static!r:.80})"
    if a.backend != b.backend:
        return f"backend ({a.backend} vs {b.backend})"
    for i, (x, y) in enumerate(zip(a.leaves, b.leaves)):
        if x != y:
            return (f"leaf {i}: {ShapedArray(*x).str_short()}{' weak' * x[2]} vs "
                    f"{ShapedArray(*y).str_short()}{' weak' * y[2]}")
    return "nothing visible"


def jit(fun: Callable | None = None, *, static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (), donate_argnums: int | Sequence[int] = ()):
    """Compile ``fun``: trace it once per signature of its arguments, optimize the jaxpr,
    and run generated code on later calls.

    Usable as ``jit(f)``, ``@jit``, ``@jit(static_argnums=...)``, and on methods.

    * ``static_argnums`` / ``static_argnames``: arguments that configure the function (Python
      values, hashable); each distinct value compiles separately. Python control flow may
      depend on them, but not on array arguments (use ``funcgrad.lax.cond``/``while_loop``).
    * ``donate_argnums``: positional arguments whose arrays the call may overwrite with its
      results (an optimizer step updating parameters in place). A result that reuses a donated
      array *is* that array, so the donated argument afterwards holds the new value; donated
      arrays that are read-only or share memory with other arguments are copied first.

    ``jit(f).lower(*args)`` exposes each compilation stage; ``jit(f).cache_info()`` counts
    cache hits and compilations.
    """
    if fun is None:
        return functools.partial(jit, static_argnums=static_argnums,
                                 static_argnames=static_argnames, donate_argnums=donate_argnums)
    return Jitted(fun, static_argnums, static_argnames, donate_argnums)
