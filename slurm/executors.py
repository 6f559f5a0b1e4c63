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
PROFILE_FIELDS = PROFILE_REQUIRED + ("account", "nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb",
                                     "constraint", "array_parallelism", "slurm_setup", "folder", "pack",
                                     "max_array_size")
MANIFEST = "slurm-manifest.json"
IN_FLIGHT = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
             "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}


def load_profile(path) -> Dict[str, Any]:
    from experiments.config import read_yaml_mapping
    from methods.hparams import ConfigError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--profile '{p}' does not exist; profiles live in slurm/profiles/ (see slurm/README.md)")
    prof = read_yaml_mapping(p, "profile")
    problems = [f"missing required field '{k}'" for k in PROFILE_REQUIRED if k not in prof]
    problems += [f"unknown field '{k}' (allowed: {', '.join(PROFILE_FIELDS)})" for k in prof if k not in PROFILE_FIELDS]
    if "slurm_setup" in prof and not (isinstance(prof["slurm_setup"], list)
                                      and all(isinstance(x, str) for x in prof["slurm_setup"])):
        problems.append(f"slurm_setup = {prof['slurm_setup']!r}: expected a list of shell lines")
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


class PackedJob:
    """An array task that runs several small runs side by side (a stage's ``pack: N``)."""

    def __call__(self, cfgs):
        from slurm.packing import run_packed

        return run_packed(cfgs)

    def checkpoint(self, cfgs):
        import submitit

        return submitit.helpers.DelayedSubmission(PackedJob(), cfgs)


def max_array_size(default: int = 1001) -> int:
    """The cluster's MaxArraySize (array indices run from 0 to MaxArraySize − 1)."""
    import subprocess

    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return default
    for line in out.splitlines():
        if line.strip().startswith("MaxArraySize"):
            try:
                return int(line.split("=", 1)[1].strip())
            except ValueError:
                return default
    return default


def job_states(job_ids: List[str]) -> Dict[str, str]:
    """Slurm state of each job / array task that the controller still knows (``squeue``)."""
    import subprocess

    if not job_ids:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "--jobs", ",".join(sorted(set(j.split("_")[0] for j in job_ids)))],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            states[jid] = state
    return states


def read_manifest(output: Path) -> Dict[str, Any]:
    import json

    p = Path(output) / MANIFEST
    if not p.exists():
        return {"launches": [], "runs": {}}
    return json.loads(p.read_text())


def _write_manifest(output: Path, manifest: Dict[str, Any]) -> None:
    from methods.checkpoint import atomic_write_json

    atomic_write_json(Path(output) / MANIFEST, manifest)


def stage_resources(grid: Grid, stage: str, prof: Dict[str, Any]) -> Dict[str, Any]:
    """The profile with the grid's (grid-wide, then per-stage) ``resources`` on top."""
    return {**prof, **grid.resources(stage)}


def slurm_parameters(res: Dict[str, Any], name: str) -> Dict[str, Any]:
    """submitit ``update_parameters`` keywords for one stage's resources."""
    params = dict(slurm_partition=res["partition"], timeout_min=res["timeout_min"],
                  cpus_per_task=res.get("cpus_per_task", 1), slurm_array_parallelism=res.get("array_parallelism", 16),
                  slurm_setup=list(res.get("slurm_setup") or []), name=name, nodes=res.get("nodes", 1))
    gpus = res.get("gpus_per_node") or 0
    # one process per GPU: submitit exports the rendezvous (MASTER_ADDR/PORT, RANK, WORLD_SIZE) per task
    params["tasks_per_node"] = res.get("tasks_per_node") or (gpus if gpus > 1 else 1)
    if res.get("mem_gb"):
        params["mem_gb"] = res["mem_gb"]
    if gpus:
        params["gpus_per_node"] = gpus
    extra = {k: res[k] for k in ("account", "constraint") if res.get(k)}
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def submit_slurm(grid: Grid, profile_path, rerun_failed: bool = False, log=print) -> Dict[str, List[Any]]:
    """Submit every run of ``grid`` that needs running: one job array per stage (split into several
    arrays when a stage has more runs than the cluster's MaxArraySize); a run whose teacher is being
    trained waits for that teacher's array task (``afterok``), one whose teacher record is finished
    starts at once. Skipped: runs with a finished record, runs whose job from an earlier launch is
    still queued or running (so two launches never train a run twice), and failed runs unless
    ``rerun_failed``. Writes ``<output>/slurm-manifest.json`` (run hash → job id, log files) after
    every array, and returns the submitit jobs per stage without waiting for them."""
    import submitit

    prof = load_profile(profile_path)
    output = grid.output
    folder = Path(prof.get("folder") or output / "slurm-logs")
    manifest = read_manifest(output)
    earlier = manifest.get("runs", {})
    alive = job_states([v["job_id"] for v in earlier.values()])
    limit = int(prof.get("max_array_size") or max_array_size())
    launch = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "profile": str(profile_path), "arrays": []}
    manifest.setdefault("launches", []).append(launch)
    manifest["grid"] = grid.name
    by_hash = grid.by_hash()
    submitted_task: Dict[str, str] = {}  # run hash -> job id of the task training it (this launch or in flight)
    jobs: Dict[str, List[Any]] = {}
    for sname, runs in grid.stages.items():
        todo = []
        for r in runs:
            rec = read_record(r.run_dir)
            status = (rec or {}).get("status")
            prev = earlier.get(r.hash)
            if status == "finished":
                continue
            if prev and alive.get(prev["job_id"]) in IN_FLIGHT:
                submitted_task[r.hash] = prev["job_id"]
                log(f"[grid {grid.name}] {sname} {r.label}: job {prev['job_id']} is {alive[prev['job_id']].lower()}; "
                    f"not submitted again")
                continue
            if status == "failed" and not rerun_failed:
                continue
            blocked = [h for h in r.needs if h not in submitted_task
                       and (read_record(by_hash[h].run_dir) or {}).get("status") != "finished"]
            if blocked:
                log(f"[grid {grid.name}] {sname} {r.label}: not submitted — its teacher "
                    f"{', '.join(by_hash[h].label for h in blocked)} is neither finished nor queued "
                    f"(relaunch with --rerun-failed)")
                continue
            todo.append(r)
        jobs[sname] = []
        if not todo:
            continue
        res = stage_resources(grid, sname, prof)
        pack = int(res.get("pack") or 1)
        groups = [todo[i:i + pack] for i in range(0, len(todo), pack)]
        for start in range(0, len(groups), limit):
            chunk = groups[start:start + limit]
            deps = sorted({submitted_task[h] for g in chunk for r in g for h in r.needs if h in submitted_task})
            ex = submitit.AutoExecutor(folder=folder / sname, cluster="slurm")
            params = slurm_parameters(res, f"kd-{grid.name}-{sname}")
            if deps:
                params.setdefault("slurm_additional_parameters", {})["dependency"] = "afterok:" + ":".join(deps)
            ex.update_parameters(**params)
            if pack > 1:
                arr = ex.map_array(PackedJob(), [[r.cfg for r in g] for g in chunk])
            else:
                arr = ex.map_array(RunJob(), [g[0].cfg for g in chunk])
            for job, g in zip(arr, chunk):
                for r in g:
                    submitted_task[r.hash] = job.job_id
                    manifest.setdefault("runs", {})[r.hash] = {
                        "job_id": job.job_id, "stage": sname, "run_dir": str(r.run_dir),
                        "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
            launch["arrays"].append({"stage": sname, "job_id": arr[0].job_id.split("_")[0], "tasks": len(arr),
                                     "dependency": deps})
            jobs[sname].extend(arr)
            _write_manifest(output, manifest)
    if not any(jobs.values()):
        manifest["launches"].pop()
        if manifest["launches"] or manifest.get("runs"):
            _write_manifest(output, manifest)
    return jobs
