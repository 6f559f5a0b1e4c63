"""Comparison tables from run records, in the RepDistiller/CRD layout.

Role in the flow: the last step. Records (local or converted from W&B) become a long data frame
(:func:`runs_frame`, one row per run) and then a pivot (:func:`comparison`): rows are methods
grouped by survey category with the teacher and the vanilla student on top, columns are
teacher→student pairs, cells are mean ± std over seeds with the seed count. Missing cells stay
missing (never 0).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional

import pandas as pd

from methods.registry import CATEGORIES

METRICS = ("last_top1", "best_top1")


def runs_frame(records: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """One row per finished run with the fields tables need."""
    rows = []
    for r in records:
        m = r.get("metrics") or {}
        rows.append({
            "run_id": r.get("run_id"), "grid": r.get("name"), "method": r.get("method"), "category": r.get("category"),
            "scheme": r.get("scheme"), "dataset": r.get("dataset"), "student": r.get("student"),
            "student_name": r.get("student_name"), "teachers": "+".join(r.get("teacher_names") or []),
            "pair": r.get("pair"), "seed": r.get("seed"),
            "best_top1": m.get("best_top1"), "last_top1": m.get("last_top1"),
            "best_top5": m.get("best_top5"), "last_top5": m.get("last_top5"),
            "teacher_top1": (m.get("teacher_top1") or [None])[0] if m.get("teacher_top1") else None,
            "student_params": m.get("student_params"), "wall_time_s": m.get("wall_time_s"),
            "images_per_s": m.get("images_per_s"), "export_teacher": bool(r.get("teacher_export")),
        })
    return pd.DataFrame(rows)


def _stats(values: List[float]) -> Optional[Dict[str, float]]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(vals)}


def comparison(df: pd.DataFrame, metric: str = "last_top1") -> Dict[str, Any]:
    """``{"columns": [pair...], "rows": [(label, category, {pair: stats|None})...]}``."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    students = df[~df["export_teacher"]]
    distilled = students[students["teachers"] != ""]
    columns = list(dict.fromkeys(distilled["pair"].tolist())) or list(dict.fromkeys(students["pair"].tolist()))
    col_student = {}
    col_teacher = {}
    for c in columns:
        sub = df[df["pair"] == c]
        col_student[c] = sub["student"].iloc[0] if len(sub) else c
        col_teacher[c] = sub["teacher_top1"].dropna().tolist()
    rows = [("Teacher", "teacher", {c: _stats(col_teacher[c][:1]) if col_teacher[c] else None for c in columns})]
    van = students[students["method"] == "vanilla"]
    rows.append(("Student (vanilla)", "baseline",
                 {c: _stats(van[van["student"] == col_student[c]][metric].tolist()) for c in columns}))
    order = [c for c in CATEGORIES if c != "baseline"]
    for cat in order:
        sub = students[(students["category"] == cat)]
        for method in sorted(sub["method"].unique()):
            ms = sub[sub["method"] == method]
            cells = {}
            for c in columns:
                # methods without a teacher (online / self) are matched to a column by its student
                hit = ms[ms["pair"] == c] if (ms["teachers"] != "").any() else ms[ms["student"] == col_student[c]]
                cells[c] = _stats(hit[metric].tolist())
            rows.append((method, cat, cells))
    return {"columns": columns, "rows": rows, "metric": metric}


def _cell(s: Optional[Dict[str, float]], bold: bool = False) -> str:
    if s is None:
        return "–"
    txt = f"{s['mean']:.2f} ± {s['std']:.2f} ({s['n']})" if s["n"] > 1 else f"{s['mean']:.2f} ({s['n']})"
    return f"**{txt}**" if bold else txt


def best_per_column(table: Dict[str, Any]) -> Dict[str, Optional[str]]:
    best: Dict[str, Optional[str]] = {}
    for c in table["columns"]:
        cand = [(cells[c]["mean"], label) for label, cat, cells in table["rows"]
                if cat != "teacher" and cells.get(c) is not None]
        best[c] = max(cand)[1] if cand else None
    return best


def to_markdown(table: Dict[str, Any]) -> str:
    cols = table["columns"]
    best = best_per_column(table)
    lines = [f"| Method | Category | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for label, cat, cells in table["rows"]:
        title = CATEGORIES[cat].title if cat in CATEGORIES else "Teacher"
        lines.append(f"| {label} | {title} | " + " | ".join(_cell(cells.get(c), best[c] == label) for c in cols) + " |")
    lines.append(f"\nCells: top-1 (%) on the test split, {table['metric'].replace('_top1', '')} epoch, "
                 f"mean ± std over seeds (number of seeds); best student per column in bold; – = not run.")
    return "\n".join(lines)
