"""``kdsuite grid plan|launch|status GRID``: what a grid would run, running it (in this process, or
as one Slurm job array per stage through submitit), and the state of every run from its record."""
from __future__ import annotations

import collections

from analysis.records import read_record


def _state(run) -> tuple:
    rec = read_record(run.run_dir)
    if rec is None:
        return "not started", ""
    status = rec.get("status")
    if status == "finished":
        m = rec.get("metrics", {})
        return "done", f"top-1 {m.get('last_top1', float('nan')):.2f}"
    if status == "failed":
        return "failed", rec.get("error", "")
    return status, ""


def cmd_plan(args) -> int:
    from experiments.grid import load_grid

    grid = load_grid(args.grid, output=args.output)
    total, hours, unknown = 0, 0.0, False
    for sname, runs in grid.stages.items():
        done = sum(_state(r)[0] == "done" for r in runs)
        per_method = collections.Counter(r.cfg["method"]["name"] for r in runs)
        h = grid.gpu_hours_per_run(sname)
        res = grid.resources(sname)
        est = f", about {h * (len(runs) - done):.0f} GPU-hours to go" if h is not None else ""
        print(f"stage {sname}: {len(runs)} runs ({done} already finished){est} — "
              + ", ".join(f"{m} {n}" for m, n in per_method.items()))
        if res:
            print("  resources: " + ", ".join(f"{k}={v}" for k, v in res.items()))
        total += len(runs)
        if h is None:
            unknown = True
        else:
            hours += h * (len(runs) - done)
    print(f"total: {total} runs" + (f", about {hours:.0f} GPU-hours to go" if hours else "")
          + (" (no estimate for some stages: set gpu_hours_per_run)" if unknown and hours else ""))
    return 0


def cmd_launch(args) -> int:
    from experiments.grid import load_grid
    from slurm.executors import run_in_process, submit_slurm

    grid = load_grid(args.grid, output=args.output)
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
            lines = [l for l in fh.read().decode(errors="replace").splitlines() if l.strip()]
        return lines[-1].strip()[:160] if lines else ""
    except OSError:
        return ""


def cmd_status(args) -> int:
    """One line per run, joining its record, its lease and every state Slurm reports for its job."""
    from experiments.grid import load_grid
    from experiments.lease import attempts
    from slurm.executors import classify_run, job_states, read_manifest

    grid = load_grid(args.grid, output=args.output)
    jobs = read_manifest(grid.output).get("runs", {})
    slurm = job_states([j["job_id"] for j in jobs.values()])  # raises when Slurm can't be asked
    by_hash = grid.by_hash()
    states = {}
    counts = collections.Counter()
    for sname, runs in grid.stages.items():
        for r in runs:
            job = jobs.get(r.hash)
            kind, detail = states[r.hash] = classify_run(r, job, slurm)
            js = slurm.get(job["job_id"]) if job else None
            if kind == "finished":
                state, detail = _state(r)
            elif kind == "in-flight":
                state = js["state"].lower() if js else "running"
                if js and js["reason"] not in ("None", ""):
                    detail = js["reason"]
            elif kind == "new":
                bad = [h for h in r.needs if states.get(h, ("",))[0] == "failed"]
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
        if name == "launch":
            p.add_argument("--cluster", choices=["local", "debug", "slurm"], default="local")
            p.add_argument("--profile", help="Slurm profile YAML (required with --cluster slurm; see slurm/README.md)")
            p.add_argument("--rerun-failed", action="store_true", help="also resubmit failed runs")
            p.add_argument("--dry-run", action="store_true",
                           help="print each array's size, resources, dependencies and sbatch lines; submit nothing")
        p.set_defaults(fn=fn)
