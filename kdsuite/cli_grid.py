"""``kdsuite grid plan|launch|status GRID``: what a grid would run, running it (in this process, or
as one Slurm job array per stage through submitit), and the state of every run.

Every command asks the one state rule (:mod:`kdsuite.core.run_state`, applied to a grid by
:mod:`kdsuite.experiments.grid_state`) what each run is — not started, queued, running, interrupted,
finished, diverged, failed, blocked, stale, unreadable — and what a launch does with it.

Every command reads each run's record once: an unreadable ``record.json`` is listed by path (plan,
status) or stops a launch before anything is submitted; a finished record whose method code (or
teacher) changed since it ran is *stale* — shown by plan and status, and rerun by
``launch --rerun-stale`` (the old run folder is moved to ``<output>/.superseded/``)."""
from __future__ import annotations

import collections
from typing import List

from kdsuite.experiments.config import ConfigError


def _states(grid, jobs=None, slurm=None):
    """The state of every run of ``grid`` by hash (:func:`kdsuite.experiments.grid_state.grid_states`)."""
    from kdsuite.experiments.grid_state import grid_states

    return grid_states(grid, jobs, slurm)


def _rerun(args) -> tuple:
    return tuple(s for s, flag in (("failed", "rerun_failed"), ("diverged", "rerun_diverged"), ("stale", "rerun_stale"))
                 if getattr(args, flag, False))


# what a launch does with a run, as a plan / status line says it
NEXT = {"skip": "", "wait": "", "hold": "--rerun-failed reruns it", "submit": "a launch submits it",
        "resume": "a launch resumes it", "blocked": ""}


def next_step(st, act) -> str:
    """The hint a plan / status line ends with: what the next plain launch does with the run."""
    if act.verb == "skip" and st.own in ("diverged", "stale"):
        return f"kept; --rerun-{st.own} reruns it"
    if act.verb == "blocked":
        flags = act.why.split(" (relaunch with ", 1)[1].split(" to rerun")[0] if " (relaunch with " in act.why else ""
        return f"a launch with {flags} reruns the teacher, then it" if flags else "not submitted until its teacher is"
    if act.verb == "submit" and st.own in ("failed", "diverged", "stale"):
        return "rerun by this launch"
    return NEXT[act.verb]


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


def _output_problem(grid) -> str:
    """Why the grid's output folder cannot be written here ('' when it can): a launch refuses it before
    anything runs, a plan says so."""
    from kdsuite.core.fileio import check_writable_dir

    try:
        check_writable_dir(grid.output, f"grid '{grid.name}' output (output: / --output)")
    except ConfigError as e:
        return str(e)
    return ""


def _report_problems(states, grid, acts=None) -> None:
    """Unreadable records and stale runs by path; then every run that is neither finished nor new, with
    its state, why, and what the next launch does with it."""
    bad = [(r, states[r.hash].detail) for r in grid.all_runs() if states[r.hash].state == "unreadable"]
    if bad:
        print(f"{len(bad)} unreadable record(s) (truncated or not a run record):")
        for _r, why in bad:
            print(f"  {why}")
    stale = [(r, states[r.hash].detail) for r in grid.all_runs() if states[r.hash].state == "stale"]
    if stale:
        print(f"{len(stale)} stale run(s) — finished with other code than now; `grid launch --rerun-stale` reruns them:")
        for r, why in stale:
            print(f"  {r.run_dir}: {why}")
    if acts is None:
        return
    other = [r for r in grid.all_runs() if states[r.hash].state not in ("finished", "not started", "unreadable", "stale")]
    if other:
        print(f"{len(other)} run(s) neither finished nor new:")
        for r in other:
            st, act = states[r.hash], acts[r.hash]
            hint = next_step(st, act)
            print(f"  {r.stage:<10} {st.state:<12} {r.label}  {st.detail}" + (f" — {hint}" if hint else ""))


def _launch_summary(grid, states, acts, what: str) -> str:
    """``a launch would submit 2 (not started), resume 1 (interrupted), …`` from the actions."""
    c = collections.Counter()
    for r in grid.all_runs():
        st, act = states[r.hash], acts[r.hash]
        c[(act.verb, st.own if act.verb != "blocked" else "blocked")] += 1
    say = {"submit": "submit {n} ({own})", "resume": "resume {n} ({own})", "wait": "wait for {n} ({own})",
           "skip": "keep {n} {own}", "hold": "hold {n} {own}", "blocked": "block {n}"}
    parts = [say[verb].format(n=n, own=own) for verb in say for (v, own), n in sorted(c.items()) if v == verb]
    return f"{what}: " + (", ".join(parts) or "nothing")


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
    from kdsuite.experiments.grid_state import grid_actions

    grid = load_grid(args.grid, output=args.output, overrides=args.set, max_runs=args.max_runs)
    for key, entry in (grid.spec.get("teachers") or {}).items():
        print(f"teacher {key}: record {entry['checkpoint'] if isinstance(entry, dict) else entry} (no stage)")
    states = _states(grid)
    acts = grid_actions(grid, states, _rerun(args))
    total, hours, unknown = 0, 0.0, False
    for sname, runs in grid.stages.items():
        by_state = collections.Counter(states[r.hash].state for r in runs)
        done = by_state.pop("finished", 0)
        by_state.pop("not started", None)
        to_run = sum(acts[r.hash].verb in ("submit", "resume") for r in runs)
        per_method = collections.Counter(r.cfg["method"]["name"] for r in runs)
        h = grid.gpu_hours_per_run(sname)
        res = grid.resources(sname)
        est = f", about {h * to_run:.0f} GPU-hours to go" if h is not None else ""
        print(f"stage {sname}: {len(runs)} runs ({done} already finished"
              + "".join(f", {n} {st}" for st, n in by_state.items()) + f"){est} — "
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
            hours += h * to_run
    print(f"total: {total} runs" + (f", about {hours:.0f} GPU-hours to go" if hours else "")
          + (" (no estimate for some stages: set gpu_hours_per_run)" if unknown and hours else ""))
    _report_problems(states, grid, acts)
    print(_launch_summary(grid, states, acts, "a launch" + (" with " + " ".join(f"--rerun-{s}" for s in _rerun(args))
                                                             if _rerun(args) else "") + " would"))
    for line in _unavailable_data(grid):
        print(f"data not readable here, run identities provisional: {line}")
    problem = _output_problem(grid)
    if problem:
        print(f"a launch would refuse: {problem}")
    return 0


def cmd_launch(args) -> int:
    from kdsuite.experiments.grid import load_grid
    from kdsuite.slurm.executors import run_in_process, submit_slurm

    grid = load_grid(args.grid, output=args.output, overrides=args.set, max_runs=args.max_runs)
    problem = _output_problem(grid)
    if problem:
        raise ConfigError(problem + "; nothing was launched")
    states = _states(grid)
    bad = [states[r.hash].detail for r in grid.all_runs() if states[r.hash].state == "unreadable"]
    if bad:
        raise ConfigError(f"grid '{grid.name}': {len(bad)} unreadable run record(s); move them aside or delete "
                          f"them (those runs then start again), nothing was launched:\n  " + "\n  ".join(bad))
    missing = _unavailable_data(grid)
    if missing:
        raise ConfigError(f"grid '{grid.name}': the data must be readable where the grid is launched (runs are "
                          f"identified by its content): " + "; ".join(missing))
    rerun = _rerun(args)
    for kind, what in (("stale", "finished with other code than now"), ("diverged", "a diverged run is a result")):
        kept = [r for r in grid.all_runs() if states[r.hash].state == kind]
        if kept and kind not in rerun:
            print(f"{len(kept)} {kind} run(s) kept as they are ({what}); pass --rerun-{kind} to rerun them "
                  f"(`grid plan` lists them)")
    if args.cluster in ("local", "debug"):
        if args.dry_run:
            return cmd_plan(args)
        c = run_in_process(grid, rerun=rerun)
        print(f"{c['finished']} finished, {c.get('diverged', 0)} diverged, {c['skipped']} already done or kept, "
              f"{c.get('held', 0)} held (failed earlier: --rerun-failed), {c.get('blocked', 0)} blocked, "
              f"{c.get('busy', 0)} trained elsewhere, {c['failed']} failed")
        return 1 if c["failed"] else 0
    jobs = submit_slurm(grid, args.profile, rerun=rerun, dry_run=args.dry_run)
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
    """One line per run: its state by the one rule (record, lease, checkpoint, every state Slurm reports for
    its job, its teachers), why, and what the next plain launch does with it."""
    from kdsuite.experiments.grid import load_grid
    from kdsuite.experiments.grid_state import grid_actions
    from kdsuite.experiments.lease import attempts
    from kdsuite.slurm.executors import job_states, read_manifest

    grid = load_grid(args.grid, output=args.output, overrides=args.set, max_runs=args.max_runs)
    jobs = read_manifest(grid.output).get("runs", {})
    slurm = job_states([j["job_id"] for j in jobs.values()])  # raises when Slurm can't be asked
    states = _states(grid, jobs, slurm)
    acts = grid_actions(grid, states)
    counts = collections.Counter()
    for sname, runs in grid.stages.items():
        for r in runs:
            st, act = states[r.hash], acts[r.hash]
            counts[st.state] += 1
            if st.state == "unreadable":
                print(f"{sname:<10} {st.state:<12} {r.label:<48} {st.detail}")
                continue
            hint = next_step(st, act)
            extra = []
            n = len(attempts(r.run_dir))
            if n:
                extra.append(f"attempts {n}")
            job = jobs.get(r.hash)
            if job:
                js = slurm.get(job["job_id"])
                extra.append(f"job {job['job_id']}" + (f" {js['state']}" if js else ""))
                last = _last_line(job["stderr"])
                if last and st.state not in ("finished", "stale"):
                    extra.append(f"log {job['stderr']}: {last}")
            tail = f" [{'; '.join(extra)}]" if extra else ""
            detail = st.detail + (f" — {hint}" if hint else "")
            print(f"{sname:<10} {st.state:<12} {r.label:<48} {detail}{tail}".rstrip())
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def _positive_int(text: str) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def add_commands(sub) -> None:
    g = sub.add_parser("grid", help="plan, launch and follow a grid of runs").add_subparsers(dest="grid_cmd", required=True)
    for name, fn, help_ in (("plan", cmd_plan, "what would run"), ("launch", cmd_launch, "run or submit"),
                            ("status", cmd_status, "state of every run")):
        p = g.add_parser(name, help=help_)
        p.add_argument("grid", help="a shipped grid name (demo, …) or a YAML file")
        p.add_argument("--output", help="override the grid's output folder")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change the grid's defaults, as `train --set` changes a config (axes, per-student, "
                            "per-method and per-run overrides still win); plan, launch and status must be given "
                            "the same --set to name the same runs")
        p.add_argument("--max-runs", type=_positive_int, default=None, metavar="N",
                       help="plan a grid of more than 10,000 runs (the limit that stops a mistyped axis from "
                            "planning millions)")
        if name == "plan":
            p.add_argument("--summary", action="store_true",
                           help="stage totals only (default: also one line per run, seeds collapsed, with the "
                                "settings that differ from the grid's defaults)")
        if name == "launch":
            p.add_argument("--cluster", choices=["local", "debug", "slurm"], default="local")
            p.add_argument("--profile", help="Slurm profile YAML (required with --cluster slurm; see slurm/README.md)")
            p.add_argument("--rerun-failed", action="store_true", help="also resubmit failed runs")
            p.add_argument("--rerun-diverged", action="store_true",
                           help="also rerun diverged runs (their folders move to <output>/.superseded/)")
            p.add_argument("--dry-run", action="store_true",
                           help="print each array's size, resources, dependencies and sbatch lines; submit nothing")
            p.add_argument("--rerun-stale", action="store_true",
                           help="rerun finished runs whose method code (or teacher) changed since they ran")
        p.set_defaults(fn=fn)
