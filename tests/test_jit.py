"""jit: caching, arguments, the compiled code, composition with grad/vmap, donation, errors,
and a property test over random programs (jit equals eager; every pass keeps the IR valid)."""
import collections
import dataclasses
import functools
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import core, grad, hessian, jacfwd, jacrev, jit, jvp, lax, make_jaxpr, value_and_grad, vmap
from funcgrad.compiler import compile_jaxpr, jit as jit_module, passes

RNG = np.random.default_rng(0)


def arr(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def assert_tree_close(a, b, rtol=1e-6, atol=1e-6):
    la, ta = funcgrad.tree_util.tree_flatten(a)
    lb, tb = funcgrad.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# --- basics and the cache ----------------------------------------------------------------------

def test_jit_matches_eager_and_caches():
    def f(x, y):
        return fnp.sum(fnp.tanh(x) * y + 0.5 * x ** 2, axis=0)
    jf = jit(f)
    x, y = arr(4, 3), arr(4, 3)
    assert_tree_close(jf(x, y), f(x, y))
    assert_tree_close(jf(x, y), f(x, y))
    assert jf.cache_info() == jit_module.CacheInfo(hits=1, misses=1, currsize=1)
    jf(arr(5, 3), arr(5, 3))
    assert jf.cache_info().misses == 2


def test_signature_includes_dtype_and_weak_type():
    jf = jit(lambda x, s: x * s)
    x = arr(3)
    assert jf(x, 2.0).dtype == np.float32                 # a Python scalar is weak
    assert jf(x, np.float64(2.0)).dtype == np.float64     # a numpy scalar is not
    assert jf(x.astype(np.float64), 2.0).dtype == np.float64
    assert jf.cache_info().misses == 3
    assert jf(x, 3).dtype == np.float32 and jf.cache_info().misses == 4


@pytest.mark.parametrize("structure", [
    lambda a, b: a, lambda a, b: (a,), lambda a, b: [a, b], lambda a, b: (a, b),
    lambda a, b: [a, (b, a)], lambda a, b: {"x": [a], "y": b}, lambda a, b: ((), None, a)])
def test_result_structures(structure):
    f = lambda x: structure(x * 2.0, x + 1.0)
    x = arr(3)
    assert_tree_close(jit(f)(x), f(x))
    assert_tree_close(jit(f)(x), f(x))


def test_scalars_zero_d_and_integers():
    f = lambda a, b, n: (a * b + n, fnp.sum(a), (n * 2) // 3, a > b)
    args = (np.float32(1.5), np.array(2.0, np.float32), np.arange(4, dtype=np.int32))
    assert_tree_close(jit(f)(*args), f(*args))


def test_outputs_never_alias_consts_or_each_other_unexpectedly():
    table = np.arange(3.0)
    jf = jit(lambda x: (x, table, 7.0, x + 1))
    x = np.ones(3)
    out = jf(x)
    assert out[0] is x                   # returning an input returns it, as eager does
    out[1][0] = 100.0                    # a const comes back as a copy
    assert table[0] == 0.0 and jf(x)[1][0] == 0.0
    assert np.asarray(out[2]) == 7.0


def test_results_are_writable_arrays():
    out = jit(lambda x: (fnp.ones((2, 3)), fnp.zeros_like(x), fnp.broadcast_to(x, (2, 3))))(arr(2, 3))
    for o in out:
        o[0, 0] = 5.0                    # no read-only broadcast views come out
    assert out[0].flags.c_contiguous


def test_inputs_are_never_overwritten():
    def f(x, y):
        a = fnp.exp(x)
        b = a * y
        return fnp.sin(b) + x
    x, y = arr(50), arr(50)
    x0, y0 = x.copy(), y.copy()
    jit(f)(x, y)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


# --- arguments ---------------------------------------------------------------------------------

Pair = collections.namedtuple("Pair", "a b")


def test_pytree_arguments_and_results():
    def f(params, batch, *, scale):
        out = {"y": params["w"] @ batch.a + params["b"], "aux": [batch.b * scale, None]}
        return out, (fnp.sum(out["y"]),)
    params = {"w": arr(3, 4), "b": arr(3)}
    batch = Pair(arr(4), arr(2))
    jf = jit(f)
    assert_tree_close(jf(params, batch, scale=2.0), f(params, batch, scale=2.0))
    assert_tree_close(jf(params, batch, scale=3.0), f(params, batch, scale=3.0))
    assert jf.cache_info().misses == 1


def test_static_argnums_and_argnames():
    def f(x, n, mode="sum"):
        for _ in range(n):                   # Python control flow on static values
            x = fnp.sin(x)
        return fnp.sum(x) if mode == "sum" else fnp.max(x)
    x = arr(5)
    jf = jit(f, static_argnums=1, static_argnames="mode")
    assert_tree_close(jf(x, 3), f(x, 3))
    assert_tree_close(jf(x, 3, mode="max"), f(x, 3, mode="max"))
    assert_tree_close(jf(x, n=2), f(x, 2))              # argnums also match by keyword
    assert jf.cache_info().misses == 3


def test_static_arguments_key_the_cache_by_type_too():
    """1, 1.0 and True are equal (and hash alike) but trace to different programs."""
    ai = np.arange(3, dtype=np.int32)
    scale = jit(lambda x, s: x * s, static_argnums=1)
    assert scale(ai, 1).dtype == np.int32
    assert scale(ai, 1.0).dtype == np.float64
    halve = jit(lambda x, s: x / 2 if isinstance(s, float) else x // 2, static_argnames="s")
    np.testing.assert_array_equal(halve(ai, s=1), [0, 0, 1])
    np.testing.assert_array_equal(halve(ai, s=1.0), [0.0, 0.5, 1.0])


def test_negative_static_argnums_count_from_the_last_parameter():
    f = jit(lambda x, n: x.reshape(n, -1), static_argnums=-1)
    assert f(np.arange(6.0), 2).shape == (2, 3)
    assert f(np.arange(6.0), n=3).shape == (3, 2)
    with pytest.raises(ValueError, match=r"static_argnums \(-3,\) out of range"):
        jit(lambda x, n: x, static_argnums=-3)


def test_unhashable_static_argument():
    jf = jit(lambda x, shape: fnp.reshape(x, shape), static_argnums=1)
    with pytest.raises(TypeError, match=r"static argument 1 has unhashable type list.*tuple"):
        jf(arr(6), [2, 3])
    assert jf(arr(6), (2, 3)).shape == (2, 3)


def test_non_array_argument_names_it():
    with pytest.raises(TypeError, match=r"argument d\['k'\] is a str.*static_argnums"):
        jit(lambda x, d: x)(arr(2), {"k": "text"})
    with pytest.raises(TypeError, match=r"argument opt\[0\] is a str"):
        jit(lambda x, **kw: x)(arr(2), opt=("text",))


def test_decorator_forms():
    @jit
    def f(x):
        return x * 2

    @funcgrad.jit(static_argnums=(1,))
    def g(x, k):
        return x * k

    assert f.__name__ == "f"
    assert_tree_close(f(arr(2) * 0 + 1), np.full(2, 2, np.float32))
    assert_tree_close(g(np.ones(2, np.float32), 3), np.full(2, 3, np.float32))


def test_methods():
    class Scaler:
        def __init__(self, k):
            self.k = k

        @jit
        def apply(self, x):
            return x * self.k

    @dataclasses.dataclass
    class Linear:
        w: np.ndarray

        @jit
        def apply(self, x):
            return self.w @ x

    s = Scaler(3.0)
    assert_tree_close(s.apply(np.ones(2, np.float32)), np.full(2, 3, np.float32))
    lin = Linear(arr(2, 3))
    assert_tree_close(lin.apply(np.ones(3, np.float32)), lin.w @ np.ones(3, np.float32))
    lin2 = Linear(arr(2, 3))                 # a dataclass is a pytree: its arrays are traced
    assert_tree_close(lin2.apply(np.ones(3, np.float32)), lin2.w @ np.ones(3, np.float32))
    assert Linear.apply.cache_info().misses == 1
    assert "w" not in str(lin.apply.lower(np.ones(3, np.float32)).jaxpr.consts)


def test_recompile_warning(monkeypatch):
    monkeypatch.setattr(jit_module, "RECOMPILE_WARNING_THRESHOLD", 3)
    jf = jit(lambda x: x + 1)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for n in range(1, 6):
            jf(np.ones(n))
    messages = [str(m.message) for m in w if issubclass(m.category, RuntimeWarning)]
    assert len(messages) == 1
    assert "compiled 3 signatures" in messages[0] and "f64[2] vs f64[3]" in messages[0]


# --- stages ------------------------------------------------------------------------------------

def test_lower_exposes_every_stage():
    def f(x, w):
        h = x @ w * 1.0                      # the `* 1.0` is simplified away
        return fnp.maximum(h, 0.0)
    x, w = arr(4, 3), arr(3, 2)
    lowered = jit(f).lower(x, w)
    assert "mul" in str(lowered.jaxpr) and "mul" not in str(lowered.optimized_jaxpr)
    core.check_jaxpr(lowered.optimized_jaxpr)
    assert lowered.kernels == []
    src = lowered.source
    assert src.startswith("def f(a, b):")
    assert "c = numpy_matmul(a, b)" in src
    assert "test_jit.py:" in src and "(f)" in src                  # the user's line
    assert "numpy_maximum(c, lit0, out=c)" in src                 # out= reuse of a dead buffer
    compiled = lowered.compile()
    assert_tree_close(compiled(x, w), f(x, w))
    with pytest.raises(TypeError, match=r"compiled for .* of types \(f32\[4,3\], f32\[3,2\]\), "
                                        r"called with .* of types \(f32\[4,3\], f64\[3,2\]\)"):
        compiled(x, w.astype(np.float64))
    assert set(lowered.timings) == {"trace", "optimize", "fuse", "codegen"}


def test_generated_names_avoid_python_keywords():
    def f(x):
        for _ in range(200):                 # > 260 variables: names like `as`, `if`, `in`
            x = x * 1.001 + 0.001
        return x
    x = arr(3)
    with funcgrad.config.override(backend="numpy"):      # one line per equation, unfused
        src = jit(f).lower(x).source
    assert " as_ = " in src and " if_ = " in src and " in_ = " in src
    assert_tree_close(jit(f)(x), f(x), rtol=1e-5)


# --- errors ------------------------------------------------------------------------------------

def test_control_flow_on_traced_values_is_an_error():
    def f(x):
        if fnp.sum(x) > 0:
            return x
        return -x
    with pytest.raises(funcgrad.ConcretizationError, match="(?s)abstract inside jit .it depends on argument `x`.*static_argnums"):
        jit(f)(arr(3))


def test_runtime_errors_point_at_the_user_line():
    def f(x):
        y = x + 1
        return lax.integer_pow(y, -1)        # integers to negative powers: numpy raises
    with pytest.raises(ValueError) as info:
        jit(f)(np.arange(3, dtype=np.int32))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "integer_pow" in notes and "test_jit.py" in notes
    assert "return lax.integer_pow(y, -1)" in notes


def test_returning_a_non_array_is_an_error():
    with pytest.raises(TypeError, match="returned a str"):
        jit(lambda x: (x, "label"))(arr(2))


# --- composition with transforms ----------------------------------------------------------------

def loss(w, x):
    return fnp.sum(fnp.tanh(x @ w) ** 2) + 0.1 * fnp.sum(w * w)


W, X = arr(3, 2, dtype=np.float64), arr(5, 3, dtype=np.float64)


@pytest.mark.parametrize("ours, reference", [
    (lambda f: grad(jit(f)), grad),
    (lambda f: jit(grad(jit(f))), grad),
    (lambda f: jit(grad(f)), grad),
    (lambda f: value_and_grad(jit(f)), value_and_grad),
    (lambda f: jacfwd(jit(f)), jacfwd),
    (lambda f: jacrev(jit(f)), jacrev),
    (lambda f: hessian(jit(f)), hessian),
    (lambda f: jit(hessian(jit(f))), hessian),
], ids=["grad-jit", "jit-grad-jit", "jit-grad", "value_and_grad-jit", "jacfwd-jit", "jacrev-jit",
        "hessian-jit", "jit-hessian-jit"])
def test_derivatives_of_jit(ours, reference):
    assert_tree_close(ours(loss)(W, X), reference(loss)(W, X), rtol=1e-10, atol=1e-12)


def test_grad_of_jit_keeps_the_call():
    closed = make_jaxpr(grad(jit(loss)))(W, X)
    core.check_jaxpr(closed)
    assert [e.primitive.name for e in closed.eqns].count("jit_call") == 2   # known, transposed
    inlined = jit(grad(jit(loss))).lower(W, X).optimized_jaxpr
    assert "jit_call" not in str(inlined)


def test_jvp_and_vmap_of_jit():
    f = jit(lambda x, y: fnp.sin(x) * y)
    x, y, t = arr(4), arr(4), arr(4)
    assert_tree_close(jvp(f, (x, y), (t, np.zeros(4, np.float32))),
                      (np.sin(x) * y, np.cos(x) * t * y), rtol=1e-5)
    xs = arr(6, 4)
    assert_tree_close(vmap(f, in_axes=(0, None))(xs, y), np.stack([f(r, y) for r in xs]))
    assert_tree_close(vmap(f, in_axes=(1, None), out_axes=1)(xs.T, y), np.stack([f(r, y) for r in xs]).T)
    assert_tree_close(jit(vmap(grad(lambda a, b: fnp.sum(f(a, b)))))(xs, xs),
                      vmap(grad(lambda a, b: fnp.sum(fnp.sin(a) * b)))(xs, xs), rtol=1e-6)
    assert_tree_close(vmap(grad(jit(lambda a: fnp.sum(fnp.sin(a) ** 2))))(xs),
                      np.sin(2 * xs), rtol=1e-5)


def test_nested_jit_reuses_derived_jaxprs_and_compiled_code():
    f = jit(lambda w, x: fnp.sum(fnp.tanh(x @ w)))
    g = grad(f)
    g(W, X)
    traced = dict(f._traced)
    g(W, X)
    assert f._traced == traced                         # traced once per signature
    assert len(f._traced) == 1


def test_jit_closing_over_an_outer_tracer():
    def outer(a):
        inner = jit(lambda x: fnp.sin(x) * a)          # `a` is a tracer of grad's trace
        return fnp.sum(inner(a))
    x = arr(3, dtype=np.float64)
    assert_tree_close(grad(outer)(x), np.sin(x) + x * np.cos(x), rtol=1e-12)
    assert_tree_close(jit(grad(outer))(x), np.sin(x) + x * np.cos(x), rtol=1e-12)


def test_integer_outputs_of_a_jitted_callee_under_grad():
    f = jit(lambda x: (fnp.sum(x ** 2), fnp.argmax(x)))
    g = grad(lambda x: f(x)[0] * 1.0 + f(x)[1].astype(np.float64) * 0.0)
    x = arr(4, dtype=np.float64)
    assert_tree_close(g(x), 2 * x)


# --- donation ----------------------------------------------------------------------------------

def sgd(params, grads):
    return {k: params[k] - 0.1 * grads[k] for k in params}


def test_donated_buffers_receive_the_update():
    params = {"w": arr(30, 20), "b": arr(20)}
    grads = {"w": arr(30, 20), "b": arr(20)}
    expected = sgd(params, grads)
    w = params["w"]
    new = jit(sgd, donate_argnums=0)(params, grads)
    assert_tree_close(new, expected)
    assert np.shares_memory(new["w"], w) and new["w"] is w
    # Reading the donated array afterwards gives the new value (documented), never garbage.
    np.testing.assert_array_equal(w, expected["w"])


def test_without_donation_inputs_survive():
    params, grads = {"w": arr(30, 20)}, {"w": arr(30, 20)}
    w0 = params["w"].copy()
    new = jit(sgd)(params, grads)
    assert not np.shares_memory(new["w"], params["w"])
    np.testing.assert_array_equal(params["w"], w0)


def test_donated_arrays_that_cannot_be_overwritten_are_copied():
    step = jit(lambda w, g: w - 0.1 * g, donate_argnums=0)
    w = arr(10)
    w.flags.writeable = False
    w0 = w.copy()
    out = step(w, arr(10))
    np.testing.assert_array_equal(w, w0)
    assert not np.shares_memory(out, w)
    v = arr(10)                                       # donated and also passed as `g`
    v0 = v.copy()
    out = step(v, v)
    np.testing.assert_array_equal(v, v0)
    np.testing.assert_allclose(out, v0 * 0.9, rtol=1e-6)


def test_donated_input_is_not_used_as_scratch():
    # w dies at its first use, but only a result may take its buffer: intermediates never do.
    step = jit(lambda w, g: (fnp.sum(fnp.exp(w * 2.0)), g * 3.0), donate_argnums=0)
    w, g = arr(10), arr(5)
    w0 = w.copy()
    step(w, g)
    np.testing.assert_array_equal(w, w0)
    g = arr(10)                              # now a result has w's type and takes its buffer
    out = step(w, g)
    assert out[1] is w
    np.testing.assert_allclose(w, g * 3.0, rtol=1e-6)


def test_static_and_donated_is_an_error():
    with pytest.raises(ValueError, match="both static and donated"):
        jit(lambda x, n: x, static_argnums=1, donate_argnums=1)


# --- compile_jaxpr -----------------------------------------------------------------------------

def test_compile_jaxpr_caches_per_jaxpr_object():
    closed = make_jaxpr(lambda x, y: (fnp.sin(x) @ y, x))(arr(2, 3), arr(3, 4))
    fn = compile_jaxpr(closed)
    assert compile_jaxpr(closed) is fn
    x, y = arr(2, 3), arr(3, 4)
    assert_tree_close(fn(x, y), core.eval_jaxpr(closed.jaxpr, closed.consts, x, y))
    assert isinstance(fn(x, y), list)


def test_compile_jaxpr_runs_opaque_primitives_through_their_impl():
    closed = make_jaxpr(lambda x: (fnp.cumsum(x, axis=0), fnp.argmax(x, axis=1)))(arr(3, 4))
    x = arr(3, 4)
    assert_tree_close(compile_jaxpr(closed)(x), [np.cumsum(x, axis=0), np.argmax(x, axis=1)])


# --- property: random programs ------------------------------------------------------------------

UNARY = [fnp.sin, fnp.tanh, fnp.negative, fnp.abs, fnp.exp, lambda x: fnp.sqrt(fnp.abs(x)),
         lambda x: x * 2.0, lambda x: x + 1, lambda x: x * 1.0, lambda x: -(-x), fnp.square,
         lambda x: x.astype(np.float64), lambda x: fnp.where(x > 0, x, 0.5 * x)]
BINARY = [fnp.add, fnp.subtract, fnp.multiply, fnp.maximum, lambda a, b: fnp.where(a > b, a, b),
          lambda a, b: a - b * 0.0]
REDUCE = [lambda x, ax: fnp.sum(x, axis=ax, keepdims=True), lambda x, ax: fnp.max(x, axis=ax),
          lambda x, ax: fnp.mean(x, axis=ax)]
SHAPES = [(3, 4), (4,), (1, 4), (3, 1), (4, 3), ()]


@st.composite
def programs(draw, dtypes=(np.float32, np.float64)):
    """``(f, args)``: a random straight-line program over funcgrad.numpy and its inputs."""
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    shapes = [draw(st.sampled_from(SHAPES)) for _ in range(draw(st.integers(1, 3)))]
    args = [np.asarray(rng.standard_normal(s), dtype) for s in shapes]
    probes = [np.zeros(s, dtype) for s in shapes]   # shapes of the values, computed eagerly
    steps = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["unary", "binary", "reduce", "transpose", "matmul", "reshape",
                                     "broadcast"]))
        i = draw(st.integers(0, len(probes) - 1))
        x = probes[i]
        if kind == "unary":
            fn, idx = draw(st.sampled_from(UNARY)), (i,)
        elif kind == "binary":
            j = draw(st.integers(0, len(probes) - 1))
            try:
                np.broadcast_shapes(x.shape, probes[j].shape)
            except ValueError:
                continue
            fn, idx = draw(st.sampled_from(BINARY)), (i, j)
        elif kind == "reduce" and x.ndim:
            ax = draw(st.integers(-x.ndim, x.ndim - 1))
            fn, idx = functools.partial(draw(st.sampled_from(REDUCE)), ax=ax), (i,)
        elif kind == "transpose" and x.ndim == 2:
            fn, idx = fnp.transpose, (i,)
        elif kind == "reshape" and x.size:
            fn, idx = (lambda v: fnp.reshape(v, (-1,))), (i,)
        elif kind == "broadcast":
            fn, idx = (lambda v: fnp.broadcast_to(fnp.expand_dims(v, 0), (2,) + v.shape)), (i,)
        elif kind == "matmul" and x.ndim == 2:
            js = [j for j, p in enumerate(probes) if p.ndim == 2 and p.shape[0] == x.shape[1]]
            if not js:
                continue
            fn, idx = fnp.matmul, (i, draw(st.sampled_from(js)))
        else:
            continue
        probes.append(np.asarray(fn(*[probes[k] for k in idx])))
        steps.append((fn, idx))
    outputs = draw(st.lists(st.integers(0, len(probes) - 1), min_size=1, max_size=3))

    def f(*inputs):
        values = list(inputs)
        for fn, idx in steps:
            values.append(fn(*[values[k] for k in idx]))
        return tuple(values[k] for k in outputs)
    return f, args


@given(programs())
def test_random_programs_jit_equals_eager(program):
    f, args = program
    originals = [a.copy() for a in args]
    expected = f(*args)
    jf = jit(f)
    with np.errstate(all="ignore"):
        for _ in range(2):                                 # traced call, then cached call
            got = jf(*args)
            for g, e in zip(got, expected):
                assert np.asarray(g).dtype == np.asarray(e).dtype
                assert np.shape(g) == np.shape(e)
                np.testing.assert_allclose(g, e, rtol=2e-5, atol=1e-6, equal_nan=True)
    for a, o in zip(args, originals):
        np.testing.assert_array_equal(a, o)
    assert jf.cache_info() == jit_module.CacheInfo(1, 1, 1)
    passes.optimize(make_jaxpr(f)(*args), check=True)


def _stack(args, n=3):
    return [np.stack([a * (1 + 0.1 * k) for k in range(n)]) for a in args]


@given(programs(dtypes=(np.float64,)))
def test_random_programs_under_grad_and_vmap(program):
    f, args = program
    h = lambda *a: fnp.sum(f(*a)[0])
    argnums = tuple(range(len(args)))
    expected = grad(h, argnums)(*args)
    with np.errstate(all="ignore"):
        assert_tree_close(grad(jit(h), argnums)(*args), expected, rtol=1e-9, atol=1e-12)
        assert_tree_close(jit(grad(h, argnums))(*args), expected, rtol=1e-9, atol=1e-12)
        stacked = _stack(args)
        assert_tree_close(vmap(jit(f))(*stacked), vmap(f)(*stacked), rtol=1e-9, atol=1e-12)


@given(programs())
def test_random_programs_with_donation(program):
    f, args = program
    expected = f(*[a.copy() for a in args])
    donated = [a.copy() for a in args]
    before = [a.copy() for a in donated]
    with np.errstate(all="ignore"):
        got = jit(f, donate_argnums=tuple(range(len(args))))(*donated)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=2e-5, atol=1e-6, equal_nan=True)
    for a, b in zip(donated, before):          # each donated array is untouched or a result
        assert any(a is g for g in got) or np.array_equal(a, b, equal_nan=True)


def test_function_name_does_not_shadow_consts():
    consts = [np.full(3, k, np.float32) for k in range(8)]

    def f(x):                                # consts are named a, b, ..., f, ... like `f`
        for c in consts:
            x = x * c + c
        return x
    x = arr(3)
    assert_tree_close(jit(f)(x), f(x))


@pytest.mark.parametrize("g", [lambda s: s * 1.0, lambda s: fnp.asarray(s) * 1.0,
                               lambda s: fnp.float32(2) * s, lambda s: -(-s)])
def test_nested_jit_keeps_weak_types(g):
    plain = make_jaxpr(g)(2.0).out_avals
    nested = make_jaxpr(lambda s: jit(g)(s))(2.0).out_avals
    assert [(a.dtype, a.weak_type) for a in nested] == [(a.dtype, a.weak_type) for a in plain]


def test_custom_jvp_inlined_only_for_execution():
    @funcgrad.custom_jvp
    def f(x):
        return fnp.sin(x)

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), 3.0 * t                 # deliberately not cos(x): the rule must be used

    x = arr(4, dtype=np.float64)
    assert "custom_jvp_call" not in jit(f).lower(x).source
    assert_tree_close(jit(f)(x), np.sin(x))
    h = lambda x: fnp.sum(jit(f)(x))
    assert_tree_close(grad(h)(x), np.full(4, 3.0))
    assert_tree_close(jit(grad(h))(x), np.full(4, 3.0))
