"""Executors that run a grid's stages: ``debug`` / ``local`` (in this process, one run after another,
the path ``make demo`` uses) and ``slurm`` (one submitit job array per stage, students waiting for
their teachers' array with ``afterok``). Runs with a finished record are skipped, so a relaunch does
only what is missing.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from kdsuite.core.records import read_record
from kdsuite.experiments.grid import Grid, RunSpec
from kdsuite.experiments.run import run
from kdsuite.core.errors import ConfigError


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
# profile field -> submitit keyword (each becomes one sbatch option); the rest are handled below
SBATCH_FIELDS = {"account": "slurm_account", "qos": "slurm_qos", "gres": "slurm_gres", "constraint": "slurm_constraint",
                 "exclusive": "slurm_exclusive", "mail_user": "slurm_mail_user", "mail_type": "slurm_mail_type"}
PROFILE_FIELDS = PROFILE_REQUIRED + tuple(SBATCH_FIELDS) + (
    "nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb", "array_parallelism", "slurm_setup",
    "folder", "pack", "max_array_size", "max_num_timeout", "sbatch")
MANIFEST = "slurm-manifest.json"
IN_FLIGHT = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
             "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}
# a job that ended in one of these without a finished record failed (the record may be missing)
FAILED_STATES = {"FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
NEVER = "DependencyNeverSatisfied"


class SlurmUnavailable(ConfigError):
    """Slurm could not be asked (no controller, no client, a failing query): nothing is submitted."""


def load_profile(path) -> Dict[str, Any]:
    from kdsuite.experiments.config import read_yaml_mapping

    if path is None:
        shipped = sorted(str(p) for p in PROFILE_DIR.glob("*.yaml"))
        raise ConfigError(f"--cluster slurm needs --profile PATH naming your cluster's partition, time limit and "
                          f"resources (see slurm/README.md); shipped examples: {', '.join(shipped)}")
    p = Path(path)
    if not p.is_file() and not p.is_absolute() and (REPO / p).is_file():
        p = REPO / p  # a shipped profile named relative to the repository, from another folder
    if not p.is_file():
        raise ConfigError(f"--profile '{path}' does not exist; profiles live in {PROFILE_DIR} (see slurm/README.md)")
    prof = read_yaml_mapping(p, "profile")
    from kdsuite.slurm.profile_schema import check_profile

    check_profile(prof, f"profile '{p}'")  # types and ranges of every field (the checks below name the rest)
    problems = [f"missing required field '{k}'" for k in PROFILE_REQUIRED if k not in prof]
    problems += [f"unknown field '{k}' (allowed: {', '.join(PROFILE_FIELDS)}; any other sbatch option goes "
                 f"under `sbatch:`)" for k in prof if k not in PROFILE_FIELDS]
    if "slurm_setup" in prof and not (isinstance(prof["slurm_setup"], list)
                                      and all(isinstance(x, str) for x in prof["slurm_setup"])):
        problems.append(f"slurm_setup = {prof['slurm_setup']!r}: expected a list of shell lines")
    for k in ("account", "qos", "gres", "constraint", "mail_user", "mail_type", "partition"):
        if k in prof and not isinstance(prof[k], str):
            problems.append(f"{k} = {prof[k]!r}: expected a string")
    if "exclusive" in prof and not isinstance(prof["exclusive"], (bool, str)):
        problems.append(f"exclusive = {prof['exclusive']!r}: expected true/false or a string (user, mcs)")
    v = prof.get("max_num_timeout")
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
        problems.append(f"max_num_timeout = {v!r}: expected an integer >= 0 (requeues after a timeout)")
    sb = prof.get("sbatch")
    if sb is not None and not (isinstance(sb, dict) and all(isinstance(k, str) and isinstance(x, (str, int, float, bool))
                                                            for k, x in sb.items())):
        problems.append(f"sbatch = {sb!r}: expected a mapping of sbatch option names (without --) to values")
    if problems:
        raise ConfigError(f"profile '{p}': " + "; ".join(problems))
    return prof


REPO = Path(__file__).resolve().parent.parent
PROFILE_DIR = REPO / "slurm" / "profiles"


class RunJob:
    """The callable each Slurm array task runs. submitit's ``checkpoint`` hook resubmits it on
    timeout or preemption; the run then resumes from its last epoch checkpoint."""

    def __call__(self, cfg):
        from kdsuite.experiments.lease import RunBusy

        try:
            rec = run(cfg)
        except RunBusy as e:  # another job trains this run: leave it alone, do not touch its record
            print(f"kdsuite: {e}", flush=True)
            return {"status": "busy", "error": str(e)}
        return {"status": rec["status"], "run_dir": rec["run_dir"]}

    def checkpoint(self, cfg):
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(), cfg)


class PackedJob:
    """An array task that runs several small runs side by side (a stage's ``pack: N``)."""

    def __call__(self, cfgs):
        from kdsuite.slurm.packing import run_packed

        return run_packed(cfgs)

    def checkpoint(self, cfgs):
        import submitit

        return submitit.helpers.DelayedSubmission(PackedJob(), cfgs)


def _ask(cmd: List[str], what: str) -> str:
    """stdout of a Slurm client command; any failure is :class:`SlurmUnavailable` (never an empty answer)."""
    import subprocess

    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SlurmUnavailable(f"cannot {what}: `{cmd[0]}` is not installed here (run on a Slurm login node, or "
                               f"`bash slurm/local_cluster.sh install`)") from None
    except (OSError, subprocess.SubprocessError) as e:
        raise SlurmUnavailable(f"cannot {what}: `{' '.join(cmd)}` failed ({e})") from None
    if out.returncode != 0:
        msg = (out.stderr or out.stdout).strip().splitlines()
        raise SlurmUnavailable(f"cannot {what}: `{' '.join(cmd)}` exited {out.returncode}: "
                               f"{' / '.join(msg[-3:]) or 'no message'} — is the Slurm controller reachable "
                               f"(SLURM_CONF, `sinfo`)? Nothing was submitted.")
    return out.stdout


def cluster_config() -> Dict[str, str]:
    """``scontrol show config`` as a mapping (raises :class:`SlurmUnavailable` when the controller can't be asked)."""
    out = _ask(["scontrol", "show", "config"], "read the Slurm configuration")
    conf = {}
    for line in out.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            conf[k.strip()] = v.strip()
    return conf


def max_array_size(default: int = 1001) -> int:
    """The cluster's MaxArraySize (array indices run from 0 to MaxArraySize − 1)."""
    try:
        return int(cluster_config().get("MaxArraySize", default))
    except ValueError:
        return default


def job_states(job_ids: List[str]) -> Dict[str, Dict[str, str]]:
    """``{job id: {"state", "reason", "source"}}`` for every job / array task Slurm can still report:
    ``squeue -t all`` (pending, running and recently ended jobs), then ``sacct`` for the rest where
    accounting exists. A failing ``squeue`` raises :class:`SlurmUnavailable`; a job neither knows has ended
    long ago and is absent from the answer."""
    import getpass

    if not job_ids:
        return {}
    wanted = set(job_ids)
    out = _ask(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T|%r"], "ask Slurm for job states")
    states: Dict[str, Dict[str, str]] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in wanted:
            states[parts[0]] = {"state": parts[1], "reason": parts[2], "source": "squeue"}
    rest = sorted(wanted - set(states))
    if rest:
        try:  # accounting is optional: without slurmdbd sacct fails, and what squeue said stands
            acct = _ask(["sacct", "-n", "-X", "-P", "-o", "JobID,State,Reason", "-j",
                         ",".join(sorted({j.split("_")[0] for j in rest}))], "ask Slurm accounting")
        except SlurmUnavailable:
            acct = ""
        for line in acct.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 2 and parts[0] in rest:
                states[parts[0]] = {"state": parts[1].split()[0] if parts[1] else "", "reason":
                                    parts[2] if len(parts) > 2 else "", "source": "sacct"}
    return states


def read_manifest(output: Path) -> Dict[str, Any]:
    import json

    p = Path(output) / MANIFEST
    if not p.exists():
        return {"launches": [], "runs": {}}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"launch manifest '{p}' is damaged ({e}); move it aside to launch afresh (runs with "
                          f"finished records are still skipped)") from None


def _write_manifest(output: Path, manifest: Dict[str, Any]) -> None:
    from kdsuite.core.fileio import atomic_write_json

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
    for field, key in SBATCH_FIELDS.items():
        if res.get(field) not in (None, False, ""):
            params[key] = res[field]
    if res.get("sbatch"):
        params["slurm_additional_parameters"] = dict(res["sbatch"])
    return params


def classify_run(r: RunSpec, job: Optional[Dict[str, Any]], states: Dict[str, Dict[str, str]]) -> Tuple[str, str]:
    """The one rule for a run's state, from its record, its lease and its job: ``finished``, ``in-flight``
    (its job is pending or running), ``failed`` (record says so, or its job ended FAILED / out of memory
    without a record), ``interrupted`` (resumable: preempted, cancelled, killed, time-limited) or ``new``.
    Returns ``(state, detail)``."""
    from kdsuite.experiments.lease import is_held

    rec = read_record(r.run_dir) or {}
    status = rec.get("status")
    js = states.get(job["job_id"]) if job else None
    if status == "finished":
        return "finished", ""
    if js and js["state"] in IN_FLIGHT and js["reason"] != NEVER:
        return "in-flight", js["state"].lower()
    if is_held(r.run_dir):
        return "in-flight", "training (its lease is held)"
    if status == "failed":
        return "failed", rec.get("error", "")
    if js and js["state"] in FAILED_STATES:
        return "failed", f"its job {job['job_id']} ended {js['state']} ({js['reason']}) before writing a record"
    if status in ("interrupted", "running"):
        why = rec.get("error") if status == "interrupted" else "its job ended while it trained"
        ended = f"; job {job['job_id']} {js['state']}" if job and js else ""
        return "interrupted", f"{why}{ended}"
    return "new", ""


def submit_slurm(grid: Grid, profile_path, rerun_failed: bool = False, log=print, dry_run: bool = False) -> Dict[str, List[Any]]:
    """Submit every run of ``grid`` that needs running: one job array per stage (split into several
    arrays when a stage has more runs than the cluster's MaxArraySize); a run whose teacher is being
    trained waits for that teacher's array task (``afterok``, and Slurm cancels it if the teacher fails:
    ``--kill-on-invalid-dep=yes``), one whose teacher record is finished starts at once. By
    :func:`classify_run`: finished and in-flight runs are skipped (so two launches never train a run
    twice), interrupted and new runs submitted, failed ones only with ``rerun_failed``; a student whose
    teacher is neither finished nor submitted is reported blocked. A job left pending on a dependency that
    can never be met (an older launch without the flag) is cancelled and its run resubmitted when its
    teacher is. Slurm that can't be asked is an error before anything is submitted. Writes
    ``<output>/slurm-manifest.json`` after every array and returns the submitit jobs per stage without
    waiting for them (``dry_run``: prints each array's size, resources, dependencies and sbatch lines,
    submits nothing, returns the planned groups)."""
    import subprocess

    import submitit

    prof = load_profile(profile_path)
    output = grid.output
    folder = Path(prof.get("folder") or output / "slurm-logs")
    manifest = read_manifest(output)
    earlier = manifest.get("runs", {})
    limit = int(prof.get("max_array_size") or 0)
    try:
        conf = cluster_config()  # also proves the controller answers before anything is decided
        limit = limit or int(conf.get("MaxArraySize", 1001))
        states = job_states([v["job_id"] for v in earlier.values()])
    except SlurmUnavailable as e:
        if not dry_run:
            raise
        limit, states = limit or 1001, {}
        log(f"[grid {grid.name}] dry run without Slurm ({e}); queued jobs of earlier launches are not checked")
    launch = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "profile": str(profile_path), "arrays": []}
    manifest.setdefault("launches", []).append(launch)
    manifest["grid"] = grid.name
    by_hash = grid.by_hash()
    submitted_task: Dict[str, str] = {}  # run hash -> job id of the task training it (this launch or in flight)
    run_state: Dict[str, Tuple[str, str]] = {}
    jobs: Dict[str, List[Any]] = {}
    for sname, runs in grid.stages.items():
        todo = []
        for r in runs:
            prev = earlier.get(r.hash)
            state, detail = run_state[r.hash] = classify_run(r, prev, states)
            if state == "finished":
                continue
            if state == "in-flight":
                if prev:
                    submitted_task[r.hash] = prev["job_id"]
                log(f"[grid {grid.name}] {sname} {r.label}: {'job ' + prev['job_id'] + ' ' if prev else ''}{detail}; "
                    f"not submitted again")
                continue
            if state == "failed" and not rerun_failed:
                log(f"[grid {grid.name}] {sname} {r.label}: failed — {detail}; not resubmitted (relaunch with "
                    f"--rerun-failed)")
                continue
            blocked = [h for h in r.needs if h not in submitted_task and run_state.get(h, ("",))[0] != "finished"]
            if blocked:
                why = ", ".join(f"{by_hash[h].label} {run_state.get(h, ('not planned',))[0]}" for h in blocked)
                log(f"[grid {grid.name}] {sname} {r.label}: blocked: teacher {why}; not submitted "
                    f"(relaunch with --rerun-failed to rerun the teacher and then this run)")
                continue
            js = states.get(prev["job_id"]) if prev else None
            if js and js["state"] in IN_FLIGHT and js["reason"] == NEVER and not dry_run:
                # an older launch's job waiting on a dependency that can never be met: free it
                subprocess.run(["scancel", prev["job_id"]], capture_output=True, timeout=60)
                log(f"[grid {grid.name}] {sname} {r.label}: cancelled job {prev['job_id']} ({NEVER})")
            if state == "interrupted":
                log(f"[grid {grid.name}] {sname} {r.label}: interrupted ({detail}); resubmitted, resumes from its "
                    f"last checkpoint")
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
            ex = submitit.AutoExecutor(folder=folder / sname, cluster="slurm",
                                       slurm_max_num_timeout=int(res.get("max_num_timeout", 3)))
            params = slurm_parameters(res, f"kd-{grid.name}-{sname}")
            if deps:
                extra = params.setdefault("slurm_additional_parameters", {})
                extra["dependency"] = "afterok:" + ":".join(deps)
                extra["kill-on-invalid-dep"] = "yes"
            ex.update_parameters(**params)
            if dry_run:
                n = len(launch["arrays"])
                _print_array(log, grid.name, sname, n, chunk, res, deps, ex)
                for t, g in enumerate(chunk):
                    for r in g:
                        submitted_task[r.hash] = f"array{n}_{t}"  # stands for task t of this launch's array n
                launch["arrays"].append({"stage": sname, "tasks": len(chunk), "dependency": deps})
                jobs[sname].extend(chunk)
                continue
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
    if dry_run:
        return jobs
    if not any(jobs.values()):
        manifest["launches"].pop()
        if manifest["launches"] or manifest.get("runs"):
            _write_manifest(output, manifest)
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
