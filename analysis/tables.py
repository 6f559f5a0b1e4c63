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

The computation lives in :mod:`kdsuite.analysis.table_compute`; the renderers — Markdown
(:mod:`kdsuite.analysis.table_markdown`), LaTeX (:mod:`kdsuite.analysis.table_latex`, booktabs, every name
escaped) and long frames for CSV (:mod:`kdsuite.analysis.table_frames`), with the labels they share
(:mod:`kdsuite.analysis.table_text`) — are chosen by format name in :mod:`kdsuite.analysis.table_formats`.
This module re-exports all of them, so ``from kdsuite.analysis.tables import X`` keeps working.
Missing cells stay missing (``–`` / ``--`` / empty in CSV), never 0. With published references
(:mod:`kdsuite.analysis.references`) each cell also shows the published number and the difference.
"""
from __future__ import annotations

from kdsuite.analysis.table_compute import (  # noqa: F401
    LAYOUTS, METRIC_SHORT, METRIC_TEXT, METRICS, TEACHER, VANILLA, _hp_value, _variant_of, best_per_column,
    category_summary, cell_stats, comparison, gains, metric_text, other_protocols, runs_frame, selection_metrics,
    stats, student_key, variant_rows)
from kdsuite.analysis.table_frames import comparison_frame, summary_frame  # noqa: F401
from kdsuite.analysis.table_latex import (  # noqa: F401
    _LATEX_ESC, _fit, _stack, _tex_cell, _tex_header, latex_escape, summary_latex, tex_signed, to_latex)
from kdsuite.analysis.table_markdown import summary_markdown, to_markdown  # noqa: F401
from kdsuite.analysis.table_text import (  # noqa: F401
    DUP_MARK, _caption, _category_title, _fmt, _ref_text, column_title, method_label, pair_title, row_title)
