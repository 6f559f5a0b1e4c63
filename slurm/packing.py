"""Several small runs in one job: each in its own process, all sharing the job's GPU (or CPU cores).

A CIFAR student such as resnet8x4 leaves most of an H100 idle; packing N runs into one job keeps the
device busy (see ``benchmarks/grid_packing.py``). The grid launcher submits :func:`run_packed` with a
group of run configs when a stage sets ``pack: N``. Each run still writes its own record and
checkpoints, so a packed job that is preempted resumes every run from its own last epoch.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional


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


def _child(worker: Callable, cfg: Dict[str, Any], threads: int, conn) -> None:
    """A packed run's process: its summary goes back through ``conn``, then the process ends."""
    try:
        out = worker((cfg, threads))
    except BaseException as e:  # noqa: BLE001 — SystemExit etc.: say so instead of a silent end
        out = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=10)}
    conn.send(out)
    conn.close()


def _died(exitcode: Optional[int]) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"its process was killed by {name} (out of memory? a segfault?) before it returned"
    return f"its process exited with code {exitcode} before it returned"


def run_packed(cfgs: List[Mapping[str, Any]], cpus: Optional[int] = None,
               worker: Callable = _run_one) -> List[Dict[str, Any]]:
    """Run ``cfgs`` concurrently, one spawned process each; returns one summary per config, in order.
    CPU threads are split evenly between the processes (``cpus`` defaults to this job's CPUs). A process
    that dies (killed by the OOM killer, a segfault, SIGKILL) fails its own run at once — ``status:
    failed`` naming the signal; its record, if it had one, stays ``running`` and the run is then
    *interrupted*, resumed by the next launch — and the others run to their end. (``multiprocessing.Pool``
    never returns when one of its workers is killed; ``ProcessPoolExecutor`` breaks every run of the pool.)
    ``worker(cfg, threads)`` is what each process runs (a module-level function; tests swap it)."""
    if not cfgs:
        return []
    if cpus is None:
        cpus = _job_cpus()
    threads = max(1, cpus // len(cfgs))
    if len(cfgs) == 1:
        return [worker((dict(cfgs[0]), threads))]
    ctx = mp.get_context("spawn")
    procs = []
    try:
        for i, c in enumerate(cfgs):
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_child, args=(worker, dict(c), threads, send), name=f"kdsuite-pack-{i}")
            p.start()
            send.close()  # only the child writes: its end closing (exit, death) wakes recv()
            procs.append((p, recv))
        out: List[Dict[str, Any]] = []
        for p, recv in procs:
            try:
                res = recv.recv()
            except EOFError:  # it died without a word
                res = None
            p.join()
            out.append(res if res is not None else {"status": "failed", "error": _died(p.exitcode)})
        return out
    finally:
        for p, recv in procs:
            recv.close()
            if p.is_alive():  # only when this process itself is stopped half-way
                p.terminate()
                p.join()
