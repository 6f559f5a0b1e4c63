"""Table computation: run records → the long run frame and the cells every table prints.

Role in the flow: the computing half of :mod:`kdsuite.analysis.tables`. Records (local, or converted from W&B
by :mod:`kdsuite.analysis.wandb_source`) become a long data frame (:func:`runs_frame`, one row per run); from it
:func:`comparison` builds the methods × pairs table (cells are seed statistics, :func:`cell_stats`),
:func:`gains` and :func:`category_summary` the taxonomy summary. Nothing here formats text: the renderers
(:mod:`kdsuite.analysis.table_markdown`, :mod:`kdsuite.analysis.table_latex`,
:mod:`kdsuite.analysis.table_frames`, chosen through :mod:`kdsuite.analysis.table_formats`) print what it computes.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pandas as pd

from kdsuite.analysis.table_protocol import add_marks, facts_of
from kdsuite.methods.registry import CATEGORIES

METRICS = ("last_top1", "best_top1", "best_test_top1")
# what each metric is, as captions and axis labels say it
METRIC_TEXT = {"last_top1": "test top-1 at the last epoch",
               "best_top1": "test top-1 at the epoch of best validation accuracy",
               "best_test_top1": "best test top-1 over epochs (literature convention: selected on test)"}
METRIC_SHORT = {"last_top1": "last-epoch test top-1", "best_top1": "test top-1 at best-val epoch",
                "best_test_top1": "best-on-test top-1"}


def metric_text(metric: str) -> str:
    return METRIC_TEXT.get(metric, metric)


def selection_metrics(m: Dict[str, Any]) -> Dict[str, Any]:
    """``best_top1`` (test at the best-validation epoch; absent without a validation split) and
    ``best_test_top1`` (max test over epochs) of a record's metrics. Records from before the validation
    split carry only ``best_top1``, which was then the best test accuracy: it is read as best-test."""
    if "best_test_top1" in m or "best_val_top1" in m:
        return {"best_top1": m.get("best_top1"), "best_top5": m.get("best_top5"),
                "best_test_top1": m.get("best_test_top1")}
    return {"best_top1": None, "best_top5": None, "best_test_top1": m.get("best_top1")}
LAYOUTS = ("methods", "categories", "runs")
TEACHER, VANILLA = "Teacher", "Student (vanilla)"


def runs_frame(records: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """One row per run with the fields tables need."""
    rows = []
    for r in records:
        m = r.get("metrics") or {}
        hparams = ((r.get("config") or {}).get("method") or {}).get("hparams") or {}
        variant = r.get("variant")
        if variant is None:  # records from before schema 2, and W&B runs: derive it from the config
            variant = _variant_of(r.get("method"), hparams)
        t_top1 = m.get("teacher_top1")
        if isinstance(t_top1, (list, tuple)):
            t_top1 = t_top1[0] if t_top1 else None
        rows.append({
            # a run whose student a teacher-guided search chose is the NAS-based cell's result (§5.9)
            "run_id": r.get("run_id"), "grid": r.get("name"), "method": r.get("method"),
            "category": "nas" if r.get("search") else r.get("category"),
            "scheme": r.get("scheme"), "dataset": r.get("dataset"), "student": student_key(r),
            "student_name": r.get("student_name"), "teachers": "+".join(r.get("teacher_names") or []),
            "teacher_archs": "+".join(r.get("teachers") or []),
            "pair": r.get("pair"), "seed": r.get("seed"),
            **selection_metrics(m), "last_top1": m.get("last_top1"), "last_top5": m.get("last_top5"),
            "val_fraction": (((r.get("data") or {}).get("split") or {}).get("val_fraction")),
            "teacher_top1": t_top1,
            "student_params": m.get("student_params"), "wall_time_s": m.get("wall_time_s"),
            "images_per_s": m.get("images_per_s"), "export_teacher": bool(r.get("teacher_export")),
            "config_hash": r.get("config_hash"), "git_commit": ((r.get("provenance") or {}).get("git") or {}).get("commit"),
            "run_dir": r.get("run_dir"), "status": r.get("status") or "finished",
            "variant": json.dumps(variant, sort_keys=True, default=str), "variant_label": r.get("variant_label") or "",
            "hparams": json.dumps(hparams, sort_keys=True, default=str),
            "diverged_at": (r.get("divergence") or {}).get("step"),
            # lifelong methods (§5.8): average accuracy and forgetting over the task sequence
            "avg_acc": m.get("avg_acc"), "forgetting": m.get("forgetting"),
            "epochs": facts_of(r).get("epochs"), "protocol": json.dumps(facts_of(r), sort_keys=True, default=str),
        })
    cols = ["run_id", "grid", "method", "category", "scheme", "dataset", "student", "student_name", "teachers",
            "teacher_archs", "pair", "seed", "best_top1", "best_test_top1", "last_top1", "best_top5", "last_top5",
            "val_fraction", "teacher_top1",
            "student_params", "wall_time_s", "images_per_s", "export_teacher", "config_hash", "git_commit", "run_dir", "status", "variant",
            "variant_label", "hparams", "diverged_at", "avg_acc", "forgetting", "epochs", "protocol"]
    return add_marks(pd.DataFrame(rows, columns=cols))


def other_protocols(records: List[Dict[str, Any]], where: str = "this table") -> Tuple[List[Dict[str, Any]], List[str]]:
    """The records a methods / categories table compares, and notes naming those it leaves out: class-
    incremental runs (their top-1 is over a task sequence, not comparable with a student's; ``--layout
    lifelong``) and architecture-search candidates (short proxy trainings; ``--layout search``)."""
    keep, lifelong, proxies = [], 0, 0
    for r in records:
        m = r.get("metrics") or {}
        if r.get("category") == "lifelong" or "acc_matrix" in m:
            lifelong += 1
        elif "search_score" in m or (r.get("category") == "nas" and not r.get("search")):
            proxies += 1
        else:
            keep.append(r)
    notes = []
    if lifelong:
        notes.append(f"Not in {where}: {lifelong} class-incremental (lifelong) run(s), whose top-1 is over a "
                     f"task sequence (`kdsuite table --layout lifelong`).")
    if proxies:
        notes.append(f"Not in {where}: {proxies} architecture-search candidate run(s), short proxy trainings "
                     f"(`kdsuite table --layout search`); the students the searches chose are the NAS-based cell.")
    return keep, notes


def student_key(r: Dict[str, Any]) -> Optional[str]:
    """The student a baseline is matched by: its architecture, plus ``@view`` where the run's data had paired
    views (``dataset.views``) — a student trained on edges is compared with the vanilla student on edges."""
    views = (((r.get("config") or {}).get("dataset") or {}).get("views") or {})
    return f"{r.get('student')}@{views['student']}" if views.get("student") else r.get("student")


def _variant_of(method: Optional[str], hparams: Dict[str, Any]) -> Dict[str, Any]:
    from kdsuite.methods.identity import method_variant
    from kdsuite.methods.registry import get_method

    try:
        return method_variant(get_method(method), hparams) if hparams else {}
    except KeyError:
        return {}


def stats(values: Iterable[Any]) -> Optional[Dict[str, float]]:
    """Mean, sample std (n − 1; 0 for one value) and count of the non-missing values; None if none."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(vals)}


def cell_stats(runs: pd.DataFrame, metric: str) -> Optional[Dict[str, Any]]:
    """One table cell from its runs: copies of one run (same config hash) count once; each distinct
    seed counts once (several runs of a seed — different configs — are averaged, and the seeds listed
    under ``dup``); a diverged run makes the cell ``{"diverged": k, "n": seeds}`` with no mean."""
    if runs.empty:
        return None
    hashed = runs[runs["config_hash"].notna()].drop_duplicates("config_hash")
    runs = pd.concat([hashed, runs[runs["config_hash"].isna()]])
    seed_key = runs["seed"].astype(object).where(runs["seed"].notna(), runs["run_id"].astype(str))
    seeds = seed_key.nunique()
    div = int((runs["status"] == "diverged").sum())
    if div:
        return {"diverged": div, "n": seeds}
    ok = runs[runs[metric].notna()]
    if ok.empty:
        return None
    key = seed_key[ok.index]
    per_seed = ok.groupby(key)[metric].mean()
    s = stats(per_seed.tolist())
    dup = sorted(str(k) for k, n in key.value_counts().items() if n > 1)
    if dup:
        s["dup"] = dup
    return s


def _hp_value(hparams_json: str, key: str) -> Any:
    return json.loads(hparams_json).get(key) if hparams_json else None


def variant_rows(ms: pd.DataFrame, method: str) -> List[Tuple[str, pd.DataFrame]]:
    """``[(row label, runs)]`` of one method: one row per variant; when there are several, each is
    labelled by the hyper-parameters that tell them apart (``kd (T=2)``, ``kd (T=4)``)."""
    from kdsuite.methods.identity import fmt_value

    groups = list(ms.groupby("variant", sort=True))
    searched = {v: json.loads(v).get("student") for v, _g in groups}  # "searched by tgas" (not a hyper-parameter)
    if len(groups) == 1:
        v, g = groups[0]
        return [(f"{method} (student {searched[v]})" if searched[v] else method, g)]
    keys = sorted({k for v, _g in groups for k in json.loads(v)} - {"student"})
    out = []
    for v, g in groups:
        own = json.loads(v)
        parts = [f"student {searched[v]}"] if searched[v] else []
        for k in keys:
            val = own[k] if k in own else _hp_value(g["hparams"].iloc[0], k)
            parts.append(f"{k}={fmt_value(val) if val is not None else 'default'}")
        out.append((f"{method} ({', '.join(parts)})" if parts else method, g))
    return out


def comparison(df: pd.DataFrame, metric: str = "last_top1") -> Dict[str, Any]:
    """``{"columns": [pair…], "rows": [(label, category, {pair: stats|None})…], "column_archs": {pair:
    (teacher archs, student arch)}, "metric": metric}``."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    students = df[~df["export_teacher"]]
    distilled = students[students["teachers"] != ""]
    columns = list(dict.fromkeys(distilled["pair"].tolist())) or list(dict.fromkeys(students["pair"].tolist()))
    col_student: Dict[str, str] = {}
    archs: Dict[str, Tuple[str, str]] = {}
    teacher_cells = {}
    for c in columns:
        sub = students[students["pair"] == c]
        col_student[c] = sub["student"].iloc[0]
        archs[c] = (sub["teacher_archs"].iloc[0], col_student[c])
        # the teacher's accuracy is a property of the teacher checkpoint: one value, not a seed mean
        tvals = sub["teacher_top1"].dropna().tolist()
        teacher_cells[c] = stats(tvals[:1])
    rows: List[Tuple[str, str, Dict[str, Any]]] = [(TEACHER, "teacher", teacher_cells)]
    row_methods = {TEACHER: "teacher", VANILLA: "vanilla"}
    ref_methods: Dict[str, str] = {}  # a row's name in the references: kd+ls for KD with logit standardisation
    cell_marks: Dict[Tuple[str, str], str] = {}
    van = students[students["method"] == "vanilla"]
    rows.append((VANILLA, "baseline", {c: cell_stats(van[van["student"] == col_student[c]], metric) for c in columns}))
    for cat in [c for c in CATEGORIES if c != "baseline"] + sorted(set(students["category"].dropna()) - set(CATEGORIES)):
        sub = students[(students["category"] == cat) & (students["method"] != "vanilla")]
        for method in sorted(sub["method"].unique()):
            for label, ms in variant_rows(sub[sub["method"] == method], method):
                cells = {}
                for c in columns:
                    # methods without a teacher (online / self) are matched to a column by its student
                    hit = ms[ms["pair"] == c] if (ms["teachers"] != "").any() else ms[ms["student"] == col_student[c]]
                    cells[c] = cell_stats(hit, metric)
                    if len(hit) and (mk := "; ".join(sorted(set(hit["marks"]) - {""}))):
                        cell_marks[(label, c)] = mk
                rows.append((label, cat, cells))
                row_methods[label] = method
                if all(_hp_value(h, "standardize") is True for h in ms["hparams"]):
                    ref_methods[label] = f"{method}+ls"
    return {"columns": columns, "rows": rows, "metric": metric, "column_archs": archs, "row_methods": row_methods,
            "ref_methods": ref_methods, "marks": cell_marks}


def best_per_column(table: Dict[str, Any]) -> Dict[str, set]:
    """The student rows (not the teacher, not diverged cells) with the highest mean in each column, as
    printed (two decimals): rows tied at the top are all marked."""
    best: Dict[str, set] = {}
    for c in table["columns"]:
        means = {label: round(s["mean"], 2) for label, cat, cells in table["rows"]
                 if cat != "teacher" and (s := cells.get(c)) is not None and "mean" in s}
        top = max(means.values(), default=None)
        best[c] = {label for label, m in means.items() if m == top}
    return best


def gains(df: pd.DataFrame, metric: str = "last_top1") -> pd.DataFrame:
    """One row per (method, student, pair): the seed mean minus the vanilla seed mean of the same student
    architecture (percentage points); methods whose student has no vanilla run get no row."""
    students = df[~df["export_teacher"]]
    vans = students[students["method"] == "vanilla"]
    van = {st: cell_stats(g, metric) for st, g in vans.groupby("student")}
    out = []
    for (method, variant, cat, scheme, student, pair, mk), g in students[students["method"] != "vanilla"].groupby(
            ["method", "variant", "category", "scheme", "student", "pair", "marks"], dropna=False):
        s, v = cell_stats(g, metric), van.get(student)
        # a diverged cell (or baseline) has no mean: no gain, rather than the survivors' mean
        if s is None or v is None or "mean" not in s or "mean" not in v:
            continue
        out.append({"method": method, "variant": variant, "category": cat, "scheme": scheme, "student": student,
                    "pair": pair, "mean": s["mean"], "vanilla": v["mean"], "gain": s["mean"] - v["mean"],
                    "n": s["n"], "marks": mk})
    return pd.DataFrame(out, columns=["method", "variant", "category", "scheme", "student", "pair", "mean", "vanilla",
                                      "gain", "n", "marks"])


def category_summary(df: pd.DataFrame, metric: str = "last_top1") -> List[Dict[str, Any]]:
    """One row per survey category present: taxonomy axis and section, schemes, methods, runs, the mean
    (± sample std) of the method×pair gains over vanilla, and the method with the largest mean gain. Cells whose
    protocol differs from their column's standard recipe (``marks``) are neither in the gain nor ranked: their
    methods are listed with the marks (``mlkd [2 views, strong aug]``) and their gains under ``other_protocol``."""
    g = gains(df, metric)
    other, g = g[g["marks"] != ""], g[g["marks"] == ""]
    students = df[~df["export_teacher"] & (df["method"] != "vanilla")]
    rows = []
    for cat in [c for c in CATEGORIES if c != "baseline"] + sorted(set(students["category"].dropna()) - set(CATEGORIES)):
        runs = students[students["category"] == cat]
        if runs.empty:
            continue
        info = CATEGORIES.get(cat)
        cg = g[g["category"] == cat]
        gs = stats(cg["gain"])
        per_method = cg.groupby("method")["gain"].mean()
        best = (per_method.idxmax(), float(per_method.max())) if len(per_method) else None
        oc = other[other["category"] == cat]
        named = {m: m for m in set(runs[runs["marks"] == ""]["method"])}
        for (m, mk), og in oc.groupby(["method", "marks"]):
            named[f"{m} [{mk}]"] = f"{m} [{mk}]"
        rows.append({"category": cat, "title": info.title if info else cat, "axis": info.knowledge if info else "",
                     "section": info.survey_section if info else "", "schemes": sorted(set(runs["scheme"].dropna())),
                     "methods": sorted(named), "runs": len(runs), "gain": gs, "best": best,
                     "other_protocol": [(m, mk, float(og["gain"].mean())) for (m, mk), og in oc.groupby(["method", "marks"])]})
    return rows
