"""Comparison tables from run records: the RepDistiller/CRD layout, a taxonomy summary, a long CSV.

Role in the flow: the last step. Records (local, or converted from W&B by
:mod:`kdsuite.analysis.wandb_source`) become a long data frame (:func:`runs_frame`, one row per run), then

- :func:`comparison` — rows are methods (one row per variant: ``kd (T=2)``, ``kd (T=4)``) grouped by
  survey category with the teacher and the vanilla student on top, columns are teacher→student pairs,
  cells are mean ± std over *distinct* seeds with the seed count (sample std, n − 1; a seed run twice
  under different configs is averaged and flagged); a cell with a diverged run shows ``div.``, never a
  number; the best students per column (ties included) are marked;
- :func:`category_summary` — one row per survey category (taxonomy axis, schemes, methods) with the
  mean gain over the vanilla student of the same architecture, in percentage points;
- the long frame itself (``--layout runs``).

Renderers: :func:`to_markdown`, :func:`to_latex` (booktabs, every name escaped) and :func:`to_csv`.
Missing cells stay missing (``–`` / ``--`` / empty in CSV), never 0. With published references
(:mod:`kdsuite.analysis.references`) each cell also shows the published number and the difference.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pandas as pd

from kdsuite.methods.registry import CATEGORIES, get_method, method_display_name

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
        })
    cols = ["run_id", "grid", "method", "category", "scheme", "dataset", "student", "student_name", "teachers",
            "teacher_archs", "pair", "seed", "best_top1", "best_test_top1", "last_top1", "best_top5", "last_top5",
            "val_fraction", "teacher_top1",
            "student_params", "wall_time_s", "images_per_s", "export_teacher", "config_hash", "git_commit", "run_dir", "status", "variant",
            "variant_label", "hparams", "diverged_at", "avg_acc", "forgetting"]
    return pd.DataFrame(rows, columns=cols)


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
                rows.append((label, cat, cells))
                row_methods[label] = method
    return {"columns": columns, "rows": rows, "metric": metric, "column_archs": archs, "row_methods": row_methods}


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
    for (method, variant, cat, scheme, student, pair), g in students[students["method"] != "vanilla"].groupby(
            ["method", "variant", "category", "scheme", "student", "pair"], dropna=False):
        s, v = cell_stats(g, metric), van.get(student)
        # a diverged cell (or baseline) has no mean: no gain, rather than the survivors' mean
        if s is None or v is None or "mean" not in s or "mean" not in v:
            continue
        out.append({"method": method, "variant": variant, "category": cat, "scheme": scheme, "student": student,
                    "pair": pair, "mean": s["mean"], "vanilla": v["mean"], "gain": s["mean"] - v["mean"],
                    "n": s["n"]})
    return pd.DataFrame(out, columns=["method", "variant", "category", "scheme", "student", "pair", "mean", "vanilla",
                                      "gain", "n"])


def category_summary(df: pd.DataFrame, metric: str = "last_top1") -> List[Dict[str, Any]]:
    """One row per survey category present: taxonomy axis and section, schemes, methods, runs, the mean
    (± sample std) of the method×pair gains over vanilla, and the method with the largest mean gain."""
    g = gains(df, metric)
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
        rows.append({"category": cat, "title": info.title if info else cat, "axis": info.knowledge if info else "",
                     "section": info.survey_section if info else "", "schemes": sorted(set(runs["scheme"].dropna())),
                     "methods": sorted(set(runs["method"])), "runs": len(runs), "gain": gs, "best": best})
    return rows


# ----------------------------------------------------------------------------------------- rendering
DUP_MARK = "†"


def _fmt(s: Optional[Dict[str, float]], pm: str = "±") -> Optional[str]:
    if s is None:
        return None
    if "diverged" in s:
        return f"div. ({s['diverged']}/{s['n']})"
    txt = f"{s['mean']:.2f} {pm} {s['std']:.2f} ({s['n']})" if s["n"] > 1 else f"{s['mean']:.2f} ({s['n']})"
    return txt + (DUP_MARK if s.get("dup") else "")


def _category_title(cat: str) -> str:
    if cat == "teacher":
        return "Teacher"
    return CATEGORIES[cat].title if cat in CATEGORIES else cat


def _ref_text(ref: Optional[Dict[str, Any]], s: Optional[Dict[str, float]], minus: str = "−") -> str:
    if not ref:
        return ""
    pub = f"{ref['value']:.2f}"
    if ref.get("comparable") is False:
        return f" [pub. {pub} ({ref['epoch_policy']} epoch), no Δ]"
    tag = " (epoch unstated)" if ref.get("comparable") is None and "comparable" in ref else ""
    tag += " (sel. on test)" if ref.get("selected_on_test") else ""
    if s is None or "mean" not in s:
        return f" [pub. {pub}{tag}]"
    d = s["mean"] - ref["value"]
    return f" [pub. {pub}{tag}, Δ {'+' if d >= 0 else minus}{abs(d):.2f}]"


def _caption(table: Dict[str, Any]) -> str:
    txt = (f"Cells: {metric_text(table['metric'])} (%), mean ± sample std "
           f"(n − 1) over seeds (number of seeds); best student per column in bold (ties all bold); – = not run.")
    if table.get("reference"):
        txt += (f" [pub. X, Δ d]: the published number of reference '{table['reference']}' and this "
                f"table's mean minus it.")
        policies = {r.get("comparable") for r in (table.get("refs") or {}).values()}
        if False in policies:
            txt += (f" 'no Δ': the source reports another epoch than this table's "
                    f"({metric_text(table['metric'])}); the numbers are not comparable.")
        if any(r.get("selected_on_test") for r in (table.get("refs") or {}).values()):
            txt += (" 'sel. on test': the source reports its best epoch chosen on the test split; this table's "
                    "best epoch is chosen on a held-out validation split, so the published number is optimistic.")
        if None in policies:
            txt += " 'epoch unstated': the source does not say which epoch it reports."
    cells = [s for _l, _c, cells in table["rows"] for s in cells.values() if s]
    if any("diverged" in s for s in cells):
        txt += " div. (k/n): k of the cell's n seeds diverged (non-finite loss or weights); no mean is given."
    if any(s.get("dup") for s in cells):
        txt += (f" {DUP_MARK}: a seed was run more than once with different configs; its runs are averaged and "
                f"the seed counted once.")
    for note in table.get("notes") or []:
        txt += f" {note}"
    return txt


def column_title(table: Dict[str, Any], column: str) -> str:
    """A pair column's header as papers print it (``ResNet32×4→ResNet8×4``; :mod:`kdsuite.zoo.names`)."""
    archs = (table.get("column_archs") or {}).get(column)
    return pair_title(archs[0], archs[1], column) if archs and archs[1] else column


def pair_title(teacher_archs: str, student: str, pair: str) -> str:
    """``ResNet20→ResNet8``; a student on another view than its teachers (``student_key`` ``arch@view``,
    cross-modal) names both views, the teachers' read from the record's ``pair`` label:
    ``ResNet20 (image)→ResNet8 (edges)``."""
    from kdsuite.zoo.names import pair_name, paper_name

    if "@" not in student:
        return pair_name(teacher_archs, student)
    arch, view = student.split("@", 1)
    t_view = re.search(r"\(([^()]*)\)→", pair or "")
    teachers = "+".join(paper_name(t) for t in (teacher_archs or "").split("+") if t)
    s = f"{paper_name(arch)} ({view})"
    return f"{teachers}{f' ({t_view.group(1)})' if t_view else ''}→{s}" if teachers else s


def method_label(method: str, category: str) -> str:
    """A method's name in figures: its display name; a run of a searched student (the NAS-based cell,
    whose method belongs to another category) says so."""
    from kdsuite.methods.registry import method_display_name

    try:
        own = get_method(method).category
    except KeyError:
        own = category
    return method_display_name(method) + (" (searched student)" if category == "nas" and own != "nas" else "")


def row_title(table: Dict[str, Any], label: str) -> str:
    """A method row's label with the method's display name (``kd (T=2)`` → ``KD (T=2)``), for LaTeX."""
    from kdsuite.methods.registry import method_display_name

    method = (table.get("row_methods") or {}).get(label)
    if method in (None, "teacher", "vanilla") or not label.startswith(method):
        return label
    return method_display_name(method) + label[len(method):]


def to_markdown(table: Dict[str, Any]) -> str:
    cols = table["columns"]
    best = best_per_column(table)
    refs = table.get("refs") or {}
    lines = ["| Method | Category | " + " | ".join(column_title(table, c) for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for label, cat, cells in table["rows"]:
        out = []
        for c in cols:
            txt = _fmt(cells.get(c))
            txt = "–" if txt is None else (f"**{txt}**" if label in best[c] else txt)
            out.append(txt + _ref_text(refs.get((label, c)), cells.get(c)))
        lines.append(f"| {label} | {_category_title(cat)} | " + " | ".join(out) + " |")
    lines.append("\n" + _caption(table))
    return "\n".join(lines)


_LATEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
              "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
              "→": r"$\rightarrow$", "±": r"$\pm$", "–": "--", "Δ": r"$\Delta$", "−": r"$-$", "†": r"$^\dagger$", "§": r"\S{}",
              "×": r"$\times$", "λ": r"$\lambda$",
              "`": ""}  # Markdown's code quotes (in notes) have no place in a caption


def latex_escape(text: Any) -> str:
    """``text`` with LaTeX's special characters escaped (and →, ±, Δ as math), safe inside a tabular."""
    text = str(text)
    # a hyphen before a hyphen gets "{}" so that "--layout" is not typeset as an en dash
    return "".join("-{}" if ch == "-" and text[i + 1:i + 2] == "-" else _LATEX_ESC.get(ch, ch)
                   for i, ch in enumerate(text))


def tex_signed(x: float) -> str:
    """``+0.17`` / ``−0.51`` with a real minus sign in LaTeX (``$-$``), not a hyphen."""
    return f"{'$+$' if x >= 0 else '$-$'}{abs(x):.2f}"


def _tex_cell(s: Dict[str, Any], bold: bool) -> str:
    txt = f"{s['mean']:.2f}$\\pm${s['std']:.2f}" if s["n"] > 1 else f"{s['mean']:.2f}"
    txt = rf"\textbf{{{txt}}}" if bold else txt
    return txt + rf" {{\scriptsize ({s['n']})}}" + (r"$^\dagger$" if s.get("dup") else "")


def _fit(lines: List[str], tabular: List[str]) -> List[str]:
    # shrinks a table wider than the column to fit it, never enlarges one: graphicx's \resizebox, whose
    # arguments see the content's natural \width (graphicx is in every LaTeX; adjustbox is not)
    return (lines + [r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"] + tabular[:-1]
            + [tabular[-1] + "}"])


def _stack(*lines: str, align: str = "c") -> str:
    """Lines stacked in one table cell (a nested ``tabular``), so that a long cell is tall, not wide."""
    lines = [ln for ln in lines if ln]
    if len(lines) == 1:
        return lines[0]
    return rf"\begin{{tabular}}[t]{{@{{}}{align}@{{}}}}" + r" \\ ".join(lines) + r"\end{tabular}"


def _tex_header(table: Dict[str, Any], column: str) -> str:
    """A pair column's header on two lines: the teacher(s), then → the student."""
    title = column_title(table, column)
    if "→" not in title:
        return latex_escape(title)
    teacher, student = title.split("→", 1)
    return _stack(latex_escape(teacher), latex_escape("→" + student))


def to_latex(table: Dict[str, Any], tex_label: str = "tab:kdsuite-methods") -> str:
    """A booktabs ``table`` environment; one block per category, headed by the category's name; cells
    ``mean±std (n)`` with the published number on a second line; needs ``\\usepackage{booktabs,graphicx}``
    (a table wider than the column is shrunk to fit; in a two-column paper put a wide one in ``table*``)."""
    cols = table["columns"]
    best = best_per_column(table)
    refs = table.get("refs") or {}
    lines = [r"\begin{tabular}{l" + "c" * len(cols) + "}", r"\toprule",
             "Method & " + " & ".join(_tex_header(table, c) for c in cols) + r" \\", r"\midrule"]
    prev = None
    for label, cat, cells in table["rows"]:
        block = "top" if cat in ("teacher", "baseline") else cat  # teacher + vanilla on top, then one block per category
        if prev is not None and block != prev:
            lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{len(cols) + 1}}}{{@{{}}l}}{{\emph{{{latex_escape(_category_title(cat))}}}}} \\")
        prev = block
        out = []
        for c in cols:
            s = cells.get(c)
            if s is None:
                txt = "--"
            elif "diverged" in s:
                txt = f"div. ({s['diverged']}/{s['n']})"
            else:
                txt = _tex_cell(s, label in best[c])
            r = refs.get((label, c))
            if s is not None and "mean" not in s:
                r = None
            note = ""
            if r:
                pub = f"{r['value']:.2f}"
                if s is None:
                    note = rf"{{\scriptsize [pub.~{pub}]}}"
                elif r.get("comparable") is False:
                    note = rf"{{\scriptsize [pub.~{pub} ({r['epoch_policy']} epoch), no $\Delta$]}}"
                else:
                    unstated = " (epoch unstated)" if r.get("comparable") is None and "comparable" in r else ""
                    unstated += " (sel.\\ on test)" if r.get("selected_on_test") else ""
                    note = rf"{{\scriptsize [pub.~{pub}{unstated}, $\Delta$\,{tex_signed(s['mean'] - r['value'])}]}}"
            out.append(_stack(txt, note))
        lines.append(f"{latex_escape(row_title(table, label))} & " + " & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(_fit([r"\begin{table}[t]", r"\centering", r"\small"], lines)
                     + [r"\caption{" + latex_escape(_caption(table)) + "}", rf"\label{{{tex_label}}}", r"\end{table}"])


def comparison_frame(table: Dict[str, Any]) -> pd.DataFrame:
    """The comparison table in long form (one row per method × pair, missing cells kept as empty)."""
    refs = table.get("refs") or {}
    rows = []
    for label, cat, cells in table["rows"]:
        for c in table["columns"]:
            s = cells.get(c)
            r = refs.get((label, c))
            ok = s is not None and "mean" in s
            rows.append({"method": label, "category": cat, "pair": c, "metric": table["metric"],
                         "mean": s["mean"] if ok else None, "std": s["std"] if ok else None,
                         "n": None if s is None else s["n"], "diverged": (s or {}).get("diverged", 0),
                         "duplicate_seeds": "+".join((s or {}).get("dup", [])),
                         "published": r["value"] if r else None,
                         "delta": (s["mean"] - r["value"]) if (r and ok and r.get("comparable") is not False) else None,
                         "published_epoch": (r.get("epoch_policy") or None) if r else None,
                         "published_source": r["source"] if r else None})
    return pd.DataFrame(rows)


def summary_markdown(rows: List[Dict[str, Any]], metric: str) -> str:
    lines = ["| Category | Taxonomy (survey §) | Schemes | Methods | Runs | Gain over vanilla (pp) | Best method |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        best = f"{r['best'][0]} ({r['best'][1]:+.2f})" if r["best"] else "–"
        g = r["gain"]
        gain = "–" if g is None else (f"{g['mean']:+.2f} ± {g['std']:.2f} ({g['n']})" if g["n"] > 1
                                      else f"{g['mean']:+.2f} ({g['n']})")
        lines.append(f"| {r['title']} | {r['axis']} ({r['section']}) | {', '.join(r['schemes'])} | "
                     f"{', '.join(r['methods'])} | {r['runs']} | {gain} | {best} |")
    lines.append(f"\nGain: mean over the category's method × pair cells of (seed mean − vanilla seed mean of the same "
                 f"student), {metric_text(metric)}, ± sample std (number of cells).")
    return "\n".join(lines)


def summary_latex(rows: List[Dict[str, Any]], metric: str, label: str = "tab:kdsuite-categories",
                  notes: Optional[List[str]] = None) -> str:
    """The taxonomy summary as a booktabs table (``\\usepackage{booktabs,graphicx}``); a gain over one
    cell has no ±; every gain names its number of method × pair cells."""
    lines = [r"\begin{tabular}{lp{2.3cm}rrl}", r"\toprule",
             r"Category (taxonomy) & Methods & Runs & Gain (pp) & Best \\", r"\midrule"]
    for r in rows:
        g = r["gain"]
        gain = "--" if g is None else (f"{tex_signed(g['mean'])}$\\pm${g['std']:.2f} ({g['n']})" if g["n"] > 1
                                       else f"{tex_signed(g['mean'])} (1)")
        best = "--" if not r["best"] else _stack(latex_escape(method_display_name(r["best"][0])),
                                                 f"({tex_signed(r['best'][1])})", align="l")
        category = _stack(latex_escape(r["title"]),
                          rf"{{\scriptsize {latex_escape(r['axis'])} ({latex_escape(r['section'])})}}", align="l")
        # \raggedright: method names break between names, not inside them (the p column would justify)
        lines.append(f"{category} & \\raggedright {latex_escape(', '.join(method_display_name(m) for m in r['methods']))} & "
                     f"{r['runs']} & {gain} & {best} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = (r"\caption{Mean gain over the vanilla student per survey category (" +
               latex_escape(metric_text(metric)) + r", percentage points): mean $\pm$ sample "
               r"std over the category's method $\times$ pair cells (number of cells)." +
               "".join(" " + latex_escape(n) for n in notes or []) + "}")
    return "\n".join(_fit([r"\begin{table}[t]", r"\centering", r"\small"], lines) + [caption, rf"\label{{{label}}}",
                                                                                     r"\end{table}"])


def summary_frame(rows: List[Dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{"category": r["category"], "title": r["title"], "axis": r["axis"], "section": r["section"],
                          "schemes": "+".join(r["schemes"]), "methods": "+".join(r["methods"]), "runs": r["runs"],
                          "gain_mean": r["gain"]["mean"] if r["gain"] else None,
                          "gain_std": r["gain"]["std"] if r["gain"] else None,
                          "gain_cells": r["gain"]["n"] if r["gain"] else None,
                          "best_method": r["best"][0] if r["best"] else None,
                          "best_gain": r["best"][1] if r["best"] else None} for r in rows])
