"""How many runs a grid file asks for, counted before anything is expanded, and the limit on it.

Role in the flow: :func:`kdsuite.experiments.grid.expand` asks :func:`check_size` first, so a grid of a
million runs is refused in a second with its arithmetic (stage by stage, axis by axis) instead of filling
memory for minutes; ``--max-runs N`` on ``grid plan`` / ``launch`` / ``status`` raises the limit. The count is
an upper bound: ``exclude`` and identical runs are taken out only by the expansion itself. While a large grid
expands, :func:`progress_printer` reports on stderr every :data:`PROGRESS_EVERY` runs.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Callable, Dict, Mapping, Optional

from kdsuite.core.errors import ConfigError

MAX_RUNS = 10_000  # a few seconds of planning on one core; the largest shipped grid plans 288
PROGRESS_EVERY = 2_000


def stage_count(st: Mapping[str, Any]) -> int:
    """Explicit runs plus the crossing of the stage's axes (``method_pairs`` replacing the pair axis for their
    method), before ``exclude``."""
    n = len(st.get("runs") or [])
    axes = st.get("axes") or {}
    if not isinstance(axes, Mapping) or not axes:
        return n
    sizes = {k: len(v) if isinstance(v, list) else 1 for k, v in axes.items()}
    others = math.prod(v for k, v in sizes.items() if k not in ("method", "pair"))
    pairs = sizes.get("pair", 1)
    method_pairs = st.get("method_pairs") or {}
    method_axis = axes.get("method")
    methods: list = method_axis if isinstance(method_axis, list) else [None]
    for m in methods:
        own = method_pairs.get(m) if isinstance(method_pairs, Mapping) and isinstance(m, str) else None
        n += others * (len(own) if isinstance(own, list) and own else pairs)
    return n


def check_size(spec: Mapping[str, Any], name: str, max_runs: Optional[int]) -> Dict[str, int]:
    """The per-stage counts; a :class:`ConfigError` with the arithmetic when their sum passes ``max_runs``."""
    stages = spec.get("stages") or {}
    counts = {s: stage_count(st) for s, st in stages.items() if isinstance(st, Mapping)}
    limit = MAX_RUNS if max_runs is None else max_runs
    total = sum(counts.values())
    if total > limit:
        parts = []
        for s, n in counts.items():
            axes = stages[s].get("axes") or {}
            shape = " × ".join(f"{k} {len(v)}" for k, v in axes.items() if isinstance(v, list)) if axes else ""
            parts.append(f"{s}: {n:,}" + (f" ({shape})" if shape else ""))
        raise ConfigError(f"grid '{name}' would plan up to {total:,} runs ({'; '.join(parts)}); the limit is "
                          f"{limit:,} — pass --max-runs {total} to plan it anyway, or split it into grids")
    return counts


def progress_printer(name: str, total: int) -> Optional[Callable[[int], None]]:
    """A callback printing ``planned n of up to total`` on stderr every PROGRESS_EVERY runs (None for a small grid)."""
    if total < PROGRESS_EVERY:
        return None

    def report(n: int) -> None:
        if n % PROGRESS_EVERY == 0:
            print(f"grid '{name}': planned {n:,} of up to {total:,} runs", file=sys.stderr, flush=True)
    return report
