"""The lease on a run folder: at most one process trains a run at a time.

:func:`kdsuite.experiments.run.run` takes an exclusive ``flock`` on ``<run_dir>/lease.lock`` before it
writes anything and holds it until the run returns; the kernel releases it when the process dies
(SIGKILL, node failure), so a stale lease never blocks a relaunch. The file says who holds it (Slurm
job id, host, pid, start) and a heartbeat refreshed every :data:`HEARTBEAT_S` seconds; every
acquisition is appended to ``lease.log`` (the run's attempts). A second process for the same run gets
:class:`RunBusy` at once, naming the holder. On shared file systems the lock needs working POSIX
locks (Linux maps flock to them on NFS; Lustre needs the ``flock`` mount option).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

LOCK = "lease.lock"
LOG = "lease.log"
HEARTBEAT_S = 30.0


class RunBusy(RuntimeError):
    """Another process holds the run's lease (the message names it)."""


def _holder() -> Dict[str, Any]:
    return {"slurm_job_id": os.environ.get("SLURM_ARRAY_JOB_ID") and
            f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" or os.environ.get("SLURM_JOB_ID"),
            "host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def read_holder(run_dir: os.PathLike) -> Dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / LOCK).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def describe(info: Dict[str, Any]) -> str:
    job = f"Slurm job {info['slurm_job_id']}, " if info.get("slurm_job_id") else ""
    return (f"{job}host {info.get('host', '?')}, pid {info.get('pid', '?')}, since {info.get('since', '?')}, "
            f"heartbeat {info.get('heartbeat', '?')}")


def is_held(run_dir: os.PathLike) -> bool:
    """Whether a live process holds the run's lease (a probe: takes and drops the lock when free)."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def attempts(run_dir: os.PathLike) -> List[Dict[str, Any]]:
    """Every acquisition of the run's lease, oldest first."""
    p = Path(run_dir) / LOG
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class Lease:
    """``with Lease(run_dir):`` — held for the block; raises :class:`RunBusy` when another process has it."""

    def __init__(self, run_dir: os.PathLike):
        self.run_dir = Path(run_dir)
        self.fd: Optional[int] = None
        self.info: Dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Lease":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunBusy(f"run {self.run_dir} is already being trained ({describe(read_holder(self.run_dir))}); "
                          f"this process leaves it alone") from None
        self.fd = fd
        self.info = _holder()
        self._write()
        with open(self.run_dir / LOG, "a") as fh:
            fh.write(json.dumps(self.info, sort_keys=True) + "\n")
        self._thread = threading.Thread(target=self._beat, name="kdsuite-lease", daemon=True)
        self._thread.start()
        return self

    def _write(self) -> None:
        self.info["heartbeat"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        data = (json.dumps(self.info, sort_keys=True) + "\n").encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.fd is not None:
            os.close(self.fd)  # releases the lock; the file stays (its content says who held it last)
            self.fd = None
