"""Every run of a grid through the one state rule (:mod:`kdsuite.core.run_state`): its record, lease,
checkpoint, Slurm job and teachers read here, the rule applied there; and the launch's decision per run.

Role in the flow: ``kdsuite grid plan|launch|status`` (:mod:`kdsuite.cli_grid`) and both executors
(:mod:`kdsuite.slurm.executors`) call :func:`grid_states` then :func:`grid_actions`; a launch asked to
rerun diverged or stale runs moves their folders aside with :func:`prepare_reruns` first.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from kdsuite.core.errors import ConfigError
from kdsuite.core.records import ARCHIVE, RecordError, read_record
from kdsuite.core.run_state import DIVERGED, STALE, SUBMIT, Action, RunState, launch_action, run_state

CHECKPOINTS = ("checkpoint.pt", "checkpoint.prev.pt")


def has_checkpoint(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).exists() for name in CHECKPOINTS)


def one_state(r, teachers=(), job: Optional[Mapping[str, Any]] = None,
              slurm: Optional[Mapping[str, Mapping[str, str]]] = None) -> RunState:
    """The state of one planned run; ``job``: its manifest entry, ``slurm``: job id -> Slurm state."""
    from kdsuite.experiments.lease import describe, is_held, read_holder

    try:
        rec = read_record(r.run_dir)
    except RecordError as e:
        return run_state(None, unreadable=f"{e.path}: {e.reason}")
    stale = None
    if rec is not None and rec.get("status") == "finished":
        from kdsuite.methods.identity import record_stale_reason

        stale = record_stale_reason(rec)
    held = rec is None or rec.get("status") not in ("finished", "diverged")
    held = held and is_held(r.run_dir)
    sj = (slurm or {}).get(job["job_id"]) if job else None
    js = dict(sj, job_id=job["job_id"]) if sj else None
    return run_state(rec, lease_held=held, holder=describe(read_holder(r.run_dir)) if held else "",
                     checkpoint=has_checkpoint(r.run_dir), job=js, stale=stale, teachers=teachers)


def grid_states(grid, jobs: Optional[Mapping[str, Mapping[str, Any]]] = None,
                slurm: Optional[Mapping[str, Mapping[str, str]]] = None) -> Dict[str, RunState]:
    """The state of every run of ``grid`` by hash, stage by stage (a teacher's state is settled before its
    students'). ``jobs``: the launch manifest's runs (hash -> entry with ``job_id``); ``slurm``: what Slurm
    reports per job id (:func:`kdsuite.slurm.executors.job_states`)."""
    by_hash = grid.by_hash()
    states: Dict[str, RunState] = {}
    for r in grid.all_runs():
        teachers = [(by_hash[h].label, states[h]) for h in r.needs if h in states]
        states[r.hash] = one_state(r, teachers, (jobs or {}).get(r.hash), slurm)
    return states


def grid_actions(grid, states: Mapping[str, RunState], rerun: Iterable[str] = (),
                 teacher_ready: Optional[Callable[[RunState, Action], bool]] = None) -> Dict[str, Action]:
    """What a launch asked to rerun ``rerun`` (states) does with every run, by hash."""
    by_hash = grid.by_hash()
    rerun = tuple(rerun)
    acts: Dict[str, Action] = {}
    for r in grid.all_runs():
        teachers = [(by_hash[h].label, states[h], acts[h]) for h in r.needs if h in acts]
        acts[r.hash] = launch_action(states[r.hash], rerun, teachers, teacher_ready)
    return acts


def supersede(run_dir: Path) -> Path:
    """Move a run's folder to ``<parent>/.superseded/<name>-<time>``: kept for comparison, out of the grid's
    results, and its config hash free to run again."""
    dest = run_dir.parent / ARCHIVE / f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while dest.exists():
        dest = dest.with_name(f"{dest.name.split('~')[0]}~{n}")
        n += 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run_dir), str(dest))
    return dest


def prepare_reruns(grid, states: Mapping[str, RunState], acts: Mapping[str, Action], log=print) -> int:
    """Move aside the folders of the diverged and stale runs this launch reruns (their records would be
    reused otherwise); returns how many."""
    n = 0
    for r in grid.all_runs():
        st = states[r.hash]
        if acts[r.hash].verb == SUBMIT and st.own in (DIVERGED, STALE) and r.run_dir.exists():
            log(f"{st.own}, rerunning ({st.detail}): {r.run_dir} moved to {supersede(r.run_dir)}")
            n += 1
    return n


LAUNCH_LOCK = ".launch.lock"
LAUNCH_HOLDER = ".launch.holder.json"


class LaunchBusy(ConfigError):
    """Another launch of the same grid holds its output folder's lock (the message names it)."""


@contextlib.contextmanager
def launch_lock(output: Path, wait_s: float = 600.0, log=print):
    """Held for a whole launch: one launch of a grid at a time, so two launches racing never both decide
    that a run is new (each decides under the lock from the manifest the other wrote). A second launch
    says who holds it and waits up to ``wait_s`` seconds (0: refuses at once), then refuses."""
    import json
    import os
    import socket

    from filelock import FileLock, Timeout

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(output / LAUNCH_LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = _holder_text(output / LAUNCH_HOLDER)
        if wait_s <= 0:
            raise LaunchBusy(f"another launch of this grid is running ({who}; lock {output / LAUNCH_LOCK}); "
                             f"nothing was launched — run it again when that one has returned") from None
        log(f"waiting for another launch of this grid to return ({who}; lock {output / LAUNCH_LOCK}) …")
        try:
            lock.acquire(timeout=wait_s)
        except Timeout:
            raise LaunchBusy(f"another launch of this grid still holds {output / LAUNCH_LOCK} after {wait_s:.0f} s "
                             f"({who}); nothing was launched") from None
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (output / LAUNCH_HOLDER).write_text(json.dumps(info) + "\n")
        yield
    finally:
        lock.release()


def _holder_text(path: Path) -> str:
    import json

    try:
        info = json.loads(path.read_text())
        return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
    except (OSError, ValueError):
        return "holder unknown"
