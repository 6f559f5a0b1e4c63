"""Markdown renderers: the methods × pairs table and the taxonomy summary as GitHub tables with their captions.

Role in the flow: ``kdsuite table --format md`` (registered in :mod:`kdsuite.analysis.table_formats`) prints
what :mod:`kdsuite.analysis.table_compute` computed; missing cells are ``–``, never 0.
"""
from __future__ import annotations

from typing import Any, Dict, List

from kdsuite.analysis.table_compute import best_per_column, metric_text
from kdsuite.analysis.table_text import _caption, _category_title, _fmt, _ref_text, column_title, mark_text, unranked_text


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
            out.append(txt + mark_text(table, label, c) + _ref_text(refs.get((label, c)), cells.get(c)))
        lines.append(f"| {label} | {_category_title(cat)} | " + " | ".join(out) + " |")
    lines.append("\n" + _caption(table))
    return "\n".join(lines)



def summary_markdown(rows: List[Dict[str, Any]], metric: str) -> str:
    lines = ["| Category | Taxonomy (survey §) | Schemes | Methods | Runs | Gain over vanilla (pp) | Best method |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        best = f"{r['best'][0]} ({r['best'][1]:+.2f})" if r["best"] else "–"
        if unranked_text(r):
            best += f"; not ranked, other protocol: {unranked_text(r)}"
        g = r["gain"]
        gain = "–" if g is None else (f"{g['mean']:+.2f} ± {g['std']:.2f} ({g['n']})" if g["n"] > 1
                                      else f"{g['mean']:+.2f} ({g['n']})")
        lines.append(f"| {r['title']} | {r['axis']} ({r['section']}) | {', '.join(r['schemes'])} | "
                     f"{', '.join(r['methods'])} | {r['runs']} | {gain} | {best} |")
    lines.append(f"\nGain: mean over the category's method × pair cells of (seed mean − vanilla seed mean of the same "
                 f"student), {metric_text(metric)}, ± sample std (number of cells); cells whose protocol differs "
                 f"from their column's standard recipe (views, augmentation, teacher parts, epochs) are not in the "
                 f"gain nor ranked, and are named with how they differ.")
    return "\n".join(lines)
