"""``kdsuite grid plan|launch|status GRID``: what a grid would run, running it (in this process, or
as one Slurm job array per stage through submitit), and the state of every run from its record.

Every command reads each run's record once: an unreadable ``record.json`` is listed by path (plan,
status) or stops a launch before anything is submitted; a finished record whose method code (or
teacher) changed since it ran is *stale* — shown by plan and status, and rerun by
``launch --rerun-stale`` (the old run folder is moved to ``<output>/.superseded/``)."""
from __future__ import annotations

import collections
import shutil
import time
from pathlib import Path
from typing import Dict, List, Tuple

from kdsuite.core.records import ARCHIVE, RecordError, read_record
from kdsuite.experiments.config import ConfigError


def _state(run) -> Tuple[str, str]:
    """``(state, detail)``: not started, running, done, stale, diverged, failed, interrupted, unreadable."""
    try:
        rec = read_record(run.run_dir)
    except RecordError as e:
        return "unreadable", f"{e.path}: {e.reason}"
    if rec is None:
        return "not started", ""
    status = rec.get("status")
    if status == "finished":
        from kdsuite.methods.identity import record_stale_reason

        why = record_stale_reason(rec)
        if why:
            return "stale", why
        m = rec.get("metrics", {})
        return "done", f"top-1 {m.get('last_top1', float('nan')):.2f}"
    if status == "diverged":
        d = rec.get("divergence") or {}
        return "diverged", f"{d.get('what', 'non-finite values')} at step {d.get('step')} (epoch {d.get('epoch')})"
    if status == "failed":
        return "failed", rec.get("error", "")
    return status, ""


def _states(grid) -> Dict[str, Tuple[str, str]]:
    """The state of every run of ``grid`` by hash; a teacher's staleness carries to the runs that need it."""
    states = {r.hash: _state(r) for r in grid.all_runs()}
    for r in grid.all_runs():  # stages are in order: a teacher's state is settled before its students'
        if states[r.hash][0] == "done":
            stale_t = [h for h in r.needs if states.get(h, ("",))[0] == "stale"]
            if stale_t:
                states[r.hash] = ("stale", "its teacher is stale and will be retrained")
    return states


def _unavailable_data(grid) -> List[str]:
    from kdsuite.experiments.identity import UNAVAILABLE, data_identity

    seen, checked = {}, set()
    for r in grid.all_runs():
        ds = r.cfg["dataset"]
        key = (ds["name"], str(ds.get("root")), ds.get("verify_checksums"))
        if key in checked:  # one look per data set, not per run (a folder listing can be long)
            continue
        checked.add(key)
        ident = data_identity(ds)
        if ident["fingerprint"] == UNAVAILABLE:
            seen[str(ds.get("root"))] = ident["basis"]
    return [f"dataset.root = '{root}': {why}" for root, why in seen.items()]


def _report_problems(states, grid) -> None:
    bad = [(r, states[r.hash][1]) for r in grid.all_runs() if states[r.hash][0] == "unreadable"]
    if bad:
        print(f"{len(bad)} unreadable record(s) (truncated or not a run record):")
        for _r, why in bad:
            print(f"  {why}")
    stale = [(r, states[r.hash][1]) for r in grid.all_runs() if states[r.hash][0] == "stale"]
    if stale:
        print(f"{len(stale)} stale run(s) — finished with other code than now; `grid launch --rerun-stale` reruns them:")
        for r, why in stale:
            print(f"  {r.run_dir}: {why}")


def _short(path: str) -> str:
    return path[len("method.hparams."):] if path.startswith("method.hparams.") else path


def settings_text(settings) -> str:
    """``{"method.hparams.beta": 2.0, "optim.lr": 0.01}`` -> ``beta=2.0, optim.lr=0.01``."""
    return ", ".join(f"{_short(k)}={v}" for k, v in sorted(settings.items())) or "-"


def plan_rows(runs):
    """One row per run, runs that differ only by seed collapsed: (method, teachers → student, seeds,
    the settings that differ from the grid's defaults)."""
    rows: dict = {}
    for r in runs:
        cfg = r.cfg
        who = r.key or " + ".join(r.teacher_keys or [t.get("arch", "?") for t in cfg["teachers"]])
        search = cfg["student"].get("search")
        student = f"best of stage {search['stage']!r}" if search else cfg["student"]["arch"]
        pair = f"{who} → {student}" if (r.teacher_keys or cfg["teachers"]) else student
        if r.key:
            pair = f"{r.key}: {cfg['student']['arch']}"
        k = (cfg["method"]["name"], pair, settings_text(r.settings))
        rows.setdefault(k, []).append(cfg.get("seed", 0))
    return [(m, pair, seeds, text) for (m, pair, text), seeds in rows.items()]


def cmd_plan(args) -> int:
    from kdsuite.experiments.grid import load_grid

    grid = load_grid(args.grid, output=args.output)
    for key, entry in (grid.spec.get("teachers") or {}).items():
        print(f"teacher {key}: record {entry['checkpoint'] if isinstance(entry, dict) else entry} (no stage)")
    states = _states(grid)
    total, hours, unknown = 0, 0.0, False
    for sname, runs in grid.stages.items():
        done = sum(states[r.hash][0] == "done" for r in runs)
        stale = sum(states[r.hash][0] == "stale" for r in runs)
        per_method = collections.Counter(r.cfg["method"]["name"] for r in runs)
        h = grid.gpu_hours_per_run(sname)
        res = grid.resources(sname)
        est = f", about {h * (len(runs) - done):.0f} GPU-hours to go" if h is not None else ""
        print(f"stage {sname}: {len(runs)} runs ({done} already finished"
              + (f", {stale} stale" if stale else "") + f"){est} — "
              + ", ".join(f"{m} {n}" for m, n in per_method.items()))
        if res:
            print("  resources: " + ", ".join(f"{k}={v}" for k, v in res.items()))
        if not getattr(args, "summary", False):
            rows = plan_rows(runs)
            wm = max((len(r[0]) for r in rows), default=0)
            wp = max((len(r[1]) for r in rows), default=0)
            for m, pair, seeds, text in rows:
                print(f"  {m:<{wm}}  {pair:<{wp}}  seeds {','.join(map(str, sorted(seeds))):<6}  {text}")
        total += len(runs)
        if h is None:
            unknown = True
        else:
            hours += h * (len(runs) - done)
    print(f"total: {total} runs" + (f", about {hours:.0f} GPU-hours to go" if hours else "")
          + (" (no estimate for some stages: set gpu_hours_per_run)" if unknown and hours else ""))
    _report_problems(states, grid)
    for line in _unavailable_data(grid):
        print(f"data not readable here, run identities provisional: {line}")
    return 0


def supersede(run_dir: Path) -> Path:
    """Move a stale run's folder to ``<parent>/.superseded/<name>-<time>``: kept for comparison, out of
    the grid's results, and its config hash free to run again."""
    dest = run_dir.parent / ARCHIVE / f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run_dir), str(dest))
    return dest


def cmd_launch(args) -> int:
    from kdsuite.experiments.grid import load_grid
    from kdsuite.slurm.executors import run_in_process, submit_slurm

    grid = load_grid(args.grid, output=args.output)
    states = _states(grid)
    bad = [states[r.hash][1] for r in grid.all_runs() if states[r.hash][0] == "unreadable"]
    if bad:
        raise ConfigError(f"grid '{grid.name}': {len(bad)} unreadable run record(s); move them aside or delete "
                          f"them (those runs then start again), nothing was launched:\n  " + "\n  ".join(bad))
    missing = _unavailable_data(grid)
    if missing:
        raise ConfigError(f"grid '{grid.name}': the data must be readable where the grid is launched (runs are "
                          f"identified by its content): " + "; ".join(missing))
    stale = [r for r in grid.all_runs() if states[r.hash][0] == "stale"]
    if stale and getattr(args, "rerun_stale", False):
        for r in stale:
            if r.run_dir.exists():
                print(f"stale, rerunning ({states[r.hash][1]}): {r.run_dir} moved to {supersede(r.run_dir)}")
    elif stale:
        print(f"{len(stale)} stale run(s) kept as they are (finished with other code than now); "
              f"pass --rerun-stale to rerun them (`grid plan` lists them)")
    if args.cluster in ("local", "debug"):
        if args.dry_run:
            return cmd_plan(args)
        counts = run_in_process(grid)
        print(f"{counts['finished']} finished, {counts['skipped']} already done, {counts['failed']} failed")
        return 1 if counts["failed"] else 0
    jobs = submit_slurm(grid, args.profile, rerun_failed=args.rerun_failed, dry_run=args.dry_run)
    verb = "would submit" if args.dry_run else "submitted"
    print(f"{verb} {sum(len(v) for v in jobs.values())} {'array tasks' if args.dry_run else 'runs'}: "
          + ", ".join(f"{s} {len(v)}" for s, v in jobs.items()))
    return 0


def _last_line(path) -> str:
    """The last non-empty line of a job log (read from its end), or ''."""
    import os

    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip()[:160] if lines else ""
    except OSError:
        return ""


def cmd_status(args) -> int:
    """One line per run, joining its record, its lease and every state Slurm reports for its job."""
    from kdsuite.experiments.grid import load_grid
    from kdsuite.experiments.lease import attempts
    from kdsuite.slurm.executors import classify_run, job_states, read_manifest

    grid = load_grid(args.grid, output=args.output)
    jobs = read_manifest(grid.output).get("runs", {})
    slurm = job_states([j["job_id"] for j in jobs.values()])  # raises when Slurm can't be asked
    by_hash = grid.by_hash()
    recorded = _states(grid)
    kinds = {}
    counts = collections.Counter()
    for sname, runs in grid.stages.items():
        for r in runs:
            if recorded[r.hash][0] == "unreadable":
                state, detail = recorded[r.hash]
                counts[state] += 1
                print(f"{sname:<10} {state:<12} {r.label:<48} {detail}")
                continue
            job = jobs.get(r.hash)
            kind, detail = kinds[r.hash] = classify_run(r, job, slurm)
            js = slurm.get(job["job_id"]) if job else None
            if kind == "finished":
                state, detail = recorded[r.hash]  # done, or stale when its code changed since
            elif kind == "in-flight":
                state = js["state"].lower() if js else "running"
                if js and js["reason"] not in ("None", ""):
                    detail = js["reason"]
            elif kind == "new":
                bad = [h for h in r.needs if kinds.get(h, ("",))[0] == "failed"]
                state = "blocked" if bad else "not started"
                detail = f"teacher {', '.join(by_hash[h].label for h in bad)} failed" if bad else ""
                if js:
                    detail = f"{detail}; job {js['state'].lower()} ({js['reason']})".strip("; ")
            else:
                state = kind
            extra = []
            n = len(attempts(r.run_dir))
            if n:
                extra.append(f"attempts {n}")
            if job:
                extra.append(f"job {job['job_id']}" + (f" {js['state']}" if js else ""))
                last = _last_line(job["stderr"])
                if last and kind != "finished":
                    extra.append(f"log {job['stderr']}: {last}")
            counts[state] += 1
            tail = f" [{'; '.join(extra)}]" if extra else ""
            print(f"{sname:<10} {state:<12} {r.label:<48} {detail}{tail}".rstrip())
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def add_commands(sub) -> None:
    g = sub.add_parser("grid", help="plan, launch and follow a grid of runs").add_subparsers(dest="grid_cmd", required=True)
    for name, fn, help_ in (("plan", cmd_plan, "what would run"), ("launch", cmd_launch, "run or submit"),
                            ("status", cmd_status, "state of every run")):
        p = g.add_parser(name, help=help_)
        p.add_argument("grid", help="a shipped grid name (demo, …) or a YAML file")
        p.add_argument("--output", help="override the grid's output folder")
        if name == "plan":
            p.add_argument("--summary", action="store_true",
                           help="stage totals only (default: also one line per run, seeds collapsed, with the "
                                "settings that differ from the grid's defaults)")
        if name == "launch":
            p.add_argument("--cluster", choices=["local", "debug", "slurm"], default="local")
            p.add_argument("--profile", help="Slurm profile YAML (required with --cluster slurm; see slurm/README.md)")
            p.add_argument("--rerun-failed", action="store_true", help="also resubmit failed runs")
            p.add_argument("--dry-run", action="store_true",
                           help="print each array's size, resources, dependencies and sbatch lines; submit nothing")
            p.add_argument("--rerun-stale", action="store_true",
                           help="rerun finished runs whose method code (or teacher) changed since they ran")
        p.set_defaults(fn=fn)
