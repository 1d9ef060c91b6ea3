"""Eager per-op overhead of funcgrad.numpy over NumPy (issue 2's acceptance benchmark).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_eager_overhead.py

With no transform active, a funcgrad.numpy function checks that nothing is being traced and
calls NumPy. This script times that against calling NumPy directly, for a unary op, a binary
op with broadcasting and a reduction (plus a few more), on a small array (where the overhead
is the whole story) and a medium one. Each variant is timed in alternating batches, and the
minimum per-call time is reported (the least disturbed by other load). The goal is an
overhead under 3 microseconds for a unary op.
"""
from __future__ import annotations

import argparse
import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import funcgrad.numpy as fnp  # noqa: E402

GOAL_US = 3.0


def cases(n: int):
    """(label, numpy call, funcgrad.numpy call) on arrays with ``n`` rows."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 16)).astype(np.float32)
    row = rng.standard_normal((1, 16)).astype(np.float32)
    return [
        ("exp(x)                [unary]", lambda: np.exp(x), lambda: fnp.exp(x)),
        ("add(x, row)       [broadcast]", lambda: np.add(x, row), lambda: fnp.add(x, row)),
        ("sum(x, axis=0)    [reduction]", lambda: np.sum(x, axis=0), lambda: fnp.sum(x, axis=0)),
        ("multiply(x, 2.0)", lambda: np.multiply(x, 2.0), lambda: fnp.multiply(x, 2.0)),
        ("where(x > 0, x, 0)", lambda: np.where(x > 0, x, 0), lambda: fnp.where(x > 0, x, 0)),
        ("mean(x, axis=1)", lambda: np.mean(x, axis=1), lambda: fnp.mean(x, axis=1)),
        ("reshape(x, (-1,))", lambda: np.reshape(x, (-1,)), lambda: fnp.reshape(x, (-1,))),
        ("matmul(x, x.T)", lambda: np.matmul(x, x.T), lambda: fnp.matmul(x, x.T)),
    ]


def per_call_us(fn, number: int, rounds: int) -> list[float]:
    return [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=rounds)]


def measure(numpy_fn, fnp_fn, number: int, rounds: int) -> tuple[float, float]:
    """Minimum microseconds per call of each, timed in alternating batches."""
    a, b = [], []
    for _ in range(rounds):
        a += per_call_us(numpy_fn, number, 1)
        b += per_call_us(fnp_fn, number, 1)
    return min(a), min(b)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    number, rounds = (2_000, 5) if args.quick else (20_000, 15)
    unsets = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if unsets:
        print(f"note: {', '.join(unsets)} set; run with `env -u` as the docstring says")
    print(f"numpy {np.__version__}, python {sys.version.split()[0]}; minimum of {rounds} "
          f"batches of {number} calls\n")
    header = f"{'operation':32s} {'shape':>8s} {'numpy us':>9s} {'funcgrad us':>12s} " \
             f"{'overhead us':>12s} {'ratio':>6s}"
    print(header)
    print("-" * len(header))
    unary_overheads = []
    for n in (1, 256):
        for label, numpy_fn, fnp_fn in cases(n):
            t_np, t_fg = measure(numpy_fn, fnp_fn, number, rounds)
            if "[unary]" in label:
                unary_overheads.append(t_fg - t_np)
            print(f"{label:32s} {f'{n}x16':>8s} {t_np:9.2f} {t_fg:12.2f} {t_fg - t_np:12.2f} "
                  f"{t_fg / t_np:6.2f}")
        print()
    worst = max(unary_overheads)
    verdict = "meets" if worst < GOAL_US else "MISSES"
    print(f"unary-op overhead: {worst:.2f} us ({verdict} the goal of < {GOAL_US:.0f} us)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
