"""Submission planning: what a Slurm launch submits, decided without asking or touching Slurm.

Role in the flow: :func:`kdsuite.slurm.executors.submit_slurm` gathers the facts (the grid, each run's
state and launch action from the one state rule, the manifest's earlier jobs, what Slurm reports for
them, the profile, the cluster's MaxArraySize), then :func:`plan_submission` — a pure function of those —
returns the launch as an ordered list of steps: :class:`Note` (a line to log), :class:`Cancel` (an older
launch's job stuck on a dependency that can never be met) and :class:`PlannedArray` (one job array: its
stage, tasks, resources and ``afterok`` dependencies). The executor then carries the steps out in order
(or, for a dry run, prints them). Within the plan, task T of this launch's array N is named
``arrayN_T``; the executor replaces those names by the job ids Slurm gives the tasks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple, Union

from kdsuite.core.run_state import IN_FLIGHT, NEVER, RESUME, SUBMIT, WAIT, Action, RunState
from kdsuite.experiments.grid import Grid, RunSpec
from kdsuite.slurm.profile import stage_resources


@dataclass(frozen=True)
class Note:
    """A line the launch logs (why a run is skipped, waited for, blocked or resubmitted)."""
    text: str


@dataclass(frozen=True)
class Cancel:
    """Cancel an older launch's job left pending on a dependency that can never be met (its run is
    submitted again in this launch); ``text`` is logged after the cancel."""
    job_id: str
    text: str


@dataclass
class PlannedArray:
    """One job array: ``groups`` are its tasks in order (one run each, or ``pack`` runs side by side);
    ``deps`` the tasks it waits for with ``afterok`` (job ids of earlier launches' tasks, or ``arrayN_T``
    for task T of this launch's array N), sorted; ``index`` its place among this launch's arrays."""
    stage: str
    index: int
    groups: List[List[RunSpec]]
    deps: List[str]
    resources: Dict[str, Any] = field(default_factory=dict)

    @property
    def pack(self) -> int:
        return int(self.resources.get("pack") or 1)

    def task_name(self, t: int) -> str:
        return f"array{self.index}_{t}"


Step = Union[Note, Cancel, PlannedArray]


def plan_submission(grid: Grid, run_states: Mapping[str, RunState], acts: Mapping[str, Action],
                    earlier: Mapping[str, Mapping[str, Any]], job_states: Mapping[str, Mapping[str, str]],
                    profile: Mapping[str, Any], max_array_size: int) -> List[Step]:
    """The steps of a launch, stage by stage: for each run what the launch does with it (``acts``) and,
    for the runs it submits, one array per stage and set of teacher tasks (a student waits for its own
    teachers only, so one failed teacher holds back only its own students), split into arrays of at most
    ``max_array_size`` tasks. ``earlier``: the manifest's runs (hash -> entry with ``job_id``);
    ``job_states``: what Slurm reports per job id."""
    steps: List[Step] = []
    task_of: Dict[str, str] = {}  # run hash -> the task training it (this launch or in flight)
    n_arrays = 0
    for sname, runs in grid.stages.items():
        todo = _stage_runs(grid, sname, runs, run_states, acts, earlier, job_states, task_of, steps)
        if not todo:
            continue
        res = stage_resources(grid, sname, dict(profile))
        for deps, chunk in _chunks(todo, task_of, int(res.get("pack") or 1), max_array_size):
            arr = PlannedArray(sname, n_arrays, chunk, deps, res)
            n_arrays += 1
            for t, g in enumerate(chunk):
                for r in g:
                    task_of[r.hash] = arr.task_name(t)
            steps.append(arr)
    return steps


def _stage_runs(grid: Grid, sname: str, runs: List[RunSpec], run_states: Mapping[str, RunState],
                acts: Mapping[str, Action], earlier: Mapping[str, Mapping[str, Any]],
                job_states: Mapping[str, Mapping[str, str]], task_of: Dict[str, str], steps: List[Step]
                ) -> List[RunSpec]:
    """The runs of one stage this launch submits, in order; notes (and cancels) go to ``steps``, and a
    run waited for (queued or running) enters ``task_of`` with its job."""
    by_hash = grid.by_hash()
    todo = []
    for r in runs:
        prev = earlier.get(r.hash)
        st, act = run_states[r.hash], acts[r.hash]
        if act.verb == WAIT:
            if st.job:
                task_of[r.hash] = st.job  # its students wait for that job
            steps.append(Note(f"[grid {grid.name}] {sname} {r.label}: {st.state}, {act.why}"))
            continue
        if act.verb not in (SUBMIT, RESUME):
            if st.state != "finished":
                steps.append(Note(f"[grid {grid.name}] {sname} {r.label}: {act.why}"))
            continue
        # a teacher trained outside any job this launch knows (its lease held by another process) has
        # no task to wait for: its students wait for the next launch
        unknown = [h for h in r.needs if h not in task_of and run_states[h].own not in ("finished", "stale")]
        if unknown:
            why = ", ".join(f"{by_hash[h].label} {run_states[h].state} ({run_states[h].detail})" for h in unknown)
            steps.append(Note(f"[grid {grid.name}] {sname} {r.label}: blocked by {why} — no Slurm job of this grid "
                              f"to wait for; not submitted (relaunch when it has finished)"))
            continue
        js = job_states.get(prev["job_id"]) if prev else None
        if js and js["state"] in IN_FLIGHT and js["reason"] == NEVER:
            # an older launch's job waiting on a dependency that can never be met: free it
            steps.append(Cancel(prev["job_id"], f"[grid {grid.name}] {sname} {r.label}: cancelled job "
                                                f"{prev['job_id']} ({NEVER})"))
        if act.verb == RESUME:
            steps.append(Note(f"[grid {grid.name}] {sname} {r.label}: interrupted ({act.why}); resubmitted, "
                              f"resumes from its last checkpoint"))
        todo.append(r)
    return todo


def _chunks(todo: List[RunSpec], task_of: Mapping[str, str], pack: int, limit: int
            ) -> List[Tuple[List[str], List[List[RunSpec]]]]:
    """``todo`` grouped by the set of teacher tasks each run waits for, in groups of ``pack`` runs (one
    task each), at most ``limit`` tasks per array: ``[(deps, tasks), ...]``."""
    by_deps: Dict[Tuple[str, ...], List[RunSpec]] = {}
    for r in todo:
        by_deps.setdefault(tuple(sorted({task_of[h] for h in r.needs if h in task_of})), []).append(r)
    chunks = []
    for dep_set, rs in by_deps.items():
        groups = [rs[i:i + pack] for i in range(0, len(rs), pack)]
        chunks += [(list(dep_set), groups[i:i + limit]) for i in range(0, len(groups), limit)]
    return chunks
