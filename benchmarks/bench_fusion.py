"""Fused-kernel benchmarks (issue 6), standalone: ``python benchmarks/bench_fusion.py [--quick]``.

Each row is ``jit`` with fused C++ kernels (the default backend) against the same ``jit``
without kernels (``funcgrad.config.backend = "numpy"``: generated numpy code) and, where
installed, JAX's ``jit`` (run it with the benchmark venv to get those rows):

* elementwise: ``value_and_grad`` of ``sum(tanh(x)*sigmoid(x) + 0.5*x**2)`` on 4M float32;
* dispatch: the 50-op function of the jit benchmark on f32[16], per call;
* adam: one Adam update of the MLP's parameters (donated); the kernels per shape group;
* mlp: the MLP's SGD training step;
* compile: the MLP step's first call in a fresh process, with an empty kernel cache (cold)
  and with the disk cache filled (warm), and the time spent building kernels.

Like the jit benchmark it runs single-threaded (``OMP_NUM_THREADS=1``) without
``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (re-executing itself when needed), times the
variants interleaved, and prints medians with the range over rounds (the machine is shared).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ensure_environment():
    if any(os.environ.get(k) != v for k, v in THREADS.items()) or any(k in os.environ for k in UNSET):
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.update(THREADS)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


if __name__ == "__main__":
    _ensure_environment()
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import funcgrad  # noqa: E402
import funcgrad.numpy as fnp  # noqa: E402
from benchmarks.workloads import dispatch, elementwise, mlp  # noqa: E402
from benchmarks.workloads.common import sgd_step  # noqa: E402


def _jax():
    try:
        import jax
        import jax.numpy as jnp
        return jax, jnp
    except ImportError:
        return None, None


def timed(variants: dict, rounds: int, number: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, per round, timed round-robin."""
    samples = {name: [] for name in variants}
    for run in variants.values():
        run()                                   # warm up (compiles)
    for _ in range(rounds):
        for name, run in variants.items():
            t = time.perf_counter()
            for _ in range(number):
                run()
            samples[name].append((time.perf_counter() - t) / number)
    return samples


def table(title: str, samples: dict, unit: str, scale: float, base: str) -> dict[str, float]:
    print(f"\n{title}")
    print(f"  {'':40s} {'median':>9s}  {'range over rounds':>19s}  ratio to {base}")
    medians = {k: statistics.median(v) for k, v in samples.items()}
    for name, s in samples.items():
        print(f"  {name:40s} {medians[name] * scale:9.3f}  [{min(s) * scale:8.3f}, {max(s) * scale:8.3f}]"
              f"  x{medians[name] / medians[base]:.2f}  {unit}")
    return medians


def unfused(f):
    """``f`` jitted without kernels (numpy code)."""
    jitted = funcgrad.jit(f)

    def run(*args):
        with funcgrad.config.override(backend="numpy"):
            return jitted(*args)
    return run


def bench_elementwise(quick: bool):
    x = elementwise.make_inputs()["x"]
    fn = functools.partial(elementwise.f, fnp, funcgrad.lax.logistic)
    fused = funcgrad.jit(funcgrad.value_and_grad(fn))
    plain = unfused(funcgrad.value_and_grad(fn))
    ref_value, ref_grad = elementwise.numpy_(elementwise.make_inputs())()
    value, grad = fused(x)
    np.testing.assert_allclose(value, ref_value, rtol=1e-4)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)
    print(f"\nelementwise: {len(fused.lower(x).kernels)} kernel(s)")
    variants = {"funcgrad.jit (fused C++)": lambda: fused(x),
                "funcgrad.jit (numpy code, unfused)": lambda: plain(x),
                "numpy (hand-written)": elementwise.numpy_(elementwise.make_inputs())}
    jax, jnp = _jax()
    if jax is not None:
        variants["jax.jit"] = elementwise.jax_jit(elementwise.make_inputs())
    return table("value_and_grad of sum(tanh(x)*sigmoid(x) + 0.5*x**2), 4M f32",
                 timed(variants, 5 if quick else 15, 3 if quick else 10), "ms", 1e3,
                 "funcgrad.jit (fused C++)")


def bench_dispatch(quick: bool):
    x = dispatch.make_inputs()["x"]
    fn = functools.partial(dispatch.fifty_ops, fnp)
    fused, plain = funcgrad.jit(fn), unfused(fn)
    np.testing.assert_allclose(fused(x), dispatch.fifty_ops(np, x), rtol=1e-5)
    variants = {"funcgrad.jit (fused C++)": lambda: fused(x),
                "funcgrad.jit (numpy code, unfused)": lambda: plain(x),
                "numpy": lambda: dispatch.fifty_ops(np, x)}
    jax, _ = _jax()
    if jax is not None:
        variants["jax.jit"] = dispatch.jax_jit(dispatch.make_inputs())
    return table("dispatch: 50 elementwise ops on f32[16], per call",
                 timed(variants, 5 if quick else 15, 500 if quick else 2000), "us", 1e6,
                 "funcgrad.jit (fused C++)")


def adam_step(params, state, grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam update (the formula of funcgrad_nn.optim.adam), state = (count, m, v)."""
    count, ms, vs = state
    count = count + 1
    c1, c2 = 1 - b1 ** count, 1 - b2 ** count
    ms = [b1 * m + (1 - b1) * g for m, g in zip(ms, grads)]
    vs = [b2 * v + (1 - b2) * g * g for v, g in zip(vs, grads)]
    params = [p - lr * (m / c1) / (fnp.sqrt(v / c2) + eps) for p, m, v in zip(params, ms, vs)]
    return params, (count, ms, vs)


def bench_adam(quick: bool):
    inputs = mlp.make_inputs()
    params = mlp.params_of(inputs)
    rng = np.random.default_rng(5)
    grads = [rng.standard_normal(p.shape).astype(np.float32) * 0.01 for p in params]

    def fresh_state():
        return (np.zeros((), np.float32), [np.zeros_like(p) for p in params],
                [np.zeros_like(p) for p in params])
    fused = funcgrad.jit(adam_step, donate_argnums=(0, 1))
    plain_jit = funcgrad.jit(adam_step, donate_argnums=(0, 1))
    lowered = fused.lower([p.copy() for p in params], fresh_state(), grads)
    shapes = sorted({p.shape for p in params})
    print(f"\nadam: {len(lowered.kernels)} kernels for {len(params)} parameters of "
          f"{len(shapes)} shapes {shapes}")
    want = adam_step([p.copy() for p in params], fresh_state(), grads)
    got = fused([p.copy() for p in params], fresh_state(), grads)
    for a, b in zip(got[0], want[0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    run_state = {"fused": ([p.copy() for p in params], fresh_state()),
                 "numpy": ([p.copy() for p in params], fresh_state())}

    def step_fused():
        p, s = run_state["fused"]
        run_state["fused"] = fused(p, s, grads)

    def step_plain():
        p, s = run_state["numpy"]
        with funcgrad.config.override(backend="numpy"):
            run_state["numpy"] = plain_jit(p, s, grads)
    return table("Adam update of the MLP parameters (donated), per step",
                 timed({"funcgrad.jit (fused C++)": step_fused,
                        "funcgrad.jit (numpy code, unfused)": step_plain},
                       5 if quick else 15, 5 if quick else 20), "ms", 1e3, "funcgrad.jit (fused C++)")


def bench_mlp(quick: bool):
    inputs = mlp.make_inputs()
    params, x, y = mlp.params_of(inputs), inputs["x"], inputs["y"]
    step = sgd_step(funcgrad.value_and_grad, functools.partial(mlp.loss, fnp))
    fused, plain = funcgrad.jit(step), unfused(step)
    print(f"\nmlp: {len(fused.lower(params, x, y).kernels)} kernels")
    variants = {"funcgrad.jit (fused C++)": lambda: fused(params, x, y),
                "funcgrad.jit (numpy code, unfused)": lambda: plain(params, x, y),
                "numpy (hand-written)": mlp.numpy_(inputs)}
    jax, _ = _jax()
    if jax is not None:
        variants["jax.jit"] = mlp.jax_jit(inputs)
    return table("MLP 784-512-512-10 SGD step, batch 128",
                 timed(variants, 5 if quick else 15, 3 if quick else 10), "ms", 1e3,
                 "funcgrad.jit (fused C++)")


COMPILE_SCRIPT = """
import json, sys, time, functools
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import numpy as np, funcgrad, funcgrad.numpy as fnp
from benchmarks.workloads import mlp
from benchmarks.workloads.common import sgd_step
inputs = mlp.make_inputs()
params, x, y = mlp.params_of(inputs), inputs["x"], inputs["y"]
step = funcgrad.jit(sgd_step(funcgrad.value_and_grad, functools.partial(mlp.loss, fnp)))
t1 = time.perf_counter()
step(params, x, y)
t2 = time.perf_counter()
lowered = step.lower(params, x, y)
print(json.dumps({{"first_call": t2 - t1, "kernels": len(lowered.kernels), **lowered.timings}}))
"""


def bench_compile(quick: bool):
    """First call of the MLP step in fresh processes: cold (empty cache), then warm."""
    rows = {"cold": [], "warm": []}
    for _ in range(2 if quick else 5):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, FUNCGRAD_CACHE_DIR=cache)
            for kind in ("cold", "warm"):
                out = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT.format(root=ROOT)], env=env,
                                     capture_output=True, text=True, check=True).stdout
                rows[kind].append(json.loads(out.strip().splitlines()[-1]))
    print(f"\ncompile time of the MLP step's {rows['cold'][0]['kernels']} kernels, fresh process "
          "(median [range] ms)")
    result = {}
    for kind, runs in rows.items():
        for key in ("fuse", "first_call"):
            vals = [r[key] for r in runs]
            result[f"{kind} {key}"] = statistics.median(vals)
            label = "building kernels (fuse stage)" if key == "fuse" else "first call (trace..run)"
            print(f"  {kind:5s} {label:32s} {statistics.median(vals) * 1e3:8.1f}  "
                  f"[{min(vals) * 1e3:.1f}, {max(vals) * 1e3:.1f}]")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", nargs="*", help="elementwise dispatch adam mlp compile")
    args = parser.parse_args(argv)
    jax, _ = _jax()
    print(f"numpy {np.__version__}; jax {'not installed' if jax is None else jax.__version__}; "
          f"funcgrad backend {funcgrad.config.backend}; threads: "
          + ", ".join(f"{k}={os.environ.get(k)}" for k in THREADS))
    benches = {"elementwise": bench_elementwise, "dispatch": bench_dispatch, "adam": bench_adam,
               "mlp": bench_mlp, "compile": bench_compile}
    for name in args.only or benches:
        benches[name](args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
