"""The format registry of ``kdsuite table``: a format name (``--format md|latex|csv``) → its renderer.

Role in the flow: :func:`kdsuite.analysis.cli_table.render_table` computes a table with
:mod:`kdsuite.analysis.table_compute`, then looks its ``--format`` up in :data:`RENDERERS` and prints the
methods × pairs table (:attr:`Renderer.methods`) or the taxonomy summary (:attr:`Renderer.categories`).
A new output format is one more entry here; the computation does not change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List

from kdsuite.analysis import table_frames, table_latex, table_markdown


@dataclass(frozen=True)
class Renderer:
    """How one format prints each layout: the text ``kdsuite table`` writes, newline-terminated."""

    methods: Callable[[Dict[str, Any]], str]  # the comparison table (with its notes and references)
    categories: Callable[[List[Dict[str, Any]], str, List[str]], str]  # summary rows, metric, notes


RENDERERS: Dict[str, Renderer] = {
    "md": Renderer(
        methods=lambda table: table_markdown.to_markdown(table) + "\n",
        categories=lambda rows, metric, notes: (table_markdown.summary_markdown(rows, metric)
                                                + "".join(f"\n{n}" for n in notes) + "\n")),
    "latex": Renderer(
        methods=lambda table: table_latex.to_latex(table) + "\n",
        categories=lambda rows, metric, notes: table_latex.summary_latex(rows, metric, notes=notes) + "\n"),
    # the CSV frames carry no notes: a note is not a row
    "csv": Renderer(
        methods=lambda table: table_frames.comparison_frame(table).to_csv(index=False),
        categories=lambda rows, metric, notes: table_frames.summary_frame(rows).to_csv(index=False)),
}
