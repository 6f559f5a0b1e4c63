"""Executors that run a grid's stages: ``debug`` / ``local`` (in this process, one run after another,
the path ``make demo`` uses) and ``slurm`` (one submitit job array per stage, students waiting for
their teachers' array with ``afterok``). Runs with a finished record are skipped, so a relaunch does
only what is missing.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List

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


# ---- Slurm through submitit ---------------------------------------------------------------
PROFILE_REQUIRED = ("partition", "timeout_min")
PROFILE_FIELDS = PROFILE_REQUIRED + ("account", "gpus_per_node", "cpus_per_task", "mem_gb", "constraint",
                                     "array_parallelism", "slurm_setup", "folder")


def load_profile(path) -> Dict[str, Any]:
    import yaml

    from methods.hparams import ConfigError

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"--profile '{p}' does not exist; profiles live in slurm/profiles/")
    prof = yaml.safe_load(p.read_text()) or {}
    problems = [f"missing required field '{k}'" for k in PROFILE_REQUIRED if k not in prof]
    problems += [f"unknown field '{k}' (allowed: {', '.join(PROFILE_FIELDS)})" for k in prof if k not in PROFILE_FIELDS]
    if problems:
        raise ConfigError(f"profile '{p}': " + "; ".join(problems))
    return prof


class RunJob:
    """The callable each Slurm array task runs. submitit's ``checkpoint`` hook resubmits it on
    timeout or preemption; the run then resumes from its last epoch checkpoint."""

    def __call__(self, cfg):
        rec = run(cfg)
        return {"status": rec["status"], "run_dir": rec["run_dir"]}

    def checkpoint(self, cfg):
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(), cfg)


def submit_slurm(grid: Grid, profile_path, rerun_failed: bool = False) -> Dict[str, List[Any]]:
    """One job array per stage; a stage that needs another waits for its array (afterok). Runs
    with a finished record are not submitted; failed ones only with ``rerun_failed``. Returns the
    submitit jobs per stage (the call does not wait for them)."""
    import submitit

    prof = load_profile(profile_path)
    folder = Path(prof.get("folder") or Path(grid.spec.get("output", f"runs/{grid.name}")) / "slurm-logs")
    jobs: Dict[str, List[Any]] = {}
    for sname, runs in grid.stages.items():
        todo = []
        for r in runs:
            rec = read_record(r.run_dir)
            if rec is not None and (rec.get("status") == "finished" or (rec.get("status") == "failed" and not rerun_failed)):
                continue
            todo.append(r)
        if not todo:
            jobs[sname] = []
            continue
        ex = submitit.AutoExecutor(folder=folder / sname, cluster="slurm")
        params = dict(slurm_partition=prof["partition"], timeout_min=prof["timeout_min"],
                      cpus_per_task=prof.get("cpus_per_task", 1), slurm_array_parallelism=prof.get("array_parallelism", 16),
                      slurm_setup=prof.get("slurm_setup", []), name=f"kd-{grid.name}-{sname}")
        if prof.get("mem_gb"):
            params["mem_gb"] = prof["mem_gb"]
        if prof.get("gpus_per_node"):
            params["gpus_per_node"] = prof["gpus_per_node"]
        extra = {}
        if prof.get("account"):
            extra["account"] = prof["account"]
        if prof.get("constraint"):
            extra["constraint"] = prof["constraint"]
        need = grid.spec["stages"][sname].get("needs")
        if need and jobs.get(need):
            extra["dependency"] = "afterok:" + ":".join(sorted({j.job_id.split("_")[0] for j in jobs[need]}))
        if extra:
            params["slurm_additional_parameters"] = extra
        ex.update_parameters(**params)
        jobs[sname] = ex.map_array(RunJob(), [r.cfg for r in todo])
    return jobs
