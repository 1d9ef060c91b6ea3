"""What a benchmark is made of, how results are compared, and how a call is timed.

A :class:`Workload` is a list of :class:`Case` objects. A case makes its inputs (NumPy arrays,
fixed seed) and holds one *builder* per implementation variant: ``builder(inputs)`` converts
the inputs to its library's arrays, does any one-off preparation, and returns a zero-argument
``run`` whose every call computes the full result (blocking until it is ready). Variants are
named ``library`` or ``library.flavour`` ("funcgrad.jit", "torch.func"); the part before the
first dot names the library, and so the worker process that runs it.

Every variant's first result is compared with the case's reference variant (hand-written
NumPy) before it is timed; a variant that disagrees gets no time.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

LIBRARIES = ("funcgrad", "numpy", "autograd", "jax", "torch")

Inputs = Mapping[str, np.ndarray]
Builder = Callable[[Inputs], Callable[[], Any]]


class Unavailable(Exception):
    """The library lacks a feature this variant needs; the suite reports the reason."""


def require(module: Any, path: str) -> Any:
    """``module.<path>`` (dotted), or :class:`Unavailable` naming what is missing."""
    obj = module
    for part in path.split("."):
        if not hasattr(obj, part):
            raise Unavailable(f"{module.__name__}.{path} does not exist in this version")
        obj = getattr(obj, part)
    return obj


def library_of(variant: str) -> str:
    return variant.split(".", 1)[0]


def flatten_result(result: Any) -> list[Any]:
    """The leaves of a result made of tuples, lists and dicts (dict keys in sorted order)."""
    if isinstance(result, (tuple, list)):
        return [leaf for item in result for leaf in flatten_result(item)]
    if isinstance(result, dict):
        return [leaf for key in sorted(result) for leaf in flatten_result(result[key])]
    return [result]


def to_numpy(leaf: Any) -> np.ndarray:
    """A host NumPy array for one result leaf of any library (torch tensors included)."""
    if hasattr(leaf, "detach") and hasattr(leaf, "numpy"):  # torch.Tensor, without importing torch
        return leaf.detach().cpu().numpy()
    return np.asarray(leaf)


def leaves(result: Any) -> list[np.ndarray]:
    return [to_numpy(leaf) for leaf in flatten_result(result)]


def _observe_leaves(inputs: Inputs, raw: list[np.ndarray]) -> list[np.ndarray]:
    return raw


@dataclass(frozen=True)
class Case:
    """One computation measured across libraries.

    ``observe(inputs, raw_leaves)`` maps a result's leaves to the arrays that are compared (a
    training step compares the loss and each parameter's update rather than the new
    parameters, whose leading digits are the old ones). ``measured`` lists the variants this
    case times (default: every builder); the reference is built even when not measured.
    """
    name: str
    make_inputs: Callable[[], dict[str, np.ndarray]]
    impls: Mapping[str, Builder]
    tol: float = 1e-4
    observe: Callable[[Inputs, list[np.ndarray]], list[np.ndarray]] = _observe_leaves
    reference: str = "numpy"
    measured: tuple[str, ...] | None = None

    def variants(self) -> tuple[str, ...]:
        return tuple(self.impls) if self.measured is None else self.measured


@dataclass(frozen=True)
class Workload:
    """A named group of cases and how they are measured.

    kind "time": per-call time in long-lived workers, interleaved across libraries;
    "first_call": time of the first call (trace + compile + run) in a fresh process;
    "peak_rss": peak resident memory over ``steps`` calls in a fresh process.
    """
    name: str
    title: str
    cases: tuple[Case, ...]
    kind: str = "time"
    steps: int = 0

    @property
    def unit(self) -> str:
        return "MB" if self.kind == "peak_rss" else "ms"

    def case(self, name: str) -> Case:
        for case in self.cases:
            if case.name == name:
                return case
        raise KeyError(f"workload {self.name!r} has no case {name!r}")


@dataclass(frozen=True)
class Verdict:
    """Outcome of comparing a variant's result with the reference."""
    max_rel_err: float
    problem: str | None = None  # why the result is refused; None when it agrees
    notes: tuple[str, ...] = ()  # facts worth reporting that do not refuse the result

    @property
    def agrees(self) -> bool:
        return self.problem is None


def compare(case: Case, inputs: Inputs, got: list[np.ndarray], want: list[np.ndarray]) -> Verdict:
    """Check a variant's raw result leaves against the reference's.

    Refused: a different number of outputs, a different shape, non-finite values other than
    the reference's, or a compared array (``case.observe``) whose
    ``max|got - want| / max|want|`` exceeds ``case.tol``. A different dtype is noted (some
    libraries promote float32 gradients to float64), not refused.
    """
    if len(got) != len(want):
        return Verdict(np.inf, f"{len(got)} outputs, the reference has {len(want)}")
    notes = []
    for i, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape:
            return Verdict(np.inf, f"output {i} has shape {g.shape}, the reference {w.shape}")
        if g.dtype != w.dtype:
            notes.append(f"output {i} is {g.dtype}, the reference {w.dtype}")
    worst = 0.0
    for i, (g, w) in enumerate(zip(case.observe(inputs, got), case.observe(inputs, want))):
        g, w = _as_inexact(g), _as_inexact(w)
        finite = np.isfinite(w)
        if not (np.array_equal(np.isfinite(g), finite)
                and np.array_equal(g[~finite], w[~finite], equal_nan=True)):
            return Verdict(np.inf, f"compared array {i} has non-finite values that differ "
                                   f"from the reference's")
        if not finite.all():
            g, w = g[finite], w[finite]
        scale = float(np.max(np.abs(w), initial=0.0))
        err = float(np.max(np.abs(g - w), initial=0.0)) / max(scale, 1e-30)
        worst = max(worst, err)
        if err > case.tol:
            return Verdict(err, f"compared array {i} (shape {np.shape(w)}): max|got - ref| / "
                                f"max|ref| = {err:.1e} > tolerance {case.tol:.0e}")
    return Verdict(worst, None, tuple(notes))


def _as_inexact(x) -> np.ndarray:
    """Float arrays stay as they are (a float32 difference is exact enough and halves the
    memory of the comparison); integer and bool arrays become float64."""
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.inexact) else x.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Timing


def time_per_call(run: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``run``, over ``number`` back-to-back calls with the GC paused."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            run()
        return (time.perf_counter() - start) / number
    finally:
        if gc_was_enabled:
            gc.enable()


def warm_up(run: Callable[[], Any], seconds: float, min_calls: int = 2) -> float:
    """Call ``run`` for ``seconds`` (at least ``min_calls`` times); the fastest call's time."""
    best = np.inf
    start = time.perf_counter()
    calls = 0
    while calls < min_calls or time.perf_counter() - start < seconds:
        best = min(best, time_per_call(run, 1))
        calls += 1
    return float(best)


def calls_per_sample(seconds_per_call: float, min_sample_seconds: float) -> int:
    """How many calls make one timing sample last at least ``min_sample_seconds``."""
    return max(1, int(np.ceil(min_sample_seconds / max(seconds_per_call, 1e-9))))


@dataclass(frozen=True)
class Settings:
    """Repeat counts for a full or a ``--quick`` run."""
    rounds: int  # interleaved rounds over the libraries
    samples_per_round: int
    warmup_seconds: float
    min_sample_seconds: float
    fresh_repeats: int  # fresh processes per variant for "first_call"

    @classmethod
    def for_run(cls, quick: bool) -> "Settings":
        if quick:
            return cls(rounds=2, samples_per_round=2, warmup_seconds=0.05,
                       min_sample_seconds=0.005, fresh_repeats=1)
        return cls(rounds=5, samples_per_round=3, warmup_seconds=0.3,
                   min_sample_seconds=0.02, fresh_repeats=3)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    return {"median": float(np.median(samples)), "min": float(np.min(samples)),
            "max": float(np.max(samples))}
