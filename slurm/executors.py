"""Executors that run a grid's stages: ``debug`` (in this process, one run after another) and
``local`` (the same, the path ``make demo`` uses). Runs with a finished record are skipped, so a
relaunch does only what is missing.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Dict, List, Optional

from analysis.records import read_record
from experiments.grid import Grid, RunSpec
from experiments.run import run


def pending(runs: List[RunSpec]) -> List[RunSpec]:
    out = []
    for r in runs:
        rec = read_record(r.run_dir)
        if rec is None or rec.get("status") != "finished":
            out.append(r)
    return out


def run_in_process(grid: Grid, stop_on_error: bool = False, log=print) -> Dict[str, Any]:
    """Run every unfinished run of ``grid`` here, stage by stage. Returns counts per outcome."""
    done = failed = skipped = 0
    for sname, runs in grid.stages.items():
        todo = pending(runs)
        skipped += len(runs) - len(todo)
        log(f"[grid {grid.name}] stage '{sname}': {len(todo)} to run, {len(runs) - len(todo)} already finished")
        for i, r in enumerate(todo):
            t0 = time.time()
            try:
                rec = run(r.cfg)
                done += 1
                m = rec.get("metrics", {})
                log(f"[grid {grid.name}] {sname} {i + 1}/{len(todo)} {r.label}: top1 {m.get('last_top1', float('nan')):.2f} "
                    f"(best {m.get('best_top1', float('nan')):.2f}) in {time.time() - t0:.1f}s")
            except Exception as e:  # noqa: BLE001 — one failed run must not stop the grid
                failed += 1
                log(f"[grid {grid.name}] {sname} {i + 1}/{len(todo)} {r.label}: FAILED {type(e).__name__}: {e}")
                if stop_on_error:
                    raise
    return {"finished": done, "failed": failed, "skipped": skipped}
