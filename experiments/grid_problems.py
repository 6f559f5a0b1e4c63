"""The problems of a grid's runs, reported so that one cause is named once.

Role in the flow: :func:`kdsuite.experiments.grid.expand` collects, for each run it refuses, the list of that
run's problems (:class:`RunProblems`); :func:`grouped_problems` turns them into the lines of the grid's one
error — a problem only one run has under that run's label, a problem many runs share (a bad default or
``--set``, a refused teacher run) once, with how many runs it breaks and the first of them.
"""
from __future__ import annotations

from typing import Dict, List

from kdsuite.core.errors import ConfigError


class RunProblems(ConfigError):
    """Every problem of one planned run, kept apart so that one cause shared by many runs is named once."""

    def __init__(self, problems: List[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def grouped_problems(run_problems: List[tuple]) -> List[str]:
    """One line per run for the problems only it has; one line for a problem shared by several runs (a bad
    default or ``--set`` is one cause, not one per run), at its first run's place."""
    labels: Dict[str, List[str]] = {}
    for label, problems in run_problems:
        for p in dict.fromkeys(problems):
            labels.setdefault(p, []).append(label)
    out, said = [], set()
    for label, problems in run_problems:
        own = [p for p in dict.fromkeys(problems) if len(labels[p]) == 1]
        if own:
            out.append(f"{label}: {'; '.join(own)}")
        for p in problems:
            if len(labels[p]) > 1 and p not in said:
                said.add(p)
                out.append(f"{len(labels[p])} runs (the first: {labels[p][0]}): {p}")
    return out
