"""``kdsuite table --source runs/DIR``: the comparison table of local run records."""
from __future__ import annotations

import sys
from pathlib import Path

from methods.checkpoint import atomic_write_text
from methods.hparams import ConfigError


def cmd_table(args) -> int:
    from analysis.records import load_records
    from analysis.tables import comparison, runs_frame, to_markdown

    src = Path(args.source)
    if not src.is_dir():
        raise ConfigError(f"--source '{src}' is not a folder of run records")
    records = load_records(src)
    if not records:
        raise ConfigError(f"--source '{src}': no finished run records (record.json) found")
    datasets = sorted({r.get("dataset") for r in records})
    if len(datasets) > 1:
        raise ConfigError(f"--source '{src}' mixes records of datasets {datasets}; tables hold one dataset — "
                          f"point --source at one grid's folder")
    df = runs_frame(records)
    if args.format == "csv":
        text = df.to_csv(index=False)
    else:
        text = to_markdown(comparison(df, f"{args.metric}_top1")) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("table", help="comparison table from run records")
    p.add_argument("--source", required=True, help="folder of run records (e.g. runs/demo)")
    p.add_argument("--metric", choices=["last", "best"], default="last")
    p.add_argument("--format", choices=["md", "csv"], default="md")
    p.add_argument("--out", help="write to this file (atomically) instead of stdout")
    p.set_defaults(fn=cmd_table)
