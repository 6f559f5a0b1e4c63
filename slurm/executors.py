"""Executors that run a grid's stages: ``debug`` / ``local`` (in this process, one run after another,
the path ``make demo`` uses) and ``slurm`` (one submitit job array per stage and teacher set, each
student waiting for its own teachers' tasks with ``afterok``). What runs is decided by the one state
rule (:mod:`kdsuite.core.run_state`), so a relaunch does only what is missing.

A Slurm launch (:func:`submit_slurm`) reads the profile (:mod:`kdsuite.slurm.profile`), asks the cluster
(:mod:`kdsuite.slurm.cluster`) about the jobs the manifest (:mod:`kdsuite.slurm.manifest`) names, plans
what to submit without Slurm (:func:`kdsuite.slurm.plan.plan_submission`) and carries the plan out here.
The names of those modules are re-exported from this one.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Tuple

from kdsuite.core.records import read_record  # noqa: F401 (re-exported)
from kdsuite.experiments.grid import Grid, RunSpec  # noqa: F401 (re-exported)
from kdsuite.experiments.run import run
from kdsuite.core.errors import ConfigError
from kdsuite.core.run_state import FAILED, FAILED_STATES, IN_FLIGHT, NEVER, RERUNNABLE  # noqa: F401 (re-exported)
from kdsuite.slurm.cluster import SlurmUnavailable, _ask, cluster_config, job_states, max_array_size  # noqa: F401
from kdsuite.slurm.manifest import MANIFEST, _write_manifest, read_manifest  # noqa: F401 (re-exported)
from kdsuite.slurm.plan import Cancel, Note, PlannedArray, plan_submission
from kdsuite.slurm.profile import (PROFILE_DIR, PROFILE_FIELDS, PROFILE_REQUIRED, REPO,  # noqa: F401 (re-exported)
                                   SBATCH_FIELDS, load_profile, slurm_parameters, stage_resources)


def _rerun_set(rerun: Iterable[str] = (), rerun_failed: bool = False) -> Tuple[str, ...]:
    bad = sorted(set(rerun) - set(RERUNNABLE))
    if bad:
        raise ConfigError(f"rerun = {bad}: a launch reruns only runs that are {', '.join(RERUNNABLE)}")
    return tuple(sorted(set(rerun) | ({FAILED} if rerun_failed else set())))


def run_in_process(grid: Grid, stop_on_error: bool = False, log=print, rerun: Iterable[str] = (),
                   rerun_failed: bool = False) -> Dict[str, Any]:
    """Run here, stage by stage, every run the one state rule submits (:mod:`kdsuite.core.run_state`):
    not started, interrupted (resumed), and the failed / diverged / stale ones named in ``rerun``. A
    student runs only when its teachers' records are finished when its stage starts (a teacher that
    failed or diverged in this launch blocks it). Holds the grid's launch lock throughout: a second launch
    of the same grid meanwhile refuses. Returns counts per outcome."""
    from kdsuite.experiments.grid_state import launch_lock

    rerun = _rerun_set(rerun, rerun_failed)
    with launch_lock(grid.output, wait_s=0):  # a second launch of this grid refuses at once
        return _run_here(grid, stop_on_error, log, rerun)


def _run_here(grid: Grid, stop_on_error: bool, log, rerun) -> Dict[str, Any]:
    from kdsuite.core.run_state import BLOCK, HOLD, RESUME, SKIP, SUBMIT, finished_ready
    from kdsuite.experiments.grid_state import grid_actions, grid_states, prepare_reruns

    counts = {"finished": 0, "diverged": 0, "failed": 0, "skipped": 0, "held": 0, "blocked": 0, "busy": 0}
    states = grid_states(grid)
    prepare_reruns(grid, states, grid_actions(grid, states, rerun), log=lambda m: log(f"[grid {grid.name}] {m}"))
    for sname, runs in grid.stages.items():
        states = grid_states(grid)  # teachers of earlier stages have run by now
        acts = grid_actions(grid, states, rerun, teacher_ready=finished_ready)
        todo = [r for r in runs if acts[r.hash].verb in (SUBMIT, RESUME)]
        done = sum(states[r.hash].own == "finished" for r in runs)
        log(f"[grid {grid.name}] stage '{sname}': {len(todo)} to run, {done} already finished")
        for r in runs:
            a = acts[r.hash]
            if a.verb == SKIP:
                counts["skipped"] += 1
                if states[r.hash].own != "finished":
                    log(f"[grid {grid.name}] {sname} {r.label}: {a.why}")
            elif a.verb not in (SUBMIT, RESUME):  # held (failed, unreadable), blocked, or trained elsewhere
                counts["held" if a.verb == HOLD else "blocked" if a.verb == BLOCK else "busy"] += 1
                log(f"[grid {grid.name}] {sname} {r.label}: {a.why}")
        for i, r in enumerate(todo):
            t0 = time.time()
            if acts[r.hash].verb == RESUME:
                log(f"[grid {grid.name}] {sname} {r.label}: interrupted ({acts[r.hash].why}); resuming")
            try:
                rec = run(r.cfg)
            except Exception as e:  # noqa: BLE001 — one failed run must not stop the grid
                from kdsuite.experiments.lease import RunBusy

                if isinstance(e, RunBusy):
                    counts["busy"] += 1
                    log(f"[grid {grid.name}] {sname} {i + 1}/{len(todo)} {r.label}: {e}")
                    continue
                counts["failed"] += 1
                log(f"[grid {grid.name}] {sname} {i + 1}/{len(todo)} {r.label}: FAILED {type(e).__name__}: {e}")
                if stop_on_error:
                    raise
                continue
            m = rec.get("metrics", {})
            if rec.get("status") == "diverged":
                from kdsuite.core.run_state import divergence_text

                counts["diverged"] += 1
                log(f"[grid {grid.name}] {sname} {i + 1}/{len(todo)} {r.label}: DIVERGED "
                    f"{divergence_text(rec.get('divergence'))} in {time.time() - t0:.1f}s")
                continue
            counts["finished"] += 1
            log(f"[grid {grid.name}] {sname} {i + 1}/{len(todo)} {r.label}: top1 {m.get('last_top1', float('nan')):.2f} "
                f"(best {m.get('best_top1', float('nan')):.2f}) in {time.time() - t0:.1f}s")
    return {k: v for k, v in counts.items() if v or k in ("finished", "failed", "skipped")}

# ---- Slurm through submitit ---------------------------------------------------------------
class RunNotDone(RuntimeError):
    """A job's run was not trained to a finished record by this job (another job holds it, or it diverged):
    the job ends FAILED, so runs waiting for it with ``afterok`` are not released on its behalf."""


class RunJob:
    """The callable each Slurm array task runs. submitit's ``checkpoint`` hook resubmits it on
    timeout or preemption; the run then resumes from its last epoch checkpoint. A job that finds its run
    trained by another job (busy), or whose run diverges, ends FAILED rather than COMPLETED: a COMPLETED job
    satisfies ``afterok``, and its students would start before (or without) a finished teacher record."""

    def __call__(self, cfg):
        from kdsuite.experiments.lease import RunBusy

        try:
            rec = run(cfg)
        except RunBusy as e:  # another job trains this run: leave it alone, do not touch its record
            print(f"kdsuite: {e}", flush=True)
            raise RunNotDone(f"busy: {e}; this job ends FAILED so that no run waiting for it starts before that "
                             f"one has finished (the next grid launch resubmits what it held back)") from None
        if rec["status"] != "finished":
            raise RunNotDone(f"{rec['status']}: {rec['run_dir']} — runs waiting for it are not released")
        return {"status": rec["status"], "run_dir": rec["run_dir"]}

    def checkpoint(self, cfg):
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(), cfg)


class PackedJob:
    """An array task that runs several small runs side by side (a stage's ``pack: N``); like
    :class:`RunJob` it ends FAILED (after every run has ended) when any of them did not finish."""

    def __call__(self, cfgs):
        from kdsuite.slurm.packing import run_packed

        out = run_packed(cfgs)
        bad = [f"{o.get('run_dir') or c.get('name', '?')}: {o['status']} ({o.get('error', '')})"
               for o, c in zip(out, cfgs) if o["status"] != "finished"]
        for o in out:
            print(f"kdsuite: packed run {o.get('run_dir', '')}: {o['status']}", flush=True)
        if bad:
            raise RunNotDone(f"{len(bad)} of {len(out)} packed runs did not finish: " + "; ".join(bad))
        return out

    def checkpoint(self, cfgs):
        import submitit

        return submitit.helpers.DelayedSubmission(PackedJob(), cfgs)

def submit_slurm(grid: Grid, profile_path, rerun_failed: bool = False, log=print, dry_run: bool = False,
                 rerun: Iterable[str] = (), lock_wait_s: float = 600.0) -> Dict[str, List[Any]]:
    """Submit every run of ``grid`` that needs running: one job array per stage and set of teacher tasks
    (split into several arrays when it has more runs than the cluster's MaxArraySize); a run whose
    teacher is being trained waits for that teacher's array task only (``afterok``, and Slurm cancels it if the teacher fails:
    ``--kill-on-invalid-dep=yes``), one whose teacher record is finished starts at once. What is
    submitted is decided by the one state rule (:mod:`kdsuite.core.run_state`) from each run's record,
    lease, checkpoint, Slurm job and teachers: finished runs are skipped, queued and running ones never
    submitted twice, not-started ones submitted, interrupted ones resubmitted (they resume), failed,
    diverged and stale ones only when ``rerun`` names their state (``rerun_failed``: ``failed``); a
    student whose teacher is failed, diverged or blocked is not submitted (blocked). A job left pending
    on a dependency that can never be met (an older launch without the flag) is cancelled and its run
    resubmitted when its teacher is. Slurm that can't be asked is an error before anything is submitted.
    Writes ``<output>/slurm-manifest.json`` after every array and returns the submitit jobs per stage
    without waiting for them (``dry_run``: prints each array's size, resources, dependencies and sbatch
    lines, submits nothing, returns the planned groups). The whole launch holds the grid's launch lock
    (:func:`kdsuite.experiments.grid_state.launch_lock`): a second launch racing it waits up to
    ``lock_wait_s`` seconds, then decides from what the first one submitted."""
    from kdsuite.experiments.grid_state import launch_lock

    rerun = _rerun_set(rerun, rerun_failed)
    prof = load_profile(profile_path)  # a bad profile is refused before anything else
    if dry_run:
        return _submit(grid, prof, profile_path, rerun, log, dry_run)
    with launch_lock(grid.output, wait_s=lock_wait_s, log=lambda m: log(f"[grid {grid.name}] {m}")):
        return _submit(grid, prof, profile_path, rerun, log, dry_run)

def _submit(grid: Grid, prof: Dict[str, Any], profile_path, rerun, log, dry_run: bool) -> Dict[str, List[Any]]:
    """:func:`submit_slurm`'s work, under the grid's launch lock (but for a dry run): the facts, the plan
    (:func:`kdsuite.slurm.plan.plan_submission`), then its steps in order."""
    import subprocess

    from kdsuite.experiments.grid_state import grid_actions, grid_states, prepare_reruns

    output = grid.output
    folder = Path(prof.get("folder") or output / "slurm-logs")
    manifest = read_manifest(output)
    earlier = manifest.get("runs", {})
    limit, states = _cluster_facts(grid, prof, earlier, log, dry_run)
    run_states = grid_states(grid, earlier, states)
    acts = grid_actions(grid, run_states, rerun)
    if not dry_run:
        prepare_reruns(grid, run_states, acts, log=lambda m: log(f"[grid {grid.name}] {m}"))
    launch = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "profile": str(profile_path), "arrays": []}
    manifest.setdefault("launches", []).append(launch)
    manifest["grid"] = grid.name
    jobs: Dict[str, List[Any]] = {sname: [] for sname in grid.stages}
    task_ids: Dict[str, str] = {}  # "arrayN_T" of the plan -> the job id Slurm gave that task
    for step in plan_submission(grid, run_states, acts, earlier, states, prof, limit):
        if isinstance(step, Note):
            log(step.text)
        elif isinstance(step, Cancel):
            if not dry_run:
                subprocess.run(["scancel", step.job_id], capture_output=True, timeout=60)
                log(step.text)
        elif dry_run:
            _print_array(log, grid.name, step.stage, step.index, step.groups, step.resources, step.deps,
                         _executor(grid, step, folder, step.deps))
            launch["arrays"].append({"stage": step.stage, "tasks": len(step.groups), "dependency": step.deps})
            jobs[step.stage].extend(step.groups)
        else:
            jobs[step.stage].extend(_submit_array(grid, step, folder, task_ids, manifest, launch))
            _write_manifest(output, manifest)
    if dry_run:
        return jobs
    if not any(jobs.values()):
        manifest["launches"].pop()
        if manifest["launches"] or manifest.get("runs"):
            _write_manifest(output, manifest)
    return jobs


def _cluster_facts(grid: Grid, prof: Mapping[str, Any], earlier: Mapping[str, Mapping[str, Any]], log,
                   dry_run: bool) -> Tuple[int, Dict[str, Dict[str, str]]]:
    """The array size limit and the Slurm states of earlier launches' jobs. Asking also proves the controller
    answers before anything is decided; a dry run goes on without Slurm (no queued jobs checked)."""
    limit = int(prof.get("max_array_size") or 0)
    try:
        conf = cluster_config()
        limit = limit or int(conf.get("MaxArraySize", 1001))
        states = job_states([v["job_id"] for v in earlier.values()])
    except SlurmUnavailable as e:
        if not dry_run:
            raise
        limit, states = limit or 1001, {}
        log(f"[grid {grid.name}] dry run without Slurm ({e}); queued jobs of earlier launches are not checked")
    return limit, states


def _executor(grid: Grid, arr: PlannedArray, folder: Path, deps: List[str]):
    """The submitit executor of one planned array, its dependencies (job ids) given."""
    import submitit

    res = arr.resources
    ex = submitit.AutoExecutor(folder=folder / arr.stage, cluster="slurm",
                               slurm_max_num_timeout=int(res.get("max_num_timeout", 3)))
    params = slurm_parameters(res, f"kd-{grid.name}-{arr.stage}")
    if deps:
        extra = params.setdefault("slurm_additional_parameters", {})
        extra["dependency"] = "afterok:" + ":".join(deps)
        extra["kill-on-invalid-dep"] = "yes"
    ex.update_parameters(**params)
    return ex


def _submit_array(grid: Grid, arr: PlannedArray, folder: Path, task_ids: Dict[str, str],
                  manifest: Dict[str, Any], launch: Dict[str, Any]) -> List[Any]:
    """Submit one planned array (its ``arrayN_T`` dependencies replaced by job ids); record its tasks in
    ``task_ids``, the manifest's runs and the launch's arrays; return its submitit jobs."""
    deps = sorted(task_ids.get(d, d) for d in arr.deps)
    ex = _executor(grid, arr, folder, deps)
    if arr.pack > 1:
        jobs = ex.map_array(PackedJob(), [[r.cfg for r in g] for g in arr.groups])
    else:
        jobs = ex.map_array(RunJob(), [g[0].cfg for g in arr.groups])
    for t, (job, g) in enumerate(zip(jobs, arr.groups)):
        task_ids[arr.task_name(t)] = job.job_id
        for r in g:
            manifest.setdefault("runs", {})[r.hash] = {
                "job_id": job.job_id, "stage": arr.stage, "run_dir": str(r.run_dir),
                "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
    launch["arrays"].append({"stage": arr.stage, "job_id": jobs[0].job_id.split("_")[0], "tasks": len(jobs),
                             "dependency": deps})
    return jobs


def _print_array(log, grid_name: str, stage: str, n: int, chunk, res: Dict[str, Any], deps: List[str], ex) -> None:
    runs = [r for g in chunk for r in g]
    keys = ("partition", "timeout_min", "nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb",
            "account", "qos", "gres", "constraint", "exclusive", "pack", "array_parallelism", "max_num_timeout")
    log(f"[grid {grid_name}] array {n} (stage {stage}): {len(chunk)} tasks, {len(runs)} runs")
    log("  resources: " + ", ".join(f"{k}={res[k]}" for k in keys if res.get(k) not in (None, "")))
    log(f"  depends on: {', '.join(deps) if deps else 'nothing (starts at once)'}"
        + (" (arrayN_T: task T of array N of this launch)" if any(d.startswith("array") for d in deps) else ""))
    try:  # the sbatch lines submitit would write (its own renderer)
        inner = ex._executor
        inner.parameters["map_count"] = len(chunk)
        text = inner._make_submission_file_text("<python -m submitit.core._submit ...>", "dry-run")
        inner.parameters.pop("map_count", None)
        for line in text.splitlines():
            if line.startswith("#SBATCH"):
                log(f"  {line}")
    except Exception as e:  # noqa: BLE001 — a private submitit helper; the summary above stands without it
        log(f"  (sbatch lines unavailable: {type(e).__name__}: {e})")
    for r in runs:
        log(f"    {r.label}")
