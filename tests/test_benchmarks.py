"""The benchmark suite: an end-to-end quick run with funcgrad and NumPy only, skipping of
missing peers, and the result check that refuses to time a disagreeing implementation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import report
from benchmarks.harness import Case, Settings, Unavailable, compare, leaves
from benchmarks.run import worker_env
from benchmarks.worker import Worker
from benchmarks.workloads import WORKLOADS

REPO = Path(__file__).resolve().parent.parent


def _run_suite(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", "--quick", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=240)


def test_quick_run_with_funcgrad_and_numpy(tmp_path):
    done = _run_suite("--only", "dispatch", "--libs", "funcgrad,numpy", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "numpy BLAS in the workers:" in done.stdout
    assert "x funcgrad" in done.stdout
    result = json.loads((tmp_path / "results.json").read_text())
    rows = {row["variant"]: row for row in result["results"]}
    assert set(rows) == {"funcgrad.jit", "funcgrad", "numpy"}
    assert {row["workload"] for row in rows.values()} == {"dispatch"}
    for variant in ("funcgrad", "numpy"):
        row = rows[variant]
        assert row["status"] == "ok", row
        assert 0 < row["min"] <= row["median"] <= row["max"]
        assert len(row["samples"]) == 4  # quick: 2 rounds x 2 samples
        assert row["max_rel_err"] <= 1e-5
    assert rows["funcgrad.jit"]["status"] in ("ok", "unavailable")
    best = min(r["median"] for r in rows.values() if r["library"] == "funcgrad" and r["ratio"])
    assert rows["numpy"]["ratio"] == pytest.approx(rows["numpy"]["median"] / best)
    assert set(result["libraries"]) == {"funcgrad", "numpy"}


def test_missing_peer_is_skipped_and_named(tmp_path):
    stub = tmp_path / "stub" / "jax"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('simulated: jax is not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(stub.parent)}
    done = _run_suite("--only", "eager_ops", "--libs", "numpy,jax", "--out", str(tmp_path),
                      env=env)
    assert done.returncode == 0, done.stderr
    assert "skipped jax: ImportError: simulated: jax is not installed" in done.stdout
    result = json.loads((tmp_path / "results.json").read_text())
    assert {row["library"] for row in result["results"]} == {"numpy"}
    assert "jax" in result["skipped"]


def test_worker_env_pins_threads_and_drops_openblas_overrides_only_there():
    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576", "XLA_FLAGS": "--a=1",
            "PYTHONPATH": "/elsewhere"}
    env = worker_env(1, base)
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert base["OPENBLAS_CORETYPE"] == "Haswell"  # the caller's environment is untouched
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert env["XLA_FLAGS"] == ("--a=1 --xla_cpu_multi_thread_eigen=false "
                                "intra_op_parallelism_threads=1")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]
    assert worker_env(4, {})["OMP_NUM_THREADS"] == "4"


# --- the result check -----------------------------------------------------------------------

def _inputs():
    return {"x": np.linspace(-1, 1, 8, dtype=np.float32)}


def _reference(inputs):
    x = inputs["x"]
    return lambda: (np.tanh(x), np.sum(x * x))


def _case(impl) -> Case:
    return Case("fake", _inputs, {"numpy": _reference, "funcgrad": impl}, tol=1e-6)


def _wrong_value(inputs):
    x = inputs["x"]
    return lambda: (np.tanh(x) * (1 + 1e-3), np.sum(x * x))


def _wrong_shape(inputs):
    x = inputs["x"]
    return lambda: (np.tanh(x)[:-1], np.sum(x * x))


def _nan(inputs):
    x = inputs["x"]
    return lambda: (np.where(x > 0.5, np.nan, np.tanh(x)), np.sum(x * x))


def _missing_output(inputs):
    x = inputs["x"]
    return lambda: (np.tanh(x),)


@pytest.mark.parametrize("impl, message", [
    (_wrong_value, "> tolerance 1e-06"), (_wrong_shape, "shape (7,)"),
    (_nan, "non-finite"), (_missing_output, "1 outputs, the reference has 2")])
def test_disagreeing_result_is_refused_and_never_timed(impl, message):
    worker = Worker("funcgrad", Settings.for_run(quick=True))
    status = worker.setup(_case(impl))["funcgrad"]
    assert status["status"] == "disagrees"
    assert message in status["reason"]
    assert worker.measure(3) == {}
    first = worker.first_call(_case(impl), "funcgrad")
    assert first["status"] == "disagrees" and "seconds" not in first
    memory = worker.peak_rss(_case(impl), "funcgrad", steps=3)
    assert memory["status"] == "disagrees" and "peak_bytes" not in memory


def test_agreeing_result_is_timed():
    def close_enough(inputs):
        x = inputs["x"]
        return lambda: (np.tanh(x) * (1 + 1e-7), np.sum(x * x))
    worker = Worker("funcgrad", Settings.for_run(quick=True))
    status = worker.setup(_case(close_enough))["funcgrad"]
    assert status["status"] == "ok" and status["max_rel_err"] <= 1e-6
    times = worker.measure(3)["funcgrad"]
    assert len(times) == 3 and all(t > 0 for t in times)
    assert worker.first_call(_case(close_enough), "funcgrad")["seconds"] > 0
    memory = worker.peak_rss(_case(close_enough), "funcgrad", steps=3)
    assert memory["peak_bytes"] >= memory["before_bytes"] > 0


def test_other_dtype_is_noted_not_refused():
    def float64(inputs):
        x = inputs["x"].astype(np.float64)
        return lambda: (np.tanh(x), np.sum(x * x))
    status = Worker("funcgrad", Settings.for_run(quick=True)).setup(_case(float64))["funcgrad"]
    assert status["status"] == "ok"
    assert status["notes"] == ["output 0 is float64, the reference float32",
                               "output 1 is float64, the reference float32"]


def test_unavailable_and_failing_variants_are_reported():
    def missing(inputs):
        raise Unavailable("funcgrad.lax.fancy does not exist in this version")

    def broken(inputs):
        return lambda: 1 / 0
    worker = Worker("funcgrad", Settings.for_run(quick=True))
    assert worker.setup(_case(missing))["funcgrad"] == {
        "status": "unavailable", "reason": "funcgrad.lax.fancy does not exist in this version"}
    status = worker.setup(_case(broken))["funcgrad"]
    assert status["status"] == "error" and status["reason"].startswith("ZeroDivisionError")
    assert worker.measure(2) == {}


def test_compare_scales_the_error_by_the_reference():
    case = _case(_reference)
    big = [np.array([1e6, 2e6], np.float32)]
    assert compare(case, {}, [big[0] + np.float32(0.5)], big).agrees  # 2.5e-7 of the max
    assert not compare(case, {}, [big[0] + np.float32(4)], big).agrees


def test_table_shows_no_time_for_a_refused_result():
    rows = [
        {"workload": "w", "case": "c", "variant": "numpy", "library": "numpy", "unit": "ms",
         "status": "ok", "median": 2.0, "min": 1.5, "max": 3.0, "notes": []},
        {"workload": "w", "case": "c", "variant": "funcgrad", "library": "funcgrad",
         "unit": "ms", "status": "ok", "median": 4.0, "min": 4.0, "max": 4.0, "notes": []},
        {"workload": "w", "case": "c", "variant": "jax.jit", "library": "jax", "unit": "ms",
         "status": "disagrees", "reason": "compared array 0 is off", "notes": []},
    ]
    report.add_ratios(rows)
    assert [r["ratio"] for r in rows] == [0.5, 1.0, None]
    lines = report.format_table(rows).splitlines()
    assert lines[2].split() == ["w", "c", "numpy", "2", "1.5", "3", "ms", "0.50"]
    assert lines[4].split()[:3] == ["jax.jit", "-", "ms"]
    assert lines[4].endswith("disagrees: compared array 0 is off")


# --- the workloads themselves ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("workload, case", [(w, c) for w in WORKLOADS if w.kind == "time"
                                            for c in w.cases], ids=lambda x: x.name)
def test_funcgrad_eager_agrees_with_the_numpy_reference(workload, case):
    """Cross-checks the hand-written NumPy references (and funcgrad) on every workload."""
    inputs = case.make_inputs()
    try:
        got = leaves(case.impls["funcgrad"](inputs)())
    except Exception as exc:  # noqa: BLE001  (a feature still being written elsewhere)
        pytest.skip(f"funcgrad cannot run {case.name} yet: {type(exc).__name__}: {exc}")
    verdict = compare(case, inputs, got, leaves(case.impls["numpy"](inputs)()))
    assert verdict.agrees, verdict.problem
