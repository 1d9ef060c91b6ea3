"""The C++ backend: fused kernels compiled and run, compared with the numpy code path.

Exact operations (arithmetic, comparisons, selects, casts, rounding, integer ops) must give
numpy's bits; math functions (libm/libmvec versus numpy's own) a few ulps; sums the same
values up to the order of additions. Each hypothesis example compiles one translation unit
holding several programs, and translation units are cached on disk, so the number of
compilations stays small."""
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import jit, lax, value_and_grad
from funcgrad.compiler import cache, codegen_c
from funcgrad.primitives import elementwise as ew, reduction as red

from fusion_programs import FLOAT, assert_same_bits, programs, side_by_side

pytestmark = pytest.mark.needs_compiler


def both(f, *args, expect_kernels=True):
    """``f`` jitted with C++ kernels and as numpy code: (kernel results, numpy results)."""
    fc = jit(f)
    with funcgrad.config.override(backend="c"):
        lowered = fc.lower(*args)
        if expect_kernels:
            assert lowered.kernels, "nothing was fused"
        got = fc(*args)
    with funcgrad.config.override(backend="numpy"):
        want = jit(f)(*args)
    return got, want


def arr(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- exact programs ---------------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(progs=st.lists(programs(), min_size=1, max_size=4), seed=st.integers(0, 2 ** 16))
def test_random_exact_programs_give_numpys_bits(progs, seed):
    f, flat = side_by_side(progs, np.random.default_rng(seed))
    with np.errstate(all="ignore"):
        got, want = both(f, *flat, expect_kernels=False)
    with np.errstate(all="ignore"):
        for i, (g, w) in enumerate(zip(got, want)):
            prog = progs[i // 2]
            if i % 2 == 0 and prog.reduce is not None and prog.reduce[0] == "sum" and w.dtype.kind == "f":
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(w), initial=1.0),
                                           err_msg=str(prog))
            elif i % 2 == 0 and prog.reduce is not None:
                np.testing.assert_array_equal(g, w, err_msg=str(prog))   # max/min: -0.0 == 0.0
            else:
                assert_same_bits(g, w, err_msg=str(prog))


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64])
def test_integer_division_remainder_and_overflow_as_numpy(dtype):
    info = np.iinfo(dtype)
    vals = np.array(sorted(v for v in {info.min, info.min + 1, -7, -1, 0, 1, 7, info.max}
                           if info.min <= v <= info.max), dtype)
    a, b = np.meshgrid(vals, vals)
    a, b = a.ravel(), b.ravel()

    def f(a, b):
        return [ew.floor_divide(a, b), ew.rem(a, b), ew.add(a, b) * b, ew.neg(a) - b,
                ew.abs(a) + ew.sub(b, b), lax.integer_pow(a, 3) ^ b,
                ew.shift_left(a, ew.bitwise_and(b, np.asarray(15, dtype))) + a,
                ew.shift_right(a, ew.bitwise_and(b, np.asarray(63, dtype))) + a]
    with np.errstate(all="ignore"):
        got, want = both(f, a, b)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_float_corner_cases_as_numpy():
    specials = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 0.5, 3.0, -7.0, np.inf, -np.inf, np.nan], np.float32)
    a, b = (x.ravel() for x in np.meshgrid(specials, specials))

    def f(a, b):
        return [ew.max(a, b) + 0.0, ew.min(a, b) + 0.0, ew.floor_divide(a, b) * 1.0,
                ew.rem(a, b) * 1.0, ew.round(a * 0.5 + b), ew.sign(a) * b, ew.abs(a) * 1.0,
                ew.clamp(a, np.float32(-1), b) - 0.0, ew.select(a < b, a, b) * b,
                ew.convert_element_type(a, np.float64) / ew.convert_element_type(b, np.float64),
                ew.convert_element_type(a * b, bool) & (a == b)]
    with np.errstate(all="ignore"):
        got, want = both(f, a, b)
    for g, w in zip(got, want):
        assert_same_bits(g, w)


# --- math functions ----------------------------------------------------------------------------

MATH = {  # function, input domain
    "exp": (ew.exp, (-80, 80)), "exp2": (ew.exp2, (-100, 100)), "expm1": (ew.expm1, (-5, 5)),
    "log": (ew.log, (1e-3, 1e3)), "log1p": (ew.log1p, (-0.9, 100)), "log2": (ew.log2, (1e-3, 1e3)),
    "log10": (ew.log10, (1e-3, 1e3)), "sqrt": (ew.sqrt, (0, 1e4)), "cbrt": (ew.cbrt, (-1e3, 1e3)),
    "sin": (ew.sin, (-10, 10)), "cos": (ew.cos, (-10, 10)), "tan": (ew.tan, (-1.5, 1.5)),
    "asin": (ew.asin, (-1, 1)), "acos": (ew.acos, (-1, 1)), "atan": (ew.atan, (-10, 10)),
    "sinh": (ew.sinh, (-10, 10)), "cosh": (ew.cosh, (-10, 10)), "tanh": (ew.tanh, (-10, 10)),
    "asinh": (ew.asinh, (-10, 10)), "acosh": (ew.acosh, (1, 10)), "atanh": (ew.atanh, (-0.99, 0.99)),
    "logistic": (ew.logistic, (-30, 30)), "erf": (ew.erf, (-4, 4)), "erfc": (ew.erfc, (-2, 4)),
}


@pytest.mark.parametrize("dtype", FLOAT)
def test_math_functions_within_a_few_ulps(dtype):
    rng = np.random.default_rng(0)
    xs = {name: rng.uniform(lo, hi, 1000).astype(dtype) for name, (_, (lo, hi)) in MATH.items()}

    def f(*args):        # each function, then an exact op (a single op alone is not fused)
        return [ew.neg(fn(x)) for (fn, _), x in zip(MATH.values(), args)]
    got, want = both(f, *xs.values())
    eps = np.finfo(dtype).eps
    for name, g, w in zip(MATH, got, want):
        ulps = np.abs(g - w) / np.maximum(np.abs(w), np.finfo(dtype).tiny) / eps
        assert np.max(ulps) <= 8, (name, np.max(ulps))


def test_math_functions_keep_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 100.0], np.float32)
    f = lambda x: [ew.neg(ew.tanh(x)), ew.neg(ew.exp(x)), ew.neg(ew.logistic(x)), ew.neg(ew.sqrt(x))]
    with np.errstate(all="ignore"):
        got, want = both(f, x)
    for g, w in zip(got, want):
        assert_same_bits(g, w)


# --- reductions, layouts, threads -------------------------------------------------------------

@pytest.mark.parametrize("shape,axes", [((1000,), (0,)), ((37, 200), (1,)), ((3, 4, 300), (1, 2)),
                                        ((300_000,), (0,)), ((2, 3, 70_000), (2,))])
def test_reductions_over_trailing_axes(shape, axes):
    x = arr(*shape)
    x[..., 7] = np.nan if len(shape) > 1 else x[..., 7]

    def f(x):
        y = x * 2.0 + 1.0
        return [red.reduce_sum(y, axes), red.reduce_max(y, axes), red.reduce_min(y * y, axes),
                red.reduce_sum(ew.convert_element_type(x > 0.5, np.int32) * 3, axes)]
    got, want = both(f, x)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-5, atol=1e-3)
    np.testing.assert_array_equal(got[1], want[1])          # NaN propagates as in numpy
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_array_equal(got[3], want[3])


def test_a_large_sum_is_accurate_and_the_same_every_time():
    x = np.random.default_rng(1).standard_normal(3_000_000).astype(np.float32) + 1.0
    f = jit(lambda x: fnp.sum(x * x))
    with funcgrad.config.override(backend="c"):
        got = [f(x) for _ in range(3)]
    exact = np.sum(x.astype(np.float64) ** 2)
    assert abs(float(got[0]) - exact) / exact < 1e-6
    assert got[0] == got[1] == got[2]


def test_broadcast_transposed_and_non_contiguous_inputs():
    def f(x, b, y):
        return fnp.tanh(x + b) * 2.0 + y.T
    x, b, y = arr(30, 40), arr(40, seed=1), arr(40, 30, seed=2)
    got, want = both(f, x, b, y)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # strided views and Fortran-ordered arrays are copied to C order by the kernel's entry
    xs, ys = arr(60, 40)[::2], np.asfortranarray(y)
    with funcgrad.config.override(backend="c"):
        got = jit(f)(xs, b, ys)
    np.testing.assert_allclose(got, np.tanh(xs + b) * 2 + ys.T, rtol=1e-5, atol=1e-6)


def test_kernels_are_shown_by_lower():
    f = jit(lambda x, y: fnp.exp(x) * y + 1.0)
    with funcgrad.config.override(backend="c"):
        lowered = f.lower(arr(5), arr(5))
    (kernel,) = lowered.kernels
    assert kernel.startswith("// k0: (f32[5], f32[5]) -> (f32[5]); loop over [5]")
    assert "const float v0 = fg_exp(x0);  // exp  test_codegen_c.py:" in kernel
    assert "k0_body" in kernel and "#pragma omp simd" in kernel
    assert "b, = k0(a, b)" in lowered.source.replace("  ", " ") or "= k0(a, b)" in lowered.source
    assert lowered.backend == "c"


def test_donated_buffers_take_every_kernel_output():
    # an Adam-style update of (param, m, v) with all three donated: updated in place
    def adam(p, m, v, g):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        return p - 0.01 * m / (fnp.sqrt(v) + 1e-8), m, v
    p, m, v, g = (arr(64, seed=s) for s in range(4))
    v = np.abs(v)
    want = adam(p.copy(), m.copy(), v.copy(), g)
    step = jit(adam, donate_argnums=(0, 1, 2))
    with funcgrad.config.override(backend="c"):
        assert len(step.lower(p, m, v, g).kernels) == 1
        out = step(p, m, v, g)
    assert {id(o) for o in out} == {id(p), id(m), id(v)}          # no new arrays
    for a, b in zip(out, want):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_value_and_grad_matches_numpy():
    f = lambda x: fnp.sum(fnp.tanh(x) * lax.logistic(x) + 0.5 * x ** 2)
    x = arr(100_003)
    (gv, gg), (wv, wg) = both(value_and_grad(f), x)
    np.testing.assert_allclose(gv, wv, rtol=1e-5)
    np.testing.assert_allclose(gg, wg, rtol=1e-5, atol=1e-6)


# --- the cache, concurrency, and falling back --------------------------------------------------

def _fresh_function(tag: float):
    return jit(lambda x: fnp.sin(x) * tag + fnp.cos(x))


def test_translation_units_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(codegen_c, "_loaded", {})
    x = arr(8)
    with funcgrad.config.override(backend="c"):
        want = _fresh_function(0.123)(x)
        cache.wait_for_background_work()
        assert len(list(tmp_path.glob("fg_*.so"))) == 1 and list(tmp_path.glob("fg_h_*.h.gch"))
        # later translation units include the precompiled header
        np.testing.assert_allclose(_fresh_function(0.5)(x), np.sin(x) * 0.5 + np.cos(x), rtol=1e-6)
        assert len(list(tmp_path.glob("fg_*.so"))) == 2
        # a new process (here: a fresh in-memory table) finds the library instead of compiling
        monkeypatch.setattr(codegen_c, "_loaded", {})
        monkeypatch.setattr(cache, "_compile", lambda *a: pytest.fail("compiled again"))
        np.testing.assert_array_equal(_fresh_function(0.123)(x), want)
    assert not list(tmp_path.glob(".*"))                      # no temporary files left


def test_processes_compiling_the_same_kernels_at_once(tmp_path):
    script = textwrap.dedent("""
        import sys, numpy as np, funcgrad, funcgrad.numpy as fnp
        funcgrad.config.update("backend", "c")
        f = funcgrad.jit(lambda x: fnp.tanh(x) * 0.377 + fnp.exp(-x))
        x = np.linspace(-1, 1, 50, dtype=np.float32)
        assert f.lower(x).kernels
        np.testing.assert_allclose(f(x), np.tanh(x) * 0.377 + np.exp(-x), rtol=1e-6)
        print("ok")
    """)
    env = dict(os.environ, FUNCGRAD_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "ok", err
    assert len(list(tmp_path.glob("fg_*.so"))) == 1
    assert not list(tmp_path.glob(".*"))


def test_a_missing_compiler_falls_back_to_numpy_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    monkeypatch.setattr(codegen_c, "_loaded", {})
    monkeypatch.setattr(codegen_c, "_warned", set())
    x = arr(8)
    with funcgrad.config.override(backend="auto"), \
            pytest.warns(RuntimeWarning, match="C\\+\\+ kernels are off.*no C\\+\\+ compiler found"):
        f = _fresh_function(0.5)
        lowered = f.lower(x)
    assert lowered.kernels == [] and "fused_kernel" not in str(lowered.optimized_jaxpr)
    np.testing.assert_allclose(f(x), np.sin(x) * 0.5 + np.cos(x), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                         # one warning, not one per function
        _fresh_function(0.25)(x)


def test_a_failing_compilation_falls_back_to_numpy_with_the_compilers_message(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(codegen_c, "_loaded", {})
    monkeypatch.setattr(codegen_c, "_warned", set())
    flags = codegen_c.compile_flags() + ("-fno-such-option-xyz",)
    monkeypatch.setattr(codegen_c, "compile_flags", lambda: flags)
    x = arr(8)
    with funcgrad.config.override(backend="c"), \
            pytest.warns(RuntimeWarning, match="(?s)kernels are off.*failed.*no-such-option-xyz"):
        f = _fresh_function(0.75)
        np.testing.assert_allclose(f(x), np.sin(x) * 0.75 + np.cos(x), rtol=1e-6)


# --- configuration -------------------------------------------------------------------------------

def test_backend_setting_switches_compiled_code():
    f = jit(lambda x: fnp.exp(x) * 3.0)
    x = arr(4)
    with funcgrad.config.override(backend="numpy"):
        f(x)
        assert f.lower(x).kernels == []
    with funcgrad.config.override(backend="c"):
        f(x)                                   # the fast path must not reuse the numpy code
        assert f.lower(x).kernels
    assert f.cache_info().misses == 2
    with pytest.raises(ValueError, match="must be one of 'auto', 'numpy', 'c', 'cupy', not 'gpu'"):
        funcgrad.config.update("backend", "gpu")
    with pytest.raises(TypeError, match="runs on GPU arrays"), funcgrad.config.override(backend="cupy"):
        f(x)


def test_backend_from_the_environment():
    code = "import funcgrad; print(funcgrad.config.backend)"
    run = lambda v: subprocess.run([sys.executable, "-c", code], env=dict(os.environ, FUNCGRAD_BACKEND=v),
                                   capture_output=True, text=True)
    assert run("numpy").stdout.strip() == "numpy"
    bad = run("fortran")
    assert bad.returncode != 0 and "$FUNCGRAD_BACKEND must be one of" in bad.stderr


def test_compiled_loop_bodies_use_kernels():
    def f(x):
        return lax.fori_loop(0, 5, lambda i, x: fnp.tanh(x) * 0.5 + 0.1, x)
    x = arr(10)
    got, want = both(f, x, expect_kernels=False)
    np.testing.assert_allclose(got, want, rtol=1e-6)



def test_reductions_give_the_same_bits_on_any_number_of_threads(tmp_path):
    script = textwrap.dedent("""
        import sys, numpy as np, funcgrad, funcgrad.numpy as fnp
        funcgrad.config.update("backend", "c")
        x = np.random.default_rng(7).standard_normal((3, 200_000)).astype(np.float32)
        f = funcgrad.jit(lambda x: [fnp.sum(fnp.tanh(x) * x), fnp.sum(x * 3.0, axis=1)])
        total, rows = f(x)
        sys.stdout.write(np.asarray(total).tobytes().hex() + rows.tobytes().hex())
    """)
    outs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=dict(os.environ, FUNCGRAD_NUM_THREADS=str(n), OMP_NUM_THREADS="3"))
            for n in (1, 2, 3)]
    assert all(o.returncode == 0 for o in outs), [o.stderr for o in outs]
    assert outs[0].stdout == outs[1].stdout == outs[2].stdout


def test_kernels_run_on_one_thread_unless_funcgrad_num_threads_says(tmp_path):
    """Counts the process's threads after a big kernel: OpenMP starts its workers only for a
    parallel region. OpenMP's own count (OMP_NUM_THREADS) is the cap."""
    script = textwrap.dedent("""
        import os, sys, numpy as np, funcgrad, funcgrad.numpy as fnp
        funcgrad.config.update("backend", "c")
        f = funcgrad.jit(lambda x: fnp.tanh(x) * 2.0)
        before = len(os.listdir("/proc/self/task"))
        f(np.ones(1 << 20, np.float32))
        sys.stdout.write(str(len(os.listdir("/proc/self/task")) - before))
    """)
    def extra_threads(**env):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=dict(os.environ, OPENBLAS_NUM_THREADS="1", **env))
        assert out.returncode == 0, out.stderr
        return int(out.stdout)
    assert extra_threads(OMP_NUM_THREADS="3") == 0
    assert extra_threads(OMP_NUM_THREADS="3", FUNCGRAD_NUM_THREADS="3") == 2
    assert extra_threads(OMP_NUM_THREADS="2", FUNCGRAD_NUM_THREADS="8") == 1


def test_loops_with_selects_vectorize(tmp_path):
    """Selects on float comparisons (where, max, logistic) must become vector blends: with
    GCC's default -ftrapping-math they are left as branches on CPUs without AVX-512 masks and
    the whole kernel runs scalar (seen: logistic 12x slower)."""
    from funcgrad.compiler import cache, codegen_c
    if "g++" not in cache.find_compiler().identity and "GCC" not in cache.find_compiler().identity:
        pytest.skip("reads GCC's vectorizer report (-fopt-info-vec)")
    lowered = jit(lambda x: lax.logistic(x) * fnp.where(x > 0.5, x, fnp.maximum(x, -1.0))).lower(
        np.ones(64, np.float32))
    src = tmp_path / "k.cpp"
    src.write_text(codegen_c.common_header() + lowered.kernels[0])
    flags = [f for f in codegen_c.compile_flags() if f != "-shared" and not f.startswith("-l")]
    done = subprocess.run([*cache.find_compiler().command, *flags, "-fkeep-static-functions",
                           "-c", "-fopt-info-vec-all", "-o", str(tmp_path / "k.o"), str(src)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    body_line = next(i for i, line in enumerate(src.read_text().splitlines(), 1)
                     if "k0_body(a0[jj]" in line)
    reports = [line for line in done.stderr.splitlines() if f"k.cpp:{body_line}:" in line]
    assert any("loop vectorized" in line for line in reports), "\n".join(reports[:5])
