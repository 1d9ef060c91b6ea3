"""jit benchmarks (issue 5), standalone: ``python benchmarks/bench_jit.py [--quick]``.

* dispatch: a jitted function of 50 small elementwise ops on a length-16 float32 array, per
  call, against the same ops in plain NumPy and in eager funcgrad;
* MLP step: one SGD step of an MLP 784-512-512-10, batch 128, softmax cross-entropy, under
  ``jit(value_and_grad)`` (with and without donating the parameters), against the
  hand-written NumPy step;
* compile time of that step: the first call of a fresh ``jit`` (trace, passes, codegen).

The workloads are the suite's own (``benchmarks/workloads``), so the numbers compare with
``python -m benchmarks``. Variants are timed interleaved, round-robin, and medians reported.
Like the suite, the script runs single-threaded with ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE``
removed (it re-executes itself with that environment when needed).
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _ensure_environment():
    """Re-exec with one BLAS thread and without the OpenBLAS overrides (before numpy loads)."""
    if any(os.environ.get(k) != v for k, v in THREADS.items()) or any(k in os.environ for k in UNSET):
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.update(THREADS)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


_ensure_environment()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import funcgrad  # noqa: E402
import funcgrad.numpy as fnp  # noqa: E402
from benchmarks.workloads import dispatch, mlp  # noqa: E402
from benchmarks.workloads.common import sgd_step  # noqa: E402


def blas_info() -> str:
    try:
        import threadpoolctl
    except ImportError:
        return "BLAS: unknown (install threadpoolctl to see the kernel in use)"
    libs = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, "
            f"{i['num_threads']} thread(s))" for i in threadpoolctl.threadpool_info()
            if i.get("user_api") == "blas"]
    return "BLAS: " + "; ".join(libs)


def interleaved(variants: dict, rounds: int, number: int) -> dict[str, tuple[float, float]]:
    """Median seconds per call of each variant, ``(wall, cpu)``, timed round-robin in
    ``rounds`` batches of ``number`` calls (so load changes hit every variant alike). CPU
    time (of this single-threaded process) is the steadier figure on a shared machine."""
    samples = {name: [] for name in variants}
    for run in variants.values():
        run()                                               # warm up (and compile)
    for _ in range(rounds):
        for name, run in variants.items():
            w, c = time.perf_counter(), time.process_time()
            for _ in range(number):
                run()
            samples[name].append(((time.perf_counter() - w) / number,
                                  (time.process_time() - c) / number))
    return {name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
            for name, s in samples.items()}


def table(title: str, results: dict, unit: str, scale: float, base: str):
    print(f"\n{title}")
    print(f"  {'':34s} {'wall':>10s} {'cpu':>10s}  (median {unit}; ratio of cpu times)")
    bw, bc = results[base]
    for name, (w, c) in results.items():
        print(f"  {name:34s} {w * scale:10.2f} {c * scale:10.2f}   x{c / bc:.2f} of {base}")


def bench_dispatch(quick: bool):
    x = dispatch.make_inputs()["x"]
    jitted = funcgrad.jit(functools.partial(dispatch.fifty_ops, fnp))
    np.testing.assert_allclose(jitted(x), dispatch.fifty_ops(np, x), rtol=1e-5)
    results = interleaved({
        "funcgrad.jit": lambda: jitted(x),
        "numpy": lambda: dispatch.fifty_ops(np, x),
        "funcgrad eager": lambda: dispatch.fifty_ops(fnp, x),
    }, rounds=5 if quick else 21, number=200 if quick else 1000)
    table("dispatch: 50 elementwise ops on f32[16], per call", results, "us", 1e6, "funcgrad.jit")
    return results


def _mlp_step():
    return sgd_step(funcgrad.value_and_grad, functools.partial(mlp.loss, fnp))


def bench_mlp(quick: bool):
    inputs = mlp.make_inputs()
    params, x, y = mlp.params_of(inputs), inputs["x"], inputs["y"]
    step = funcgrad.jit(_mlp_step())
    donating = funcgrad.jit(_mlp_step(), donate_argnums=0)
    state = {"params": [p.copy() for p in params]}

    def donated_step():
        # The parameters are updated in place, as in training; the step reads only its own.
        state["params"] = donating(state["params"], x, y)[1]

    reference = mlp.numpy_(inputs)
    want_loss, want_params = reference()
    got_loss, got_params = step(params, x, y)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for g, w, p in zip(got_params, want_params, params):
        np.testing.assert_allclose(g - p, w - p, rtol=1e-3, atol=1e-6)
    results = interleaved({
        "funcgrad.jit(value_and_grad)": lambda: step(params, x, y),
        "  ... donate_argnums=0": donated_step,
        "numpy (hand-written)": reference,
    }, rounds=5 if quick else 15, number=3 if quick else 10)
    table("MLP 784-512-512-10 SGD step, batch 128", results, "ms", 1e3, "numpy (hand-written)")
    return results


def bench_compile(quick: bool):
    inputs = mlp.make_inputs()
    params, x, y = mlp.params_of(inputs), inputs["x"], inputs["y"]
    firsts, stages = [], []
    for _ in range(3 if quick else 11):
        step = funcgrad.jit(_mlp_step())
        t = time.perf_counter()
        step(params, x, y)
        firsts.append(time.perf_counter() - t)
        stages.append(step.lower(params, x, y).timings)
    first = statistics.median(firsts)
    print(f"\ncompile time of the MLP step (first call of a fresh jit): {first * 1e3:.1f} ms")
    for stage in stages[0]:
        print(f"  {stage:10s} {statistics.median(s[stage] for s in stages) * 1e3:8.2f} ms")
    return first


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    print(f"numpy {np.__version__}; {blas_info()}; threads: "
          + ", ".join(f"{k}={os.environ.get(k)}" for k in THREADS))
    bench_dispatch(args.quick)
    bench_mlp(args.quick)
    bench_compile(args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
