"""``kdsuite table`` and ``kdsuite plot``: paper tables and figures from local records or from W&B.

Sources: ``--source runs/GRID`` (a folder of ``record.json`` files, searched recursively) or
``--source wandb:ENTITY/PROJECT`` (finished runs through the W&B public API, server-side filters
``--group`` / ``--tag``). Everything is checked and computed before anything is written, and files are
written atomically: a bad source, a reference that does not exist or mixed datasets leave no file.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

from kdsuite.core.fileio import atomic_write_text, check_writable_dir, check_writable_file
from kdsuite.core.errors import ConfigError


# diverged runs are tabulated (as ``div.``), never dropped: leaving them out would report the survivors
TABULATED = ("finished", "diverged")


class Records(list):
    """Records of a source, with ``notes`` on what was not tabulated as it is (unreadable, stale)."""

    def __init__(self, records, notes=()):
        super().__init__(records)
        self.notes = list(notes)


def _stale_notes(records: List[Dict[str, Any]]) -> List[str]:
    from kdsuite.methods.identity import record_stale_reason

    out = []
    for r in records:
        why = record_stale_reason(r) if r.get("status") == "finished" else None
        if why:
            print(f"kdsuite: warning: stale record {r.get('record_path') or r.get('run_dir')}: {why}", file=sys.stderr)
            out.append(f"Stale (method code changed since the run): {r.get('run_dir')}.")
    return out


def _complete(records: List[Dict[str, Any]]) -> tuple:
    """The records that name what a table row needs (method, student), and a note for each that does not."""
    keep, notes = [], []
    for r in records:
        missing = [k for k in ("method", "student") if not r.get(k)]
        if missing:
            where = r.get("record_path") or r.get("run_dir")
            print(f"kdsuite: warning: {where}: not tabulated, the record names no {' and no '.join(missing)}",
                  file=sys.stderr)
            notes.append(f"Not tabulated: {where} names no {' and no '.join(missing)}.")
        else:
            keep.append(r)
    return keep, notes


def load_source(args, history: bool = False) -> List[Dict[str, Any]]:
    """Finished and diverged records of ``args.source`` (a :class:`Records` list whose ``notes`` name
    every unreadable or stale record); ConfigError saying what was found when there are none."""
    source = args.source
    notes: List[str] = []
    tags = list(getattr(args, "tag", None) or [])
    group = getattr(args, "group", None)
    if source.startswith("wandb:"):
        from kdsuite.analysis.wandb_source import describe_filters, load_wandb_records

        records = list(load_wandb_records(source, group=group, tags=tags, history=history,
                                          per_page=getattr(args, "per_page", 500)))
        if not records:
            raise ConfigError(f"--source {source}: no finished runs matching {describe_filters(group, tags)}; "
                              f"needed: runs logged by kdsuite (WANDB_MODE=online, or offline and `wandb sync`ed)")
    else:
        from kdsuite.core.records import scan_records

        from kdsuite.core.fileio import folder_problem

        src = Path(source)
        problem = folder_problem(src)
        if problem:
            raise ConfigError(f"--source '{src}' {problem}; expected a folder of run records (e.g. runs/demo) or "
                              f"wandb:ENTITY/PROJECT")
        every, unreadable = scan_records(src, status=None)
        for e in unreadable:
            print(f"kdsuite: warning: {e}", file=sys.stderr)
            notes.append(f"Not tabulated: unreadable record {e.path}.")
        records = [r for r in every if r.get("status") in TABULATED]
        if not records:
            found = Counter(str(r.get("status")) for r in every)
            found.update({"unreadable": len(unreadable)} if unreadable else {})
            what = ", ".join(f"{n} {s}" for s, n in sorted(found.items())) if found else "no record.json at all"
            raise ConfigError(f"--source '{src}': no finished run records (found: {what}); run a grid first "
                              f"(`kdsuite grid launch GRID`) or point --source at its output folder")
        notes += _stale_notes(records)
        if group:
            records = [r for r in records if r.get("name") == group]
            if not records:
                raise ConfigError(f"--source '{src}' --group {group!r}: no finished record of that grid")
        if tags:
            raise ConfigError("--tag filters W&B runs; local records are filtered with --group (the grid name)")
    records, incomplete = _complete(records)
    notes += incomplete
    if not records:
        raise ConfigError(f"--source {source}: no record names the method and student it tabulates "
                          f"({len(incomplete)} incomplete, listed above)")
    datasets = Counter(str(r.get("dataset")) for r in records)
    if len(datasets) > 1:
        raise ConfigError(f"--source {source} mixes records of datasets {dict(sorted(datasets.items()))}; a table "
                          f"holds one dataset: point --source at one grid's folder or filter with --group/--tag")
    return Records(records, notes)


def render_table(records: List[Dict[str, Any]], layout: str, fmt: str, metric: str, reference: str = None) -> str:
    from kdsuite.analysis import references, table_compute as tables
    from kdsuite.analysis.table_formats import RENDERERS

    layout = check_layout(layout, reference)
    notes = list(getattr(records, "notes", []))
    if layout in ("methods", "categories"):
        records, left_out = tables.other_protocols(records)
        if not records:
            raise ConfigError(f"--layout {layout}: nothing to compare. " + " ".join(left_out))
        notes += left_out
    df = tables.runs_frame(records)
    metric = metric_column(metric)
    if layout != "runs":
        check_metric(df, metric)
    if layout == "runs":
        if fmt != "csv":
            raise ConfigError(f"--layout runs is the long per-run table: use --format csv (got {fmt!r})")
        return df.to_csv(index=False)
    if layout == "search":
        from kdsuite.analysis import search_table

        found = search_table.searches(records, metric)
        text = tables.metric_text(metric)
        return {"md": lambda: search_table.to_markdown(found, text), "csv": lambda: search_table.to_csv(found),
                "latex": lambda: search_table.to_latex(found, text)}[fmt]() + "\n"
    if layout == "lifelong":
        from kdsuite.analysis import lifelong_table

        found = lifelong_table.collect(records)
        return {"md": lambda: lifelong_table.to_markdown(found), "csv": lambda: lifelong_table.to_csv(found),
                "latex": lambda: lifelong_table.to_latex(found)}[fmt]() + "\n"
    render = RENDERERS[fmt]
    if layout == "categories":
        return render.categories(tables.category_summary(df, metric), metric, notes)
    table = tables.comparison(df, metric)
    table["notes"] = notes
    table = references.attach(table, reference, str(records[0].get("dataset")))
    return render.methods(table)


METRIC_COLUMNS = {"last": "last_top1", "best": "best_top1", "best-test": "best_test_top1"}


def metric_column(metric: str) -> str:
    """The run-frame column of a ``--metric`` choice (``best-test`` → ``best_test_top1``)."""
    return METRIC_COLUMNS.get(metric, metric if metric.endswith("_top1") else f"{metric}_top1")


def check_metric(df, metric: str) -> None:
    """``--metric best`` needs runs that chose their best epoch on a validation split: a finished run
    without one (dataset.val_fraction 0, or a record from before the split) is refused by name, rather
    than tabulated as missing or as its best test accuracy."""
    if metric != "best_top1":
        return
    lacking = df[(df["status"] == "finished") & ~df["export_teacher"] & df["best_top1"].isna()]
    if len(lacking):
        dirs = ", ".join(str(d) for d in lacking["run_dir"].head(3)) + (" …" if len(lacking) > 3 else "")
        raise ConfigError(f"--metric best: {len(lacking)} run(s) have no validation split (dataset.val_fraction 0, "
                          f"or recorded before the split existed), so no epoch was chosen on validation ({dirs}); "
                          f"use --metric best-test (best test top-1 over epochs, the literature's convention) or "
                          f"--metric last")


LAYOUT_ALIASES = {"repdistiller": "methods"}  # the README's name of the methods × pairs layout


def check_layout(layout: str, reference: str = None) -> str:
    """The layout's canonical name; ConfigError when ``reference`` is given for a layout it cannot apply to."""
    layout = LAYOUT_ALIASES.get(layout, layout)
    if reference and layout != "methods":
        raise ConfigError(f"--reference {reference} puts published numbers beside the cells of --layout "
                          f"methods (alias repdistiller); --layout {layout} has no per-method cells to compare "
                          f"— drop --reference or use --layout methods")
    return layout


def cmd_table(args) -> int:
    args.layout = check_layout(args.layout, args.reference)
    if args.reference:
        from kdsuite.analysis.references import load

        load(args.reference)  # an unknown name fails before any source is read
    if args.out:
        check_writable_file(args.out, "--out")  # before any source is read
    records = load_source(args)
    text = render_table(records, args.layout, args.format, args.metric, args.reference)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out} ({len(records)} runs)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_plot(args) -> int:
    from kdsuite.analysis import plots, tables

    kinds = list(plots.KINDS) if args.kind == "all" else [args.kind]
    check_writable_dir(args.out, "--out")  # before any source is read
    records = load_source(args, history="curves" in kinds)
    records, left_out = tables.other_protocols(records, "these figures")  # figures compare students as the methods table does
    for note in left_out:
        print(f"kdsuite: {note}", file=sys.stderr)
    if not records:
        raise ConfigError("kdsuite plot: no run to draw: " + " ".join(left_out))
    df = tables.runs_frame(records)
    diverged = df[df["status"] == "diverged"]
    if len(diverged):  # a diverged run has no accuracy to plot; leaving it out silently would flatter its method
        print(f"kdsuite: warning: {len(diverged)} diverged run(s) left out of the figures: "
              + ", ".join(sorted(set(diverged["method"]))), file=sys.stderr)
        df = df[df["status"] != "diverged"]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in plots.FORMATS]
    if bad or not formats:
        raise ConfigError(f"--formats {args.formats!r}: allowed {', '.join(plots.FORMATS)} (comma-separated)")
    out = Path(args.out)
    metric = metric_column(args.metric)
    check_metric(df, metric)
    written = []
    try:
        for kind in kinds:
            if kind == "gain":
                written += plots.plot_gain(df, out, metric, formats)
            elif kind == "pairs":
                written += plots.plot_pairs(df, out, metric, formats)
            else:
                written += plots.plot_curves(records, out, formats)
    except ValueError as e:
        raise ConfigError(f"kdsuite plot --kind {args.kind}: {e}") from e
    for p in written:
        print(p)
    return 0


def _source_args(p) -> None:
    p.add_argument("--source", required=True, help="folder of run records (e.g. runs/demo) or wandb:ENTITY/PROJECT")
    p.add_argument("--group", help="only this grid (local: the record's grid name; W&B: the run group)")
    p.add_argument("--tag", action="append", help="W&B only: runs carrying this tag (repeatable, all must match)")
    p.add_argument("--per-page", type=int, default=500, help="W&B page size")
    p.add_argument("--metric", choices=list(METRIC_COLUMNS), default="last",
                   help="last: test top-1 at the last epoch; best: test top-1 at the epoch of best validation "
                        "accuracy (needs dataset.val_fraction > 0); best-test: best test top-1 over epochs "
                        "(the literature's convention, selected on test)")


def add_commands(sub) -> None:
    p = sub.add_parser("table", help="paper tables from run records or W&B")
    _source_args(p)
    p.add_argument("--layout", choices=["methods", "repdistiller", "categories", "runs", "search", "lifelong"], default="methods",
                   help="methods (alias repdistiller): the RepDistiller layout; categories: taxonomy summary; "
                        "runs: one CSV row per run; search: the candidates of an architecture search, their proxy "
                        "scores and the chosen student; lifelong: average accuracy and forgetting of class-incremental runs")
    p.add_argument("--format", choices=["md", "latex", "csv"], default="md")
    p.add_argument("--reference", help="published numbers beside each cell of --layout methods (e.g. repdistiller, "
                                       "dkd, dist, all); a source reporting another epoch than --metric gets no Δ")
    p.add_argument("--out", help="write to this file (atomically) instead of stdout")
    p.set_defaults(fn=cmd_table)

    q = sub.add_parser("plot", help="figures (PNG/PDF) from run records or W&B")
    _source_args(q)
    q.add_argument("--kind", choices=["gain", "pairs", "curves", "all"], default="all")
    q.add_argument("--formats", default="png,pdf", help="comma-separated: png, pdf")
    q.add_argument("--out", required=True, help="folder for the figures")
    q.set_defaults(fn=cmd_plot)
