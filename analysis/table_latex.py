"""LaTeX renderers: the methods × pairs table and the taxonomy summary as booktabs tables, every name escaped.

Role in the flow: ``kdsuite table --format latex`` (registered in :mod:`kdsuite.analysis.table_formats`) prints
what :mod:`kdsuite.analysis.table_compute` computed; missing cells are ``--``; the search and lifelong
tables escape with :func:`latex_escape` too.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from kdsuite.analysis.table_compute import best_per_column, metric_text
from kdsuite.analysis.table_text import _caption, _category_title, column_title, mark_text, row_title, unranked_text
from kdsuite.methods.registry import method_display_name

_LATEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
              "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
              "→": r"$\rightarrow$", "±": r"$\pm$", "–": "--", "Δ": r"$\Delta$", "−": r"$-$", "†": r"$^\dagger$", "§": r"\S{}",
              "×": r"$\times$", "λ": r"$\lambda$", "⟨": r"$\langle$", "⟩": r"$\rangle$", "…": r"\dots{}",
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
            mk = mark_text(table, label, c).strip()
            out.append(_stack(txt, rf"{{\scriptsize {latex_escape(mk)}}}" if mk else "", note))
        lines.append(f"{latex_escape(row_title(table, label))} & " + " & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(_fit([r"\begin{table}[t]", r"\centering", r"\small"], lines)
                     + [r"\caption{" + latex_escape(_caption(table)) + "}", rf"\label{{{tex_label}}}", r"\end{table}"])



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
        if unranked_text(r):
            best = _stack(best, rf"{{\scriptsize not ranked: {latex_escape(unranked_text(r))}}}", align="l")
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
