"""Figures from run records (matplotlib, PNG and PDF): gains by category, per-pair bars, training curves.

Role in the flow: beside :mod:`kdsuite.analysis.tables`, the other end of the pipeline. Every figure is computed
from the long run frame (:func:`kdsuite.analysis.tables.runs_frame`) or from the records' per-epoch history, so
local records and records converted from W&B plot the same way.

- ``gain``: per method, the gain over the vanilla student of the same architecture (mean over pairs),
  bars coloured and grouped by survey category, error bars = the seed std of the method's runs.
- ``pairs``: one panel per teacher→student pair, a bar per method (grouped by category in taxonomy
  order) with the seed std as error bar, the vanilla student as a dashed line and the teacher as a dotted
  one (each value written at the line's end), on the whole 0–100 % axis, one legend for the categories
  and the two lines.
- ``curves``: test top-1 per epoch (mean over seeds, shaded ± std) and, with a validation split,
  validation top-1 dashed, one panel per pair.

Every figure uses one palette (:func:`category_colours`: a category's colour is fixed by its place in the
taxonomy) and embeds TrueType (Type 42) fonts in PDFs.
Files are written atomically (rendered in memory, written to a temporary name, then renamed), with the
permissions the umask gives.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence

import pandas as pd

from kdsuite.analysis.tables import METRIC_SHORT, gains, method_label, pair_title, stats, student_key, variant_rows
from kdsuite.core.fileio import atomic_write_bytes
from kdsuite.methods.registry import CATEGORIES, method_display_name

KINDS = ("gain", "pairs", "curves")


def display_name(method: str) -> str:
    """A method's name as papers write it (``kd`` → ``KD``; one mapping: the method registry's)."""
    return method_display_name(method)


FORMATS = ("png", "pdf")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # TrueType (Type 42) fonts in PDF/PS: IEEE and ACM checkers reject the default Type 3
    matplotlib.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "legend.fontsize": 8})
    return plt


def _save(fig, out: Path, stem: str, formats: Sequence[str]) -> List[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = out / f"{stem}.{fmt}"
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, bbox_inches="tight", dpi=150)
        atomic_write_bytes(target, buf.getvalue())  # atomic, with the umask's permissions
        written.append(target)
    return written


def category_colours(categories: Iterable[str] = ()) -> Dict[str, Any]:
    """One colour per survey category, the same in every figure: fixed by the category's place in the
    registry's taxonomy order (not by which categories a figure happens to show); categories outside
    the registry follow, sorted. Keys in taxonomy order."""
    plt = _plt()
    order = list(CATEGORIES) + sorted(set(categories) - set(CATEGORIES))
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    return {c: cmap(i % cmap.N) for i, c in enumerate(order)}


def _colours(categories: Iterable[str]) -> Dict[str, Any]:
    """The fixed palette restricted to ``categories`` (for legends), in taxonomy order."""
    every = category_colours(categories)
    present = set(categories)
    return {c: col for c, col in every.items() if c in present}


def _category_legend(ax, plt, colours: Dict[str, Any], **kw) -> None:
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c in colours]
    ax.legend(handles, [CATEGORIES[c].title if c in CATEGORIES else c for c in colours], frameon=False, **kw)


def _bar_labels(runs: pd.DataFrame, method: str, category: str) -> Dict[str, str]:
    """``{variant: label}`` of one method's runs: the table's row labels (``DKD (T=2, …)`` where a method
    ran in several variants), so a figure never merges two rows of its table into one bar."""
    name = method_label(method, category)  # names a searched student's KD already
    if runs["variant"].nunique() <= 1:
        return {v: name for v in runs["variant"].unique()}
    return {g["variant"].iloc[0]: label for label, g in variant_rows(runs, name)}


def gain_data(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per table row (method variant, protocol marks): category, mean gain over pairs, the mean over pairs
    of the seed std, and the marks (a cell trained under another protocol than its column's)."""
    g = gains(df, metric)
    students = df[~df["export_teacher"] & (df["method"] != "vanilla")]
    rows = []
    # by (category, method): a searched student's KD (the NAS-based cell) is not the response-based KD
    for (category, method), mg in g.groupby(["category", "method"]):
        mine = students[(students["method"] == method) & (students["category"] == category)]
        labels = _bar_labels(mine, method, category)
        for (variant, mk), vg in mg.groupby(["variant", "marks"], dropna=False):
            runs = mine[mine["variant"] == variant]
            seed_std = [stats(runs[runs["pair"] == p][metric])["std"] for p in vg["pair"]]
            label = labels.get(variant, method_label(method, category)) + (f" [{mk}]" if mk else "")
            rows.append({"method": method, "category": category, "label": label, "gain": vg["gain"].mean(),
                         "err": sum(seed_std) / len(seed_std), "marks": mk or ""})
    order = {c: i for i, c in enumerate(CATEGORIES)}
    out = pd.DataFrame(rows, columns=["method", "category", "label", "gain", "err", "marks"])
    return out.assign(_o=out["category"].map(lambda c: order.get(c, 99))).sort_values(["_o", "label"]).drop(columns="_o")


def plot_gain(df: pd.DataFrame, out: Path, metric: str = "last_top1", formats=FORMATS) -> List[Path]:
    plt = _plt()
    data = gain_data(df, metric)
    if data.empty:
        raise ValueError("no method has a vanilla run of the same student: no gain to plot")
    colours = _colours(data["category"])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(data) + 1.5) + 2.8, 3.6))  # + the legend beside
    x = range(len(data))
    ax.bar(x, data["gain"], yerr=data["err"], capsize=3, color=[colours[c] for c in data["category"]],
           hatch=["//" if mk else "" for mk in data["marks"]], edgecolor="white")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(list(x), list(data["label"]), rotation=45, ha="right")
    ax.set_ylabel(f"gain over vanilla (pp)\n{METRIC_SHORT.get(metric, metric)}")
    other = "; hatched [...]: another protocol than the column's (not ranked)" if data["marks"].astype(bool).any() else ""
    ax.set_title("error bars: the method's seed std\n(mean over pairs; vanilla's spread not included" + other + ")",
                 fontsize=8)
    _category_legend(ax, plt, colours, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars
    fig.tight_layout()
    try:
        return _save(fig, out, "gain_by_category", formats)
    finally:
        plt.close(fig)


def plot_pairs(df: pd.DataFrame, out: Path, metric: str = "last_top1", formats=FORMATS) -> List[Path]:
    plt = _plt()
    fig = pairs_figure(df, metric)
    try:
        return _save(fig, out, "accuracy_by_pair", formats)
    finally:
        plt.close(fig)


def pairs_figure(df: pd.DataFrame, metric: str = "last_top1"):
    """The per-pair figure (a matplotlib Figure; :func:`plot_pairs` saves it)."""
    plt = _plt()
    students = df[~df["export_teacher"]]
    pairs = list(dict.fromkeys(students[students["teachers"] != ""]["pair"])) or list(dict.fromkeys(students["pair"]))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 3.6), squeeze=False)
    colours = _colours(students[students["method"] != "vanilla"]["category"].dropna())  # vanilla: a line
    order = {c: i for i, c in enumerate(category_colours(students["category"].dropna()))}
    for ax, pair in zip(axes[0], pairs):
        student = students[students["pair"] == pair]["student"].iloc[0]
        rows = []
        for (category, method), g in students.groupby(["category", "method"]):
            if method == "vanilla":
                continue
            sub = g[g["pair"] == pair] if (g["teachers"] != "").any() else g[g["student"] == student]
            labels = _bar_labels(g, method, category)
            for (variant, mk), vg in sub.groupby(["variant", "marks"], dropna=False):
                s = stats(vg[metric])
                if s:
                    rows.append((labels.get(variant, method_label(method, category)) + (f" [{mk}]" if mk else ""),
                                 category, s, mk))
        rows.sort(key=lambda r: (order.get(r[1], 99), r[0]))  # grouped by category, in taxonomy order
        van = stats(students[(students["method"] == "vanilla") & (students["student"] == student)][metric])
        ax.bar(range(len(rows)), [r[2]["mean"] for r in rows], yerr=[r[2]["std"] for r in rows], capsize=3,
               color=[colours.get(r[1], "grey") for r in rows], hatch=["//" if r[3] else "" for r in rows],
               edgecolor="white")
        lines = []  # legend labels say what a line is; its value (per panel) is written at its end
        if van:
            lines.append(ax.axhline(van["mean"], ls="--", color="black", lw=1, label="vanilla student"))
            ax.annotate(f"{van['mean']:.2f}", (1.0, van["mean"]), xycoords=("axes fraction", "data"),
                        xytext=(2, -3), textcoords="offset points", fontsize=7, va="top")
        tvals = students[students["pair"] == pair]["teacher_top1"].dropna()
        if len(tvals):
            lines.append(ax.axhline(float(tvals.iloc[0]), ls=":", color="dimgrey", lw=1.2, label="teacher"))
            ax.annotate(f"{float(tvals.iloc[0]):.2f}", (1.0, float(tvals.iloc[0])), xycoords=("axes fraction", "data"),
                        xytext=(2, 3), textcoords="offset points", fontsize=7, va="bottom", color="dimgrey")
        ax.set_xticks(range(len(rows)), [r[0] for r in rows], rotation=45, ha="right")
        first = students[students["pair"] == pair].iloc[0]
        ax.set_title(pair_title(first["teacher_archs"], first["student"], pair), fontsize=9, pad=12)  # above a ~100 % label
        ax.set_ylabel(f"{METRIC_SHORT.get(metric, metric)} (%)\nbars ± seed std")
        ax.set_ylim(0.0, 100.0)  # the whole accuracy scale: no truncated axis exaggerating differences
        handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c in colours] + lines
        labels = [CATEGORIES[c].title if c in CATEGORIES else c for c in colours] + [ln.get_label() for ln in lines]
        if ax is axes[0][-1]:  # one legend, beside the last panel (past its line values), not on the bars
            ax.legend(handles, labels, frameon=False, loc="upper left", bbox_to_anchor=(1.12, 1.0))
    fig.tight_layout()
    return fig


def _history_key(record: Dict[str, Any], split: str) -> str | None:
    """The history key of the student's top-1 on ``split`` (test / val) in ``record``. Records from
    before the validation split logged the TEST split under ``val/``: there ``val/`` is read as test."""
    hist = record.get("history") or []
    has_test = any("test/student/top1" in h for h in hist)
    if split == "test":
        return "test/student/top1" if has_test else "val/student/top1"
    return "val/student/top1" if has_test else None


def curve_data(records: Iterable[Dict[str, Any]], split: str = "test") -> pd.DataFrame:
    """Per-epoch student top-1 on ``split`` (``test`` or ``val``, the validation split) of every run;
    ``method`` is the figure's label (a searched student's KD is not the hand-picked student's)."""
    rows = []
    for r in records:
        if r.get("teacher_export"):
            continue
        key = _history_key(r, split)
        for h in (r.get("history") or []) if key else []:
            if h.get(key) is not None:
                label = method_label(r.get("method"), "nas" if r.get("search") else r.get("category"))
                rows.append({"method": label, "run": r.get("run_id") or r.get("run_dir"), "pair": r.get("pair"),
                             "student": student_key(r),
                             "title": pair_title("+".join(r.get("teachers") or []), student_key(r) or "", r.get("pair")),
                             "distilled": bool(r.get("teachers")), "seed": r.get("seed"),
                             "stage": h.get("stage"), "epoch": h.get("epoch"), "value": h[key]})
    return pd.DataFrame(rows, columns=["method", "run", "pair", "student", "title", "distilled", "seed", "stage",
                                       "epoch", "value"])


def plot_curves(records: List[Dict[str, Any]], out: Path, formats=FORMATS) -> List[Path]:
    """Test top-1 per epoch (solid) and, where runs have a validation split, validation top-1 (dashed,
    the same colour): mean over seeds, shaded ± sample std."""
    plt = _plt()
    data = curve_data(records, "test")
    val = curve_data(records, "val")
    if data.empty:
        raise ValueError("the records carry no per-epoch test top-1 history: no curve to plot")
    pairs = list(dict.fromkeys(data[data["distilled"]]["pair"])) or list(dict.fromkeys(data["pair"]))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 3.4), squeeze=False)
    cmap = plt.get_cmap("tab20")  # 20 distinct colours: a demo panel holds 14 methods
    method_colour = {m: cmap(i % 20) for i, m in enumerate(sorted(set(data["method"])))}  # same in every panel
    for ax, pair in zip(axes[0], pairs):
        student = data[data["pair"] == pair]["student"].iloc[0]
        for split, frame, ls in (("test", data, "-"), ("val", val, "--")):
            if frame.empty:
                continue
            # runs without a teacher (vanilla, online, self) belong to every panel of their student
            sub = frame[(frame["pair"] == pair) | (~frame["distilled"] & (frame["student"] == student))]
            for method, g in sub.groupby("method"):
                # several stages (hint, main …) continue each other on one epoch axis, run by run
                g = g.assign(step=g.groupby("run").cumcount() + 1)
                agg = g.groupby("step")["value"].agg(["mean", "std"]).fillna(0.0)
                colour = method_colour.get(method, "grey")
                ax.plot(agg.index, agg["mean"], ls=ls, color=colour, lw=1.2,
                        label=method if split == "test" else None)
                if split == "test":  # shaded: ± sample std over seeds
                    ax.fill_between(agg.index, agg["mean"] - agg["std"], agg["mean"] + agg["std"], alpha=0.15,
                                    color=colour)
        ax.set_title(data[data["pair"] == pair]["title"].iloc[0], fontsize=9)
        ax.set_xlabel("epoch (all stages)")
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.set_ylabel("top-1 (%): test solid" + (", validation dashed" if not val.empty else ""))
        ax.legend(frameon=False, ncol=2)
    fig.tight_layout()
    try:
        return _save(fig, out, "training_curves", formats)
    finally:
        plt.close(fig)
