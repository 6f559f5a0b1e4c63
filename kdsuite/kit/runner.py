"""The kit's runner: the contract's checks in order (:data:`CHECKS`), each run on its own tiny run and
reported ok / FAIL / skip (:func:`run_checks`), and :func:`check_method`, what ``kdsuite check-method NAME``
and a plugin's own tests call.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

from kdsuite.kit.checks import (check_adversary, check_deployed, check_gradients, check_resume,
                                check_term_gradients, check_toward_teacher)
from kdsuite.kit.fixtures import digits_teachers
from kdsuite.kit.probes import CheckSkipped


CHECKS: Tuple[Tuple[str, Callable], ...] = (
    ("gradients reach exactly the learners", check_gradients),
    ("each distillation term reaches the student", check_term_gradients),
    ("distillation moves the student toward the teacher", check_toward_teacher),
    ("the deployed student is what is measured, counted and exported", check_deployed),
    ("the adversary maximises (min-max)", check_adversary),
    ("checkpoint/resume reproduces the next step", check_resume))


def run_checks(name: str, root: os.PathLike, teacher_dirs: Sequence[str], checks=None) -> List[Tuple[str, str, str]]:
    """Every check on method ``name``: ``[(title, "ok" | "FAIL" | "skip", detail)]``. Any exception inside
    a check is that check failing with its message; the later checks still run."""
    out = []
    for i, (title, fn) in enumerate(checks or CHECKS):
        try:
            detail = fn(name, teacher_dirs, Path(root) / f"check{i}")
            out.append((title, "ok", detail if isinstance(detail, str) else ""))
        except CheckSkipped as err:
            out.append((title, "skip", str(err)))
        except AssertionError as err:
            out.append((title, "FAIL", str(err)))
        except Exception as err:  # a crash inside a check is that check failing, with what was raised
            out.append((title, "FAIL", f"{type(err).__name__}: {err}"))
    return out


def check_method(name: str, root: os.PathLike, teacher_dirs: Sequence[str] | None = None, report=print) -> bool:
    """Run the whole contract on method ``name``; report every check (ok / FAIL / skip); True when none fails."""
    teacher_dirs = list(teacher_dirs) if teacher_dirs is not None else digits_teachers()
    results = run_checks(name, root, teacher_dirs)
    for title, status, detail in results:
        report(f"  {status:<5} {title}" + (f": {detail}" if status != "ok" and detail else f" ({detail})" if detail else ""))
    return all(status != "FAIL" for _, status, _ in results)
