"""The ``kdsuite`` command line.

    kdsuite methods                      every registered method, grouped by survey category
    kdsuite models [PATTERN]             model names (timm + the cifar_* KD family)
    kdsuite train CONFIG.yaml [--set k=v ...]
    kdsuite train-teacher --arch A [--dataset D] [--epochs N] [--set k=v ...]
    kdsuite grid plan|launch|status GRID [...]
    kdsuite table --source runs/DIR [...]
    kdsuite demo                         the main job: a small taxonomy grid on digits + its table
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import List, Optional

from experiments.interrupts import RunInterrupted
from experiments.lease import RunBusy
from methods.hparams import ConfigError


def cmd_methods(args) -> int:
    from methods.registry import CATEGORIES, methods_by_category

    for cat, methods in methods_by_category().items():
        if not methods:
            continue
        c = CATEGORIES[cat]
        print(f"{cat} — {c.title} ({c.survey_section})")
        for m in methods:
            hp = ", ".join(f"{k}={v.default}" for k, v in m.hparams.items())
            print(f"  {m.name:<14} [{m.scheme}] {m.paper}")
            if args.verbose:
                print(f"  {'':<14} {m.equation}")
                print(f"  {'':<14} hparams: {hp or '-'}")
    return 0


def cmd_models(args) -> int:
    import zoo

    for name in zoo.list_models(args.pattern):
        disp = zoo.display_name(name)
        print(name if disp == name else f"{name:<24} ({disp})")
    return 0


def _load_cfg(path: Optional[str], sets: List[str]):
    from experiments.config import apply_overrides, load_yaml

    cfg = load_yaml(path) if path else {}
    return apply_overrides(cfg, sets or [])


def cmd_train(args) -> int:
    from experiments.run import run

    rec = run(_load_cfg(args.config, args.set))
    m = rec.get("metrics", {})
    print(f"{rec['run_dir']}: {rec['status']} — top-1 last {m.get('last_top1', float('nan')):.2f}, "
          f"best {m.get('best_top1', float('nan')):.2f}")
    return 0


def cmd_train_teacher(args) -> int:
    from experiments.run import run

    cfg = _load_cfg(args.config, args.set)
    if args.arch:
        cfg["student"] = {"arch": args.arch, "kwargs": {}}
    if args.dataset:
        cfg.setdefault("dataset", {})["name"] = args.dataset
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    cfg["method"] = {"name": "vanilla", "hparams": (cfg.get("method") or {}).get("hparams", {})}
    cfg["export_teacher"] = True
    cfg.setdefault("output", {}).setdefault("root", "runs/teachers")
    rec = run(cfg)
    print(f"teacher {rec['student']} on {rec['dataset']}: top-1 {rec['metrics']['last_top1']:.2f} — "
          f"use `teachers: [{{checkpoint: {rec['run_dir']}}}]` in a student config")
    return 0


def cmd_demo(args) -> int:
    from analysis.cli_table import render_table
    from analysis.records import load_records
    from experiments.grid import load_grid
    from slurm.executors import run_in_process

    t0 = time.time()
    grid = load_grid("demo", output=args.output)
    n = len(grid.all_runs())
    print(f"kdsuite demo: grid '{grid.name}' — {n} runs in {len(grid.stages)} stages, output {grid.spec.get('output')}")
    counts = run_in_process(grid)
    records = load_records(grid.spec.get("output"))
    print()
    print(render_table(records, "methods", "md", "last"))
    print(render_table(records, "categories", "md", "last"))
    print(f"\n{counts['finished']} runs trained, {counts['skipped']} reused, {counts['failed']} failed; "
          f"wall time {time.time() - t0:.0f}s")
    return 1 if counts["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdsuite", description="Knowledge-distillation experiment suite "
                                "(taxonomy of Gou et al. 2021)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("methods", help="list registered methods by survey category")
    s.add_argument("-v", "--verbose", action="store_true", help="also show equations and hyper-parameters")
    s.set_defaults(fn=cmd_methods)
    s = sub.add_parser("models", help="list model names")
    s.add_argument("pattern", nargs="?", default="cifar_*")
    s.set_defaults(fn=cmd_models)
    s = sub.add_parser("train", help="run one config")
    s.add_argument("config", nargs="?")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(fn=cmd_train)
    s = sub.add_parser("train-teacher", help="train and store a teacher (safetensors + metadata)")
    s.add_argument("config", nargs="?")
    s.add_argument("--arch")
    s.add_argument("--dataset")
    s.add_argument("--epochs", type=int)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(fn=cmd_train_teacher)
    s = sub.add_parser("demo", help="the main job on the embedded digits data")
    s.add_argument("--output", default="runs/demo")
    s.set_defaults(fn=cmd_demo)
    from analysis import cli_table
    from experiments import cli_grid

    cli_grid.add_commands(sub)
    cli_table.add_commands(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"kdsuite: error: {e}", file=sys.stderr)
        return 2
    except RunBusy as e:
        print(f"kdsuite: {e}", file=sys.stderr)
        return 3
    except (KeyboardInterrupt, RunInterrupted) as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"kdsuite: stopped by {signal.Signals(signum).name}; a run in progress is recorded as interrupted "
              f"and resumes from its last epoch checkpoint when the same command is run again", file=sys.stderr)
        return 128 + int(signum)


if __name__ == "__main__":
    sys.exit(main())
