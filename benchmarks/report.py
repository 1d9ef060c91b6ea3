"""Turning result rows into the printed table, the JSON file and the bar chart.

A row is a plain dict: ``workload``, ``case``, ``variant``, ``library``, ``status`` ("ok",
"unavailable", "disagrees", "error"), ``unit``, and for "ok" rows ``median``/``min``/``max``
(in ``unit``), ``samples`` and ``ratio`` (median over the fastest funcgrad variant's median
for the same case); other rows carry a ``reason`` instead of numbers.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

Row = dict[str, Any]


def add_ratios(rows: list[Row]) -> None:
    """Set each ok row's ``ratio`` to its median over the best funcgrad median of its case."""
    best: dict[tuple[str, str], float] = {}
    for row in rows:
        if row["status"] == "ok" and row["library"] == "funcgrad":
            key = (row["workload"], row["case"])
            best[key] = min(best.get(key, float("inf")), row["median"])
    for row in rows:
        base = best.get((row["workload"], row["case"]))
        row["ratio"] = row["median"] / base if row["status"] == "ok" and base else None


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _note(row: Row) -> str:
    if row["status"] == "ok":
        return "; ".join(row.get("notes", []))
    return f"{row['status']}: {row.get('reason', '')}"


def format_table(rows: Iterable[Row]) -> str:
    """One aligned text table; the workload and case are printed where they change."""
    header = ("workload", "case", "library", "median", "min", "max", "unit", "x funcgrad", "note")
    lines = [header]
    previous = (None, None)
    for row in rows:
        key = (row["workload"], row["case"])
        workload = key[0] if key[0] != previous[0] else ""
        case = key[1] if key != previous else ""
        previous = key
        ok = row["status"] == "ok"
        lines.append((workload, case, row["variant"],
                      _number(row["median"]) if ok else "-",
                      _number(row["min"]) if ok else "", _number(row["max"]) if ok else "",
                      row["unit"], f"{row['ratio']:.2f}" if row.get("ratio") else "",
                      _note(row)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [cell.ljust(w) if i < 3 or i == 6 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells + [line[-1]]).rstrip())
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")


def write_chart(path: Path, rows: list[Row]) -> str | None:
    """A grid of bar charts, one per case: medians with min-max whiskers, funcgrad in orange,
    each bar labelled with its median and ratio. Returns why no chart was written, if so."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed"
    cases: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            cases[(row["workload"], row["case"])].append(row)
    if not cases:
        return "no case produced a measurement"
    columns = 3
    grid_rows = -(-len(cases) // columns)
    fig, axes = plt.subplots(grid_rows, columns, figsize=(5 * columns, 2.6 * grid_rows),
                             squeeze=False)
    for ax, ((workload, case), case_rows) in zip(axes.flat, cases.items()):
        names = [r["variant"] for r in case_rows]
        medians = [r["median"] for r in case_rows]
        spread = [[r["median"] - r["min"] for r in case_rows],
                  [r["max"] - r["median"] for r in case_rows]]
        colors = ["tab:orange" if r["library"] == "funcgrad" else "tab:blue" for r in case_rows]
        ax.barh(names, medians, xerr=spread, color=colors, ecolor="gray")
        for y, r in enumerate(case_rows):
            ratio = f" (x{r['ratio']:.2f})" if r.get("ratio") else ""
            ax.text(r["max"], y, f" {_number(r['median'])}{ratio}", va="center", fontsize=7)
        ax.set_xlim(0, max(r["max"] for r in case_rows) * 1.45)
        ax.invert_yaxis()
        ax.set_title(f"{workload} / {case}", fontsize=9)
        ax.set_xlabel(case_rows[0]["unit"], fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(cases):]:
        ax.set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
