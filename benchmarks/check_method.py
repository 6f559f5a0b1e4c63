"""`kdsuite check-method NAME` as a user runs it: whole-process wall seconds per registered method, first
with an empty teacher cache (the tiny digits teachers are trained), then with it filled. Issue 26's targets
are under 90 s the first time and under 60 s once the teachers are cached, on 2 cores.

    python benchmarks/check_method.py [--methods kd dfad ...] [--reps 1]

Each method runs in its own process (the CLI's own start-up, plugin discovery and imports included);
the first-time figure is taken once, on ``kd`` (which needs the teachers), with ``KDSUITE_CACHE`` pointed at a new folder.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write

from kdsuite.methods.registry import ORIGINS, list_methods


def _kdsuite() -> str:
    here = Path(sys.executable).parent / "kdsuite"
    return str(here) if here.exists() else "kdsuite"


def _one(name: str, cache: Path) -> dict:
    env = dict(os.environ, KDSUITE_CACHE=str(cache))
    t0 = time.perf_counter()
    proc = subprocess.run([_kdsuite(), "check-method", name], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "passed": proc.returncode == 0,
            "last_line": (proc.stdout.strip().splitlines() or [""])[-1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="*", help="default: every built-in method")
    ap.add_argument("--reps", type=int, default=1, help="cached runs per method (the median is reported)")
    args = ap.parse_args()
    names = args.methods or [m.name for m in list_methods() if ORIGINS.get(m.name) == "built-in"]
    cache = Path(tempfile.mkdtemp(prefix="kdsuite-check-cache-"))
    try:
        # the first method that needs the tiny teachers pays for training them
        lead = "kd" if "kd" in names else names[0]
        first = dict(_one(lead, cache), method=lead)
        print(f"first time ({lead}, empty cache): {first['wall_s']} s", flush=True)
        cached = {}
        for name in names:
            runs = [_one(name, cache) for _ in range(args.reps)]
            cached[name] = {"median_wall_s": statistics.median(r["wall_s"] for r in runs),
                            "passed": all(r["passed"] for r in runs), "last_line": runs[-1]["last_line"]}
            print(f"{name:24s} {cached[name]['median_wall_s']:7.2f} s  {runs[-1]['last_line']}", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    slowest = max(cached, key=lambda n: cached[n]["median_wall_s"])
    write("check_method_cpu", {"first_time": first, "cached": cached,
                               "slowest_cached": {"method": slowest, **cached[slowest]}})


if __name__ == "__main__":
    main()
