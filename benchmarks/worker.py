"""A benchmark worker: one process per library, driven by the runner over JSON lines.

``python -m benchmarks.worker LIBRARY --threads N`` imports the library (replying
``{"missing": reason}`` and exiting if it cannot), then answers commands read from stdin, one
JSON object a line, on the stdout it had at start (the library's own prints go to stderr):

- ``{"cmd": "setup", "workload", "case"}``: build this library's variants of the case, check
  each first result against the NumPy reference, warm up; reply with a status per variant.
- ``{"cmd": "measure", "samples"}``: time ``samples`` samples of every ready variant.
- ``{"cmd": "first_call", "workload", "case", "variant"}`` and
  ``{"cmd": "peak_rss", "workload", "case", "variant"}``: one measurement, meant for a fresh
  process.
- ``{"cmd": "exit"}``.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import resource
import sys
import time
import traceback
from importlib import metadata
from typing import Any, Callable

from .harness import (LIBRARIES, Case, Settings, Unavailable, calls_per_sample, compare,
                      leaves, library_of, time_per_call, warm_up)
from .workloads import workload_named

def blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries loaded in this process (threadpoolctl), else NumPy's build config."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        import numpy as np
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return [{"source": "numpy.show_config", **{k: str(v) for k, v in blas.items()}}]
    return [{"source": "threadpoolctl", **info} for info in threadpool_info()
            if info.get("user_api") == "blas"]


def _error(exc: BaseException) -> dict[str, Any]:
    return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500],
            "traceback": traceback.format_exc()}


def _build(case: Case, variant: str, inputs) -> tuple[Callable[[], Any] | None, dict | None]:
    """(run, None), or (None, a status saying why the variant cannot run)."""
    try:
        return case.impls[variant](inputs), None
    except Unavailable as exc:
        return None, {"status": "unavailable", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001  (a broken variant is reported, not fatal)
        return None, _error(exc)


def _reference(case: Case, inputs) -> list:
    try:
        return leaves(case.impls[case.reference](inputs)())
    except Exception as exc:
        raise RuntimeError(f"the {case.reference} reference failed: "
                           f"{type(exc).__name__}: {exc}") from exc


def _judge(case: Case, inputs, got: list, reference: list, status: dict) -> dict:
    """``status`` (plus the error found) if ``got`` agrees with ``reference``, else a
    "disagrees" status: a result that disagrees is never timed or reported."""
    verdict = compare(case, inputs, got, reference)
    if not verdict.agrees:
        return {"status": "disagrees", "reason": verdict.problem,
                "max_rel_err": verdict.max_rel_err}
    return {**status, "max_rel_err": verdict.max_rel_err, "notes": list(verdict.notes)}


class Worker:
    """Runs one library's variants of one case at a time."""

    def __init__(self, library: str, settings: Settings):
        self.library = library
        self.settings = settings
        self.ready: dict[str, tuple[Callable[[], Any], int]] = {}  # variant -> (run, calls)

    def setup(self, case: Case) -> dict[str, dict]:
        """Build, check and warm up each of this library's variants of ``case``."""
        self.ready.clear()
        gc.collect()
        inputs = case.make_inputs()
        reference = None
        statuses = {}
        for variant in case.variants():
            if library_of(variant) != self.library:
                continue
            run, status = _build(case, variant, inputs)
            if status is None:
                try:
                    got = leaves(run())
                    if reference is None:
                        reference = _reference(case, inputs)
                    status = _judge(case, inputs, got, reference, {"status": "ok"})
                    del got
                    if status["status"] == "ok":
                        fastest = warm_up(run, self.settings.warmup_seconds)
                        calls = calls_per_sample(fastest, self.settings.min_sample_seconds)
                        self.ready[variant] = (run, calls)
                        status["calls_per_sample"] = calls
                except Exception as exc:  # noqa: BLE001
                    status = _error(exc)
            statuses[variant] = status
        return statuses

    def measure(self, samples: int) -> dict[str, list[float]]:
        """``samples`` per-call times (seconds) for each ready variant."""
        return {variant: [time_per_call(run, calls) for _ in range(samples)]
                for variant, (run, calls) in self.ready.items()}

    def first_call(self, case: Case, variant: str) -> dict:
        """Seconds taken by the first call (checked against the reference afterwards)."""
        inputs = case.make_inputs()
        run, status = _build(case, variant, inputs)
        if status is not None:
            return status
        try:
            start = time.perf_counter()
            got = leaves(run())
            seconds = time.perf_counter() - start
            return _judge(case, inputs, got, _reference(case, inputs),
                          {"status": "ok", "seconds": seconds})
        except Exception as exc:  # noqa: BLE001
            return _error(exc)

    def peak_rss(self, case: Case, variant: str, steps: int) -> dict:
        """Peak RSS over ``steps`` calls, and the RSS just before the first call (bytes)."""
        inputs = case.make_inputs()
        run, status = _build(case, variant, inputs)
        if status is not None:
            return status
        gc.collect()
        before = current_rss()
        notes = [] if reset_peak_rss() else [
            "the kernel did not let the peak be reset: it includes the import"]
        try:
            got = leaves(run())
            for _ in range(steps - 1):
                run()
            status = {"status": "ok", "peak_bytes": peak_rss(), "before_bytes": before}
            status = _judge(case, inputs, got, _reference(case, inputs), status)
        except Exception as exc:  # noqa: BLE001
            return _error(exc)
        status["notes"] = status.get("notes", []) + notes
        return status


# ---------------------------------------------------------------------------------------------
# Resident memory (Linux /proc, with getrusage as the fallback for the peak)


def current_rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ---------------------------------------------------------------------------------------------
# The command loop


def library_hello(library: str, threads: int) -> dict[str, Any]:
    """Import the library (pinning its threads) and describe it; or say why it is missing."""
    try:
        module = importlib.import_module(library)
    except Exception as exc:  # noqa: BLE001  (ImportError, or a library that fails to load)
        return {"missing": f"{type(exc).__name__}: {exc}"}
    if library == "torch":
        module.set_num_threads(threads)
    import numpy as np
    try:
        version = getattr(module, "__version__", None) or metadata.version(library)
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"ready": True, "library": library, "version": version,
            "numpy": np.__version__, "python": sys.version.split()[0], "blas": blas_info()}


def handle(worker: Worker, request: dict) -> dict:
    cmd = request["cmd"]
    if cmd == "measure":
        return {"times": worker.measure(request["samples"])}
    case = workload_named(request["workload"]).case(request["case"])
    if cmd == "setup":
        return {"variants": worker.setup(case)}
    if cmd == "first_call":
        return worker.first_call(case, request["variant"])
    if cmd == "peak_rss":
        return worker.peak_rss(case, request["variant"], request["steps"])
    raise ValueError(f"unknown command {cmd!r}")


def serve(library: str, settings: Settings, threads: int) -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not break the protocol

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    hello = library_hello(library, threads)
    reply(hello)
    if "missing" in hello:
        return
    worker = Worker(library, settings)
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "exit":
            return
        try:
            reply(handle(worker, request))
        except Exception as exc:  # noqa: BLE001  (a bug in the suite: report it, keep serving)
            reply({"fatal": traceback.format_exc(), "reason": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("library", choices=LIBRARIES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    serve(args.library, Settings.for_run(args.quick), args.threads)


if __name__ == "__main__":
    main()
