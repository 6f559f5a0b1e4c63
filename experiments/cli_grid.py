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
        pair = f"{who} → {cfg['student']['arch']}" if (r.teacher_keys or cfg["teachers"]) else cfg["student"]["arch"]
        if r.key:
            pair = f"{r.key}: {cfg['student']['arch']}"
        k = (cfg["method"]["name"], pair, settings_text(r.settings))
        rows.setdefault(k, []).append(cfg.get("seed", 0))
    return [(m, pair, seeds, text) for (m, pair, text), seeds in rows.items()]


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
        if not args.summary:
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
    return 0


def cmd_launch(args) -> int:
    from experiments.grid import load_grid
    from slurm.executors import run_in_process, submit_slurm

    grid = load_grid(args.grid, output=args.output)
    if args.cluster in ("local", "debug"):
        counts = run_in_process(grid)
        print(f"{counts['finished']} finished, {counts['skipped']} already done, {counts['failed']} failed")
        return 1 if counts["failed"] else 0
    jobs = submit_slurm(grid, args.profile, rerun_failed=args.rerun_failed)
    print(f"submitted {sum(len(v) for v in jobs.values())} runs: "
          + ", ".join(f"{s} {len(v)}" for s, v in jobs.items()))
    return 0


def cmd_status(args) -> int:
    from experiments.grid import load_grid
    from slurm.executors import job_states, read_manifest

    grid = load_grid(args.grid, output=args.output)
    jobs = read_manifest(grid.output).get("runs", {})
    slurm = job_states([j["job_id"] for j in jobs.values()])
    counts = collections.Counter()
    for sname, runs in grid.stages.items():
        for r in runs:
            state, detail = _state(r)
            job = jobs.get(r.hash)
            if job and state != "done":
                js = slurm.get(job["job_id"])
                if js and state in ("not started", "running"):
                    state = js.lower()  # pending / running / requeued … as Slurm sees it
                detail = f"{detail} [job {job['job_id']}, log {job['stderr']}]".strip()
            counts[state] += 1
            print(f"{sname:<10} {state:<12} {r.label:<48} {detail}")
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
            p.add_argument("--profile", default="slurm/profiles/local_test.yaml")
            p.add_argument("--rerun-failed", action="store_true")
        p.set_defaults(fn=fn)
