"""Several small runs in one job: each in its own process, all sharing the job's GPU (or CPU cores).

A CIFAR student such as resnet8x4 leaves most of an H100 idle; packing N runs into one job keeps the
device busy (see ``benchmarks/grid_packing.py``). The grid launcher submits :func:`run_packed` with a
group of run configs when a stage sets ``pack: N``. Each run still writes its own record and
checkpoints, so a packed job that is preempted resumes every run from its own last epoch.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from typing import Any, Dict, List, Mapping, Optional


def _run_one(args) -> Dict[str, Any]:
    cfg, threads = args
    import torch

    torch.set_num_threads(threads)
    from kdsuite.experiments.lease import RunBusy
    from kdsuite.experiments.run import run

    try:
        rec = run(cfg)
        return {"status": rec["status"], "run_dir": rec["run_dir"], "metrics": rec.get("metrics", {})}
    except RunBusy as e:  # another job trains this run: not a failure, and its record is left alone
        print(f"kdsuite: {e}", flush=True)
        return {"status": "busy", "error": str(e)}
    except Exception as e:  # noqa: BLE001 — one failed run must not take its neighbours down
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=10)}


def _job_cpus() -> int:
    """CPUs of this Slurm task (``SLURM_CPUS_PER_TASK``); outside Slurm, or on clusters without CPU
    binding where the affinity mask shows the whole node, the mask is not what the job was given."""
    try:
        return max(1, int(os.environ["SLURM_CPUS_PER_TASK"]))
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_packed(cfgs: List[Mapping[str, Any]], cpus: Optional[int] = None) -> List[Dict[str, Any]]:
    """Run ``cfgs`` concurrently, one spawned process each; returns one summary per config, in order.
    CPU threads are split evenly between the processes (``cpus`` defaults to this job's CPUs)."""
    if not cfgs:
        return []
    if cpus is None:
        cpus = _job_cpus()
    threads = max(1, cpus // len(cfgs))
    if len(cfgs) == 1:
        return [_run_one((dict(cfgs[0]), threads))]
    with mp.get_context("spawn").Pool(len(cfgs)) as pool:
        return pool.map(_run_one, [(dict(c), threads) for c in cfgs])
