"""The ``kdsuite`` command line.

    kdsuite methods                      every registered method, grouped by survey category
    kdsuite models [PATTERN]             model names (timm + the cifar_* KD family)
    kdsuite train CONFIG.yaml [--set k=v ...]
    kdsuite train-teacher --arch A [--dataset D] [--epochs N] [--set k=v ...]
    kdsuite teacher import --format F FILE --arch A [--num-classes N] [--accuracy X] [--out DIR]
    kdsuite grid plan|launch|status GRID [...]
    kdsuite table --source runs/DIR [...]
    kdsuite demo                         the main job: a small taxonomy grid on digits + its table
    kdsuite check-method NAME            the plugin contract on any registered method (built-in or installed)
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import List, Optional

from kdsuite.experiments.interrupts import RunInterrupted
from kdsuite.experiments.lease import RunBusy
from kdsuite.core.errors import ConfigError, KdsuiteError, original_message


def cmd_methods(args) -> int:
    from kdsuite.methods.registry import BROKEN, CATEGORIES, ORIGINS, methods_by_category, methods_markdown

    if args.format == "md":
        print(methods_markdown(origin=None if args.all else "built-in"), end="")
        return 0
    for cat, methods in methods_by_category().items():
        if not methods:
            continue
        c = CATEGORIES[cat]
        print(f"{cat} — {c.title} ({c.survey_section})")
        for m in methods:
            hp = ", ".join(f"{k}={v.default}" for k, v in m.hparams.items())
            origin = "" if ORIGINS.get(m.name, "built-in") == "built-in" else f"  — from {ORIGINS[m.name]}"
            print(f"  {m.name:<14} [{m.scheme}] {m.paper}{origin}")
            if args.verbose:
                print(f"  {'':<14} {m.equation}")
                print(f"  {'':<14} hparams: {hp or '-'}")
    for ep, why in BROKEN.items():
        print(f"broken plugin (skipped): {ep}: {why}")
    return 0


def cmd_models(args) -> int:
    from kdsuite import zoo

    names = zoo.list_models(args.pattern)
    if not names:
        raise ConfigError(f"models: no model name matches {args.pattern!r}; patterns are shell-style "
                          f"(cifar_*, *resnet*, resnet34.tv_in1k); `kdsuite models '*'` lists them all")
    for name in names:
        disp = zoo.display_name(name)
        print(name if disp == name else f"{name:<24} ({disp})")
    return 0


def _load_cfg(path: Optional[str], sets: List[str]):
    from kdsuite.experiments.config import apply_overrides, load_yaml

    cfg = load_yaml(path) if path else {}
    return apply_overrides(cfg, sets or [])


def cmd_train(args) -> int:
    from kdsuite.experiments.run import run

    rec = run(_load_cfg(args.config, args.set))
    m = rec.get("metrics", {})
    print(f"{rec['run_dir']}: {rec['status']} — top-1 last {m.get('last_top1', float('nan')):.2f}, "
          f"best {m.get('best_top1', float('nan')):.2f}")
    return 0


def cmd_train_teacher(args) -> int:
    from kdsuite.experiments.run import run

    cfg = _load_cfg(args.config, args.set)
    if args.arch:
        cfg["student"] = {"arch": args.arch, "kwargs": {}}
    if args.dataset:
        cfg.setdefault("dataset", {})["name"] = args.dataset
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    method = cfg.get("method")
    cfg["method"] = {"name": "vanilla", "hparams": method.get("hparams", {}) if isinstance(method, dict) else {}}
    cfg["export_teacher"] = True
    cfg.setdefault("output", {}).setdefault("root", "runs/teachers")
    rec = run(cfg)
    print(f"teacher {rec['student']} on {rec['dataset']}: top-1 {rec['metrics']['last_top1']:.2f} — "
          f"use `teachers: [{{checkpoint: {rec['run_dir']}}}]` in a student config")
    return 0


def cmd_teacher_import(args) -> int:
    from kdsuite.zoo.teacher_import import import_teacher

    folder, meta = import_teacher(args.file, args.format, args.arch, num_classes=args.num_classes,
                                  accuracy=args.accuracy, out=args.out, dataset=args.dataset, force=args.force)
    acc = "unknown" if meta["top1"] is None else f"{meta['top1']:.2f} ({meta['top1_source']})"
    print(f"imported {args.format} file {args.file} as a {meta['arch']} teacher ({meta['num_classes']} classes, "
          f"{meta['dataset']}), top-1 {acc}, weights sha256 {meta['sha256'][:12]}… → {folder}")
    print(f"use `teachers: [{{checkpoint: {folder}}}]` in a run, or `teachers: {{KEY: {{checkpoint: {folder}}}}}` "
          f"in a grid")
    return 0


def cmd_demo(args) -> int:
    from kdsuite.analysis.cli_table import render_table
    from kdsuite.core.records import load_records
    from kdsuite.experiments.grid import load_grid
    from kdsuite.slurm.executors import run_in_process

    t0 = time.time()
    grid = load_grid("demo", output=args.output)
    n = len(grid.all_runs())
    print(f"kdsuite demo: grid '{grid.name}' — {n} runs in {len(grid.stages)} stages, output {grid.spec.get('output')}")
    counts = run_in_process(grid)
    records = load_records(grid.spec.get("output"), status=("finished", "diverged"))
    print()
    print(render_table(records, "methods", "md", "last"))
    print(render_table(records, "categories", "md", "last"))
    if any(r.get("search") for r in records):
        print(render_table(records, "search", "md", "last"))
    if any("acc_matrix" in (r.get("metrics") or {}) for r in records):
        print(render_table(records, "lifelong", "md", "last"))
    print(f"\n{counts['finished']} runs trained, {counts['skipped']} reused, {counts['failed']} failed; "
          f"wall time {time.time() - t0:.0f}s")
    return 1 if counts["failed"] else 0


def cmd_check_method(args) -> int:
    import tempfile

    from kdsuite import testing
    from kdsuite.methods.registry import BROKEN, ORIGINS, get_method

    try:
        cls = get_method(args.name)
    except KeyError as e:
        broken = "".join(f"\n  broken plugin (skipped): {k}: {v}" for k, v in BROKEN.items())
        raise ConfigError(f"check-method: {e.args[0]}{broken}") from None
    print(f"{cls.name} [{cls.category}, {cls.scheme}] from {ORIGINS.get(cls.name, 'built-in')}")
    t0 = time.time()
    teachers = testing.digits_teachers(args.cache)
    print(f"  tiny digits teachers ready ({time.time() - t0:.0f}s; cached in {args.cache or testing.default_cache()})")
    with tempfile.TemporaryDirectory(prefix="kdsuite-check-") as tmp:
        ok = testing.check_method(cls.name, tmp, teachers)
    print(f"{cls.name}: contract {'passed' if ok else 'FAILED'} in {time.time() - t0:.0f}s")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdsuite", description="Knowledge-distillation experiment suite "
                                "(taxonomy of Gou et al. 2021)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("methods", help="list registered methods by survey category")
    s.add_argument("-v", "--verbose", action="store_true", help="also show equations and hyper-parameters")
    s.add_argument("--format", choices=("text", "md"), default="text",
                   help="md: the docs' method table (docs/methods.md), generated from the registry")
    s.add_argument("--all", action="store_true", help="with --format md: installed plugins too, not only built-in")
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
    s = sub.add_parser("teacher", help="teacher records: import released teacher weights")
    tsub = s.add_subparsers(dest="teacher_cmd", required=True)
    t = tsub.add_parser("import", help="convert a RepDistiller / mdistiller / timm / torchvision file into a "
                        "teacher record (safetensors + teacher.json); loads tensors only, never pickled objects")
    t.add_argument("file", help="the released file, e.g. save/models/resnet32x4_vanilla/ckpt_epoch_240.pth")
    # the formats are kdsuite.zoo.teacher_import.FORMATS (a test keeps the two equal); named here, not imported,
    # so that building the parser (--help) imports no torch; import_teacher refuses any other name (exit 2)
    t.add_argument("--format", required=True, metavar="{repdistiller,mdistiller,timm,torchvision}",
                   help="the file's origin")
    t.add_argument("--arch", required=True, help="model name (cifar_resnet32x4, or the literature's resnet32x4; "
                   "timm names such as resnet34.tv_in1k)")
    t.add_argument("--num-classes", type=int, help="default: 100 for CIFAR-100 formats, 1000 for ImageNet ones")
    t.add_argument("--accuracy", type=float, help="declared top-1 (%%) to record; default: the file's own "
                   "(RepDistiller's 'accuracy' / 'best_acc'), if any")
    t.add_argument("--dataset", help="dataset name runs will use it on (default: cifar100 for repdistiller/"
                   "mdistiller, imagefolder for timm/torchvision)")
    t.add_argument("--out", help="record folder (default: runs/teachers/imported-<arch>-<sha256 prefix>)")
    t.add_argument("--force", action="store_true", help="replace an existing record at --out; the old one is "
                   "moved to <parent>/.superseded/ first, never overwritten")
    t.set_defaults(fn=cmd_teacher_import)
    s = sub.add_parser("demo", help="the main job on the embedded digits data")
    s.add_argument("--output", default="runs/demo")
    s.set_defaults(fn=cmd_demo)
    s = sub.add_parser("check-method", help="run the plugin contract on one registered method")
    s.add_argument("name")
    s.add_argument("--cache", default=None, help="folder of the cached tiny teachers "
                   "(default $KDSUITE_CACHE/teachers or ~/.cache/kdsuite/teachers)")
    s.set_defaults(fn=cmd_check_method)
    from kdsuite.analysis import cli_table
    from kdsuite import cli_grid

    cli_grid.add_commands(sub)
    cli_table.add_commands(sub)
    return p


def _save_traceback(argv: Optional[List[str]]) -> Optional[str]:
    """The current exception's full traceback, written to a file of its own; its path (None if unwritable)."""
    import os
    import tempfile
    import traceback

    text = f"kdsuite {' '.join(argv if argv is not None else sys.argv[1:])}\n\n{traceback.format_exc()}"
    for folder in (os.environ.get("KDSUITE_CRASH_DIR"), os.path.join(os.path.expanduser("~"), ".cache", "kdsuite",
                                                                       "crashes"), tempfile.gettempdir()):
        if not folder:
            continue
        try:
            os.makedirs(folder, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix=time.strftime("crash-%Y%m%d-%H%M%S-"), suffix=".txt", dir=folder)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:400] + "…"


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except RunBusy as e:
        print(f"kdsuite: {e}", file=sys.stderr)
        return 3
    except KdsuiteError as e:  # one raised in a DataLoader worker carries the worker's traceback: not shown
        print(f"kdsuite: error: {original_message(str(e))}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, RunInterrupted) as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"kdsuite: stopped by {signal.Signals(signum).name}; a run in progress is recorded as interrupted "
              f"and resumes from its last checkpoint when the same command is run again", file=sys.stderr)
        return 128 + int(signum)
    except OSError as e:
        if e.filename is None:  # an OSError about no file: not the user's input, so the last resort below
            return _unexpected(e, argv)
        where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        print(f"kdsuite: error: {where}: {e.strerror or _one_line(e)} (while running `kdsuite {args.cmd}`)",
              file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 — the last resort: one line, the traceback kept in a file
        return _unexpected(e, argv)


def _unexpected(e: BaseException, argv: Optional[List[str]]) -> int:
    saved = _save_traceback(argv)
    where = f"; full traceback in {saved}" if saved else ""
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    print(f"kdsuite: internal error ({type(e).__name__}: {_one_line(e)}) in `kdsuite {cmd}`{where}. "
          f"This is a bug in kdsuite, not in your input: please report it with that file", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
