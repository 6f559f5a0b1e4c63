"""Executors that run a grid's stages: ``debug`` / ``local`` (in this process, one run after another,
the path ``make demo`` uses) and ``slurm`` (one submitit job array per stage and teacher set, each
student waiting for its own teachers' tasks with ``afterok``). What runs is decided by the one state
rule (:mod:`kdsuite.core.run_state`), so a relaunch does only what is missing.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from kdsuite.core.records import read_record
from kdsuite.experiments.grid import Grid, RunSpec, timeout_problem
from kdsuite.experiments.run import run
from kdsuite.core.errors import ConfigError
from kdsuite.core.run_state import FAILED, FAILED_STATES, IN_FLIGHT, NEVER, RERUNNABLE  # noqa: F401 (re-exported)


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
PROFILE_REQUIRED = ("partition", "timeout_min")
# profile field -> submitit keyword (each becomes one sbatch option); the rest are handled below
SBATCH_FIELDS = {"account": "slurm_account", "qos": "slurm_qos", "gres": "slurm_gres", "constraint": "slurm_constraint",
                 "exclusive": "slurm_exclusive", "mail_user": "slurm_mail_user", "mail_type": "slurm_mail_type"}
PROFILE_FIELDS = PROFILE_REQUIRED + tuple(SBATCH_FIELDS) + (
    "nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb", "array_parallelism", "slurm_setup",
    "folder", "pack", "max_array_size", "max_num_timeout", "sbatch")
MANIFEST = "slurm-manifest.json"


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
    if "timeout_min" in prof and timeout_problem(prof["timeout_min"], "timeout_min"):
        problems.append(timeout_problem(prof["timeout_min"], "timeout_min"))
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
    """:func:`submit_slurm`'s work, under the grid's launch lock (but for a dry run)."""
    import subprocess

    import submitit

    from kdsuite.core.run_state import RESUME, SUBMIT, WAIT
    from kdsuite.experiments.grid_state import grid_actions, grid_states, prepare_reruns

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
    run_states = grid_states(grid, earlier, states)
    acts = grid_actions(grid, run_states, rerun)
    if not dry_run:
        prepare_reruns(grid, run_states, acts, log=lambda m: log(f"[grid {grid.name}] {m}"))
    launch = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "profile": str(profile_path), "arrays": []}
    manifest.setdefault("launches", []).append(launch)
    manifest["grid"] = grid.name
    by_hash = grid.by_hash()
    submitted_task: Dict[str, str] = {}  # run hash -> job id of the task training it (this launch or in flight)
    jobs: Dict[str, List[Any]] = {}
    for sname, runs in grid.stages.items():
        todo = []
        for r in runs:
            prev = earlier.get(r.hash)
            st, act = run_states[r.hash], acts[r.hash]
            if act.verb == WAIT:
                if st.job:
                    submitted_task[r.hash] = st.job  # its students wait for that job
                log(f"[grid {grid.name}] {sname} {r.label}: {st.state}, {act.why}")
                continue
            if act.verb not in (SUBMIT, RESUME):
                if st.state != "finished":
                    log(f"[grid {grid.name}] {sname} {r.label}: {act.why}")
                continue
            # a teacher trained outside any job this launch knows (its lease held by another process) has
            # no task to wait for: its students wait for the next launch
            unknown = [h for h in r.needs if h not in submitted_task and run_states[h].own not in ("finished", "stale")]
            if unknown:
                why = ", ".join(f"{by_hash[h].label} {run_states[h].state} ({run_states[h].detail})" for h in unknown)
                log(f"[grid {grid.name}] {sname} {r.label}: blocked by {why} — no Slurm job of this grid to wait "
                    f"for; not submitted (relaunch when it has finished)")
                continue
            js = states.get(prev["job_id"]) if prev else None
            if js and js["state"] in IN_FLIGHT and js["reason"] == NEVER and not dry_run:
                # an older launch's job waiting on a dependency that can never be met: free it
                subprocess.run(["scancel", prev["job_id"]], capture_output=True, timeout=60)
                log(f"[grid {grid.name}] {sname} {r.label}: cancelled job {prev['job_id']} ({NEVER})")
            if act.verb == RESUME:
                log(f"[grid {grid.name}] {sname} {r.label}: interrupted ({act.why}); resubmitted, resumes from its "
                    f"last checkpoint")
            todo.append(r)
        jobs[sname] = []
        if not todo:
            continue
        res = stage_resources(grid, sname, prof)
        pack = int(res.get("pack") or 1)
        # one array per set of teacher tasks: a student waits for its own teachers only, so one failed
        # teacher holds back (and gets cancelled) its own students, not the whole stage
        by_deps: Dict[Tuple[str, ...], List[RunSpec]] = {}
        for r in todo:
            by_deps.setdefault(tuple(sorted({submitted_task[h] for h in r.needs if h in submitted_task})), []).append(r)
        chunks = []
        for dep_set, rs in by_deps.items():
            groups = [rs[i:i + pack] for i in range(0, len(rs), pack)]
            chunks += [(list(dep_set), groups[i:i + limit]) for i in range(0, len(groups), limit)]
        for deps, chunk in chunks:
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
