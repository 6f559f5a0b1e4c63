"""Labels shared by every table renderer: cell text, category and column titles, method names, captions.

Role in the flow: between :mod:`kdsuite.analysis.table_compute` (the numbers) and the renderers
(:mod:`kdsuite.analysis.table_markdown`, :mod:`kdsuite.analysis.table_latex`); :mod:`kdsuite.analysis.plots`
names pairs and methods with the same helpers, so a figure and a table say the same names.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Optional

from kdsuite.analysis.table_compute import metric_text
from kdsuite.methods.registry import CATEGORIES, get_method

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
    if table.get("marks"):
        txt += (" ⟨…⟩: the cell's protocol differs from its column's standard recipe (one weak view per step, the "
                "student alone at inference, the epochs of the column's vanilla runs) as named: views and "
                "augmentation per step, teacher parts at inference, epochs.")
    for note in table.get("notes") or []:
        txt += f" {note}"
    return txt


def mark_text(table: Dict[str, Any], label: str, column: str) -> str:
    """`` ⟨2 views, strong aug⟩`` where the cell's protocol differs from its column's standard recipe."""
    mk = (table.get("marks") or {}).get((label, column))
    return f" ⟨{mk}⟩" if mk else ""


def unranked_text(row: Dict[str, Any]) -> str:
    """The category's cells of another protocol, named and left out of the ranking (categories summary)."""
    other = row.get("other_protocol") or []
    return "; ".join(f"{m} [{mk}] ({g:+.2f})" for m, mk, g in other)


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
