"""The cupy backend's CUDA kernels, checked without a GPU, and for real where one exists.

* Every generated translation unit is compile-checked for the GPU: with NVRTC (the
  ``nvidia-cuda-nvrtc`` wheel, as cupy compiles RawModules: ``-std=c++17`` and an explicit
  ``--gpu-architecture=compute_90``, so no device is queried) or else ``nvcc --ptx
  -arch=sm_90``; a kernel that does not compile fails with the compiler's message.
* The same source built by the host compiler defines the same entry points as sequential
  loops. A stand-in ``cupy`` module (numpy arrays, and RawModules built that way) then runs
  the real launch code of the cupy backend on the CPU, and the numbers are compared with the
  numpy code path.
* Tests marked ``gpu`` run on a real GPU (they are skipped where cupy finds none).
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import jit, lax, make_jaxpr, value_and_grad
from funcgrad.compiler import cache, codegen_cupy, fusion, passes, pipeline
from funcgrad.primitives import elementwise as ew

from fusion_programs import assert_same_bits, programs, side_by_side

ARCH = "90"


# --- compiling for the GPU ----------------------------------------------------------------------

def _nvrtc_library() -> str | None:
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "*", "lib", "libnvrtc.so*")))
        found = [f for f in found if "builtins" not in f]
        if found:
            return found[0]
    return None


def _nvrtc_check(lib_path: str, source: str) -> str | None:
    """None if NVRTC compiles ``source``, else its log."""
    lib = ctypes.CDLL(lib_path)
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"funcgrad.cu", 0, None, None) == 0
    opts = [b"-std=c++17", f"--gpu-architecture=compute_{ARCH}".encode()]
    try:
        status = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        if status == 0:
            return None
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        return log.value.decode(errors="replace")
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _nvcc_check(nvcc: str, source: str) -> str | None:
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "kernels.cu")
        with open(src, "w") as f:
            f.write(source)
        done = subprocess.run([nvcc, "--ptx", f"-arch=sm_{ARCH}", "-std=c++17", src, "-o",
                               os.path.join(d, "kernels.ptx")], capture_output=True, text=True)
        return None if done.returncode == 0 else done.stderr


def gpu_compile_check(source: str) -> None:
    """Compile ``source`` for the GPU; skip when no CUDA compiler is installed."""
    nvrtc = _nvrtc_library()
    if nvrtc is not None:
        log = _nvrtc_check(nvrtc, source)
    elif shutil.which("nvcc"):
        log = _nvcc_check(shutil.which("nvcc"), source)
    else:
        pytest.skip("no CUDA compiler: install nvidia-cuda-nvrtc, or put nvcc on the PATH")
    assert log is None, f"CUDA compilation failed:\n{log}\n--- source ---\n{source}"


# --- a stand-in cupy that runs the kernels' host build -------------------------------------------

HOST_FLAGS = ("-O1", "-shared", "-fPIC", "-std=c++17", "-ffp-contract=off", "-w")


class HostRawModule:
    """``cupy.RawModule`` for the CPU: the CUDA source compiled by the host compiler."""

    def __init__(self, code: str, options=()):
        assert "-std=c++17" in options
        self.lib = ctypes.CDLL(str(cache.build(code, HOST_FLAGS)))

    def get_function(self, name: str):
        fn = getattr(self.lib, name)

        def launch(grid, block, args):
            assert len(grid) == 1 and len(block) == 1 and grid[0] >= 1 and block[0] >= 1
            converted = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else ctypes.c_int64(int(a))
                         for a in args]
            fn(*converted)
        return launch


def fake_cupy() -> types.ModuleType:
    module = types.ModuleType("cupy")
    module.__getattr__ = lambda name: getattr(np, name)
    module.RawModule = HostRawModule
    module.ndarray = type("ndarray", (), {})     # its arrays are numpy's: none is a GPU array
    return module


@pytest.fixture
def host_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())


def run_cupy_backend(f, *args):
    """Lower ``f`` for the cupy backend and run it with the stand-in cupy: (results, kernels)."""
    closed = make_jaxpr(f)(*args)
    lowering = pipeline.lower_jaxpr(closed, "cupy", "f")
    return lowering.executable.fn(*args), lowering


def numpy_path(f, *args):
    with funcgrad.config.override(backend="numpy"):
        return jit(f)(*args)


# --- tests ---------------------------------------------------------------------------------------

def arr(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.needs_compiler
def test_value_and_grad_kernel_compiles_for_the_gpu_and_runs_on_the_host(host_cupy):
    f = value_and_grad(lambda x: fnp.sum(fnp.tanh(x) * lax.logistic(x) + 0.5 * x ** 2))
    x = arr(5000)
    (value, grad), lowering = run_cupy_backend(f, x)
    assert len(lowering.kernels) == 1 and "k0_part_kernel" in lowering.kernels[0]
    want_value, want_grad = numpy_path(f, x)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-6)
    gpu_compile_check(codegen_cupy.translation_unit(
        fusion.fuse(passes.optimize(make_jaxpr(f)(x)))[1], "f").source)


@pytest.mark.needs_compiler
def test_softmax_cross_entropy_and_broadcasts(host_cupy):
    def loss(z, y, b):
        z = z + b
        z = z - fnp.max(z, axis=-1, keepdims=True)
        return fnp.mean(fnp.log(fnp.sum(fnp.exp(z), axis=-1)) - fnp.sum(y * z, axis=-1))
    z, y, b = arr(64, 10), arr(64, 10, seed=1), arr(10, seed=2)
    f = value_and_grad(loss)
    got, lowering = run_cupy_backend(f, z, y, b)
    want = numpy_path(f, z, y, b)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-7)
    assert len(lowering.kernels) >= 2
    gpu_compile_check(lowering_source(f, z, y, b))


def lowering_source(f, *args) -> str:
    closed = passes.optimize(passes.inline_for_execution(make_jaxpr(f)(*args)))
    return codegen_cupy.translation_unit(fusion.fuse(closed)[1], "f").source


@pytest.mark.needs_compiler
@settings(max_examples=6, deadline=None)
@given(progs=st.lists(programs(), min_size=2, max_size=4), seed=st.integers(0, 2 ** 16))
def test_random_exact_programs_on_the_gpu_code_path(progs, seed):
    f, flat = side_by_side(progs, np.random.default_rng(seed))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "cupy", fake_cupy())
        with np.errstate(all="ignore"):
            got, lowering = run_cupy_backend(f, *flat)
    with np.errstate(all="ignore"):
        want = numpy_path(f, *flat)
    for i, (g, w) in enumerate(zip(got, want)):
        prog = progs[i // 2]
        if i % 2 == 0 and prog.reduce is not None and prog.reduce[0] == "sum" and w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(w), initial=1.0))
        elif i % 2 == 0 and prog.reduce is not None:
            np.testing.assert_array_equal(g, w)
        else:
            assert_same_bits(g, w, err_msg=str(prog))
    if lowering.kernels:
        gpu_compile_check(lowering_source(f, *flat))


def test_a_failing_cuda_compilation_falls_back_to_array_code(monkeypatch):
    class BrokenRawModule:
        def __init__(self, code, options=()):
            raise RuntimeError("nvrtc: error: simulated failure")
    cupy = fake_cupy()
    cupy.RawModule = BrokenRawModule
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(funcgrad.compiler.codegen_c, "_warned", set())
    f = lambda x: fnp.exp(x) * 2.0 + 1.0
    x = arr(5)
    with pytest.warns(RuntimeWarning, match="CUDA kernels are off.*simulated failure"):
        got, lowering = run_cupy_backend(f, x)
    assert lowering.kernels == []
    np.testing.assert_allclose(got[0], np.exp(x) * 2 + 1, rtol=1e-6)


def test_every_math_function_compiles_for_the_gpu():
    fns = [ew.exp, ew.exp2, ew.expm1, ew.log, ew.log1p, ew.log2, ew.log10, ew.sqrt, ew.rsqrt,
           ew.cbrt, ew.sin, ew.cos, ew.tan, ew.asin, ew.acos, ew.atan, ew.sinh, ew.cosh, ew.tanh,
           ew.asinh, ew.acosh, ew.atanh, ew.logistic, ew.erf, ew.erfc, ew.floor, ew.ceil,
           ew.round, ew.sign, ew.abs, ew.is_finite]
    pairs = [ew.pow, ew.atan2, ew.rem, ew.floor_divide, ew.nextafter, ew.max, ew.min]

    def f(x, y, i, j):
        outs = [ew.neg(ew.convert_element_type(fn(x), np.float32)) for fn in fns]
        outs += [ew.neg(fn(x, y)) for fn in pairs]
        outs += [ew.shift_left(i, j) + ew.shift_right(i, j) * ew.rem(i, j) + ew.floor_divide(i, j),
                 ew.bitcast_convert_type(x, i.aval.dtype) ^ i, ew.bitwise_not(i) | lax.integer_pow(j, 3)]
        return outs
    for dtype, itype in ((np.float32, np.int32), (np.float64, np.int64)):
        args = (arr(8, dtype=dtype), arr(8, dtype=dtype, seed=1), np.arange(8, dtype=itype),
                np.arange(8, dtype=itype)[::-1].copy())
        gpu_compile_check(lowering_source(f, *args))


def test_all_dtypes_compile_for_the_gpu():
    dtypes = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
              np.uint64, np.float32, np.float64]

    def f(*xs):
        outs = []
        for x in xs:
            y = ew.max(x, x) if x.aval.dtype == np.bool_ else x * x + x
            outs += [y, fnp.sum(y, axis=-1) if x.aval.dtype != np.bool_ else fnp.max(y, axis=-1)]
        return outs
    gpu_compile_check(lowering_source(f, *(np.ones((3, 4), d) for d in dtypes)))


def test_a_bad_kernel_fails_the_compile_check():
    nvrtc = _nvrtc_library()
    if nvrtc is None and shutil.which("nvcc") is None:
        pytest.skip("no CUDA compiler")
    with pytest.raises(AssertionError, match="CUDA compilation failed"):
        gpu_compile_check('extern "C" __global__ void k(float* x) { x[0] = undefined_function(); }')


# --- devices -----------------------------------------------------------------------------------

def test_devices_and_device_put_on_the_cpu():
    assert funcgrad.devices()[0] == funcgrad.device.Device("cpu", 0)
    x = {"a": [1.0, 2.0], "b": np.arange(3)}
    out = funcgrad.device_put(x, "cpu")
    assert all(isinstance(a, np.ndarray) for a in out["a"]) and out["b"] is x["b"]
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        funcgrad.device_put(x, "tpu")


def test_device_put_to_a_missing_gpu_says_why():
    try:
        import cupy
        if cupy.is_available():
            pytest.skip("a GPU is present")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="needs (cupy|a CUDA GPU)"):
        funcgrad.device_put(np.ones(3), "gpu")


class FakeGpuArray:
    """Looks like a cupy array to jit (the stand-in cupy's ndarray type)."""
    __cuda_array_interface__: dict = {}

    def __init__(self, a):
        self.shape, self.dtype = a.shape, a.dtype


def test_mixing_gpu_and_cpu_arguments_is_an_error(monkeypatch):
    cupy = fake_cupy()
    cupy.ndarray = FakeGpuArray
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    f = jit(lambda params, x: params["w"] * x)
    with pytest.raises(TypeError, match=r"arguments on the GPU \(params\['w'\]\) and on the CPU \(x\) "
                                        r"cannot be mixed.*device_put"):
        f({"w": FakeGpuArray(np.ones(3, np.float32))}, np.ones(3, np.float32))


# --- on a real GPU ----------------------------------------------------------------------------

@pytest.mark.gpu
def test_jit_runs_fused_kernels_on_the_gpu():
    import cupy
    f = jit(value_and_grad(lambda x: fnp.sum(fnp.tanh(x) * lax.logistic(x) + 0.5 * x ** 2)))
    x = arr(1 << 20)
    xg = funcgrad.device_put(x, "gpu")
    value, grad = f(xg)
    assert isinstance(grad, cupy.ndarray)
    assert f.lower(xg).backend == "cupy" and f.lower(xg).kernels
    want = numpy_path(f._fun, x)
    np.testing.assert_allclose(float(value), want[0], rtol=1e-5)
    np.testing.assert_allclose(funcgrad.device_put(grad, "cpu"), want[1], rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_mlp_step_on_the_gpu():
    import cupy
    from benchmarks.workloads import mlp
    inputs = mlp.make_inputs(batch=32)
    step = jit(mlp._funcgrad_step())
    params = [funcgrad.device_put(p, "gpu") for p in mlp.params_of(inputs)]
    loss, new = step(params, funcgrad.device_put(inputs["x"], "gpu"), funcgrad.device_put(inputs["y"], "gpu"))
    assert all(isinstance(p, cupy.ndarray) for p in new)
    want_loss, want = numpy_path(mlp._funcgrad_step(), mlp.params_of(inputs), inputs["x"], inputs["y"])
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-4)
    for a, b in zip(new, want):
        np.testing.assert_allclose(a.get(), b, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_mixing_real_gpu_and_cpu_arrays_is_an_error():
    xg = funcgrad.device_put(np.ones(3, np.float32), "gpu")
    with pytest.raises(TypeError, match="cannot be mixed"):
        jit(lambda a, b: a + b)(xg, np.ones(3, np.float32))
