"""``python -m benchmarks``: funcgrad against its peers, side by side.

Each library runs in its own worker process (:mod:`benchmarks.worker`), started with the same
thread pinning and with ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` removed from the worker's
environment only. For a timed case every worker builds its variants, checks their first
result against the NumPy reference (refusing to time one that disagrees) and warms up; then
the runner asks the workers for samples in interleaved rounds (the library order rotates each
round) and reports the median with the min and max. Compile time and peak memory are taken
in a fresh process per measurement. Missing peers are skipped, and the table says so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from . import report
from .harness import LIBRARIES, Case, Settings, Workload, library_of, summarize
from .workloads import WORKLOADS, workload_named

REPO_ROOT = Path(__file__).resolve().parent.parent
UNSET_FOR_WORKERS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def worker_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every worker: threads pinned alike for all libraries, the OpenBLAS
    overrides removed, JAX on the CPU unless asked otherwise, this package importable."""
    env = dict(os.environ if base is None else base)
    for name in UNSET_FOR_WORKERS:
        env.pop(name, None)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    eigen = "false" if threads == 1 else "true"
    env["XLA_FLAGS"] = " ".join(filter(None, [
        env.get("XLA_FLAGS"),
        f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={threads}"]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


class WorkerDied(RuntimeError):
    pass


class WorkerProcess:
    """One ``python -m benchmarks.worker LIBRARY`` child, spoken to in JSON lines."""

    def __init__(self, library: str, threads: int, quick: bool, env: dict[str, str]):
        self.library = library
        command = [sys.executable, "-m", "benchmarks.worker", library, "--threads", str(threads)]
        self.process = subprocess.Popen(command + (["--quick"] if quick else []), env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = self._receive()

    def _receive(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            raise WorkerDied(f"the {self.library} worker exited with code {self.process.wait()}")
        return json.loads(line)

    def request(self, **message: Any) -> dict[str, Any]:
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise WorkerDied(f"the {self.library} worker exited with code "
                             f"{self.process.wait()}") from None
        reply = self._receive()
        if "fatal" in reply:
            raise WorkerDied(f"the {self.library} worker failed: {reply['reason']}\n"
                             f"{reply['fatal']}")
        return reply

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Workers:
    """The long-lived worker of each library; a worker that dies is restarted on next use."""

    def __init__(self, threads: int, quick: bool, env: dict[str, str]):
        self.threads, self.quick, self.env = threads, quick, env
        self.live: dict[str, WorkerProcess] = {}

    def fresh(self, library: str) -> WorkerProcess:
        return WorkerProcess(library, self.threads, self.quick, self.env)

    def get(self, library: str) -> WorkerProcess:
        if library not in self.live:
            self.live[library] = self.fresh(library)
        return self.live[library]

    def discard(self, library: str) -> None:
        worker = self.live.pop(library, None)
        if worker is not None:
            worker.close()

    def close(self) -> None:
        for library in list(self.live):
            self.discard(library)


def _row(workload: Workload, case: str, variant: str, status: dict[str, Any]) -> dict[str, Any]:
    row = {"workload": workload.name, "case": case, "variant": variant,
           "library": library_of(variant), "unit": workload.unit,
           "status": status["status"], "max_rel_err": status.get("max_rel_err"),
           "notes": status.get("notes", [])}
    if status["status"] != "ok":
        row["reason"] = status.get("reason", "")
        if "traceback" in status:
            row["traceback"] = status["traceback"]
    return row


def _measured_row(workload: Workload, case: str, variant: str, status: dict[str, Any],
                  values: list[float]) -> dict[str, Any]:
    row = _row(workload, case, variant, status)
    row.update(summarize(values), samples=values)
    return row


def _result_rows(workload: Workload, case: str, variants: list[str],
                 statuses: dict[str, dict[str, Any]],
                 values: dict[str, list[float]]) -> list[dict[str, Any]]:
    return [_measured_row(workload, case, v, statuses[v], values[v])
            if statuses[v]["status"] == "ok" else _row(workload, case, v, statuses[v])
            for v in variants]


def _rotated(items: list, by: int) -> list:
    by %= max(len(items), 1)
    return items[by:] + items[:by]


def _error_status(exc: BaseException) -> dict[str, Any]:
    return {"status": "error", "reason": str(exc).splitlines()[0]}


def time_case(workload: Workload, case: Case, libraries: list[str], workers: Workers,
              settings: Settings) -> list[dict[str, Any]]:
    """Set up each library's variants, then take interleaved rounds of samples."""
    variants = [v for v in case.variants() if library_of(v) in libraries]
    statuses: dict[str, dict[str, Any]] = {}
    for library in dict.fromkeys(library_of(v) for v in variants):
        try:
            statuses.update(workers.get(library).request(
                cmd="setup", workload=workload.name, case=case.name)["variants"])
        except WorkerDied as exc:
            workers.discard(library)
            statuses.update({v: _error_status(exc) for v in variants if library_of(v) == library})
    timed = [lib for lib in dict.fromkeys(library_of(v) for v in variants)
             if any(statuses[v]["status"] == "ok" for v in variants if library_of(v) == lib)]
    samples: dict[str, list[float]] = defaultdict(list)
    for round_index in range(settings.rounds):
        for library in _rotated(timed, round_index):
            if library not in workers.live:  # died earlier in this case
                continue
            try:
                times = workers.get(library).request(cmd="measure",
                                                     samples=settings.samples_per_round)["times"]
            except WorkerDied as exc:
                workers.discard(library)
                statuses.update({v: _error_status(exc) for v in variants
                                 if library_of(v) == library})
                continue
            for variant, seconds in times.items():
                samples[variant] += [s * 1e3 for s in seconds]
    return _result_rows(workload, case.name, variants, statuses, samples)


def fresh_case(workload: Workload, case: Case, libraries: list[str], workers: Workers,
               settings: Settings) -> list[dict[str, Any]]:
    """First-call time or peak memory, each measurement in a new worker process."""
    variants = [v for v in case.variants() if library_of(v) in libraries]
    repeats = settings.fresh_repeats if workload.kind == "first_call" else 1
    statuses: dict[str, dict[str, Any]] = {}
    values: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for repeat in range(repeats):
        for variant in _rotated(variants, repeat):
            if statuses.get(variant, {"status": "ok"})["status"] != "ok":
                continue  # unavailable, disagreeing or broken: once is enough
            worker = None
            try:
                worker = workers.fresh(library_of(variant))
                reply = worker.request(cmd=workload.kind, workload=workload.name,
                                       case=case.name, variant=variant, steps=workload.steps)
            except WorkerDied as exc:
                reply = _error_status(exc)
            finally:
                if worker is not None:
                    worker.close()
            statuses[variant] = reply
            if reply["status"] == "ok":
                values[variant].append(reply)
    if workload.kind == "first_call":
        milliseconds = {v: [r["seconds"] * 1e3 for r in replies] for v, replies in values.items()}
        return _result_rows(workload, case.name, variants, statuses, milliseconds)
    return _memory_rows(workload, case, variants, statuses, values)


def _memory_rows(workload: Workload, case: Case, variants: list[str],
                 statuses: dict[str, dict[str, Any]],
                 values: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Two cases per variant: the process's peak RSS, and its rise over the RSS just before
    the first call (the library's import footprint left out)."""
    peak_case, growth_case = (f"{case.name} x{workload.steps} {what}"
                              for what in ("peak", "growth"))
    peaks, growths = [], []
    mb = 1024 ** 2
    for variant in variants:
        status = statuses[variant]
        if status["status"] != "ok":
            peaks.append(_row(workload, peak_case, variant, status))
            continue
        before = status["before_bytes"] / mb
        peak = [r["peak_bytes"] / mb for r in values[variant]]
        peaks.append(_measured_row(workload, peak_case, variant, status, peak))
        notes = status["notes"] + [f"{before:.0f} MB resident before the first call"]
        growths.append(_measured_row(workload, growth_case, variant, {**status, "notes": notes},
                                     [p - before for p in peak]))
    return peaks + growths


# ---------------------------------------------------------------------------------------------
# The command line


def machine() -> dict[str, Any]:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
    except OSError:
        pass
    return info


def describe_blas(blas: list[dict[str, Any]]) -> str:
    if not blas:
        return "none found"
    parts = []
    for lib in blas:
        if lib.get("source") == "threadpoolctl":
            parts.append(f"{lib.get('internal_api')} {lib.get('version')} "
                         f"({lib.get('architecture')} kernels, {lib.get('num_threads')} "
                         f"thread(s), {Path(lib.get('filepath', '?')).name})")
        else:
            parts.append(f"{lib.get('name', '?')} {lib.get('version', '')} (numpy.show_config; "
                         "install threadpoolctl to see the kernel in use)")
    return "; ".join(parts)


def select_workloads(only: list[str] | None) -> list[Workload]:
    if not only:
        return list(WORKLOADS)
    names = [n for item in only for n in item.split(",") if n]
    return [workload_named(name) for name in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time funcgrad against hand-written NumPy, autograd, JAX and PyTorch "
                    "(whichever are installed), one worker process per library.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and repeats")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only these workloads (repeatable or comma-separated): "
                             + ", ".join(w.name for w in WORKLOADS))
    parser.add_argument("--libs", default=",".join(LIBRARIES),
                        help="comma-separated libraries to run (default: all of "
                             f"{','.join(LIBRARIES)}; missing ones are skipped)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every library alike (default 1)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results",
                        help="folder for results.json and results.png")
    args = parser.parse_args(argv)
    args.libs = [lib for lib in args.libs.split(",") if lib]
    unknown = sorted(set(args.libs) - set(LIBRARIES))
    if unknown:
        parser.error(f"unknown libraries {unknown}; choose from {', '.join(LIBRARIES)}")
    try:
        args.workloads = select_workloads(args.only)
    except KeyError as exc:
        parser.error(exc.args[0])
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.for_run(args.quick)
    env = worker_env(args.threads)
    workers = Workers(args.threads, args.quick, env)
    libraries, skipped, hellos = [], {}, {}
    try:
        for library in args.libs:
            try:
                hello = workers.get(library).hello
            except WorkerDied as exc:
                hello = {"missing": str(exc)}
            if "missing" in hello:
                workers.discard(library)
                skipped[library] = hello["missing"]
            else:
                libraries.append(library)
                hellos[library] = hello
        rows = []
        for workload in args.workloads:
            for case in workload.cases:
                _progress(f"  {workload.name} / {case.name} ...")
                measure = time_case if workload.kind == "time" else fresh_case
                rows += measure(workload, case, libraries, workers, settings)
    finally:
        workers.close()
    report.add_ratios(rows)
    numpy_blas = next((hellos[lib]["blas"] for lib in ("numpy", "funcgrad", *libraries)
                       if lib in hellos), [])
    return {"machine": machine(), "threads": args.threads, "quick": args.quick,
            "unset_for_workers": {name: os.environ[name] for name in UNSET_FOR_WORKERS
                                  if name in os.environ},
            "libraries": {lib: {k: hellos[lib][k] for k in ("version", "numpy", "blas")}
                          for lib in libraries},
            "skipped": skipped, "numpy_blas": describe_blas(numpy_blas),
            "settings": vars(settings), "results": rows}


def header(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}",
             f"threads per library: {result['threads']}"
             + (" (quick run)" if result["quick"] else ""),
             f"numpy BLAS in the workers: {result['numpy_blas']}"]
    unset = result["unset_for_workers"]
    lines.append("removed from the workers' environment: "
                 + (", ".join(f"{k}={v}" for k, v in unset.items()) if unset
                    else "nothing (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are not set)"))
    lines.append("libraries: " + ", ".join(f"{lib} {info['version']}"
                                           for lib, info in result["libraries"].items()))
    for lib, reason in result["skipped"].items():
        lines.append(f"skipped {lib}: {reason}")
    lines.append("times are per call (ms) over interleaved rounds; x funcgrad = median / the "
                 "fastest funcgrad variant's median (> 1: funcgrad is faster)")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(None if argv is None else list(argv))
    result = run(args)
    print(header(result))
    print()
    print(report.format_table(result["results"]))
    json_path = args.out / "results.json"
    report.write_json(json_path, result)
    print(f"\nwrote {json_path}")
    why_not = report.write_chart(args.out / "results.png", result["results"])
    print(f"chart not written: {why_not}" if why_not else f"wrote {args.out / 'results.png'}")
    return 0
