"""Run records: one JSON file per run, the suite's source of truth.

Role in the flow: the run entry point writes ``<run_dir>/record.json`` when a run starts
(``status: running``), finishes (``finished``) or fails (``failed``, with the error); tables and
plots read them back. Writes are atomic, and a failed or restarted run never overwrites the
record of a finished one.

A record holds: the resolved config and its hash (the run's identity), the seed, the git commit,
library versions, host, the method's category / scheme / paper, the student and teacher
architectures, the metrics (best/last top-1 and top-5, teacher accuracy, student parameters, wall
time, images/s, per-peer / per-exit / per-stage results) and the per-epoch history.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from kdsuite.core.fileio import atomic_write_json

RECORD = "record.json"
SCHEMA = 1
_LIBS = ("torch", "torchvision", "timm", "numpy", "wandb", "pandas", "submitit", "scikit-learn", "safetensors")


def git_commit() -> Dict[str, Any]:
    """Commit of the kdsuite checkout this code runs from (and whether it had local changes)."""
    here = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
        return {"commit": sha or None, "dirty": dirty if sha else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def library_versions() -> Dict[str, Optional[str]]:
    from importlib.metadata import PackageNotFoundError, version

    out: Dict[str, Optional[str]] = {"python": sys.version.split()[0]}
    for lib in _LIBS:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = None
    return out


def provenance() -> Dict[str, Any]:
    return {"git": git_commit(), "versions": library_versions(), "host": socket.gethostname(),
            "platform": platform.platform(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def record_path(run_dir: os.PathLike) -> Path:
    return Path(run_dir) / RECORD


def read_record(run_dir: os.PathLike) -> Optional[Dict[str, Any]]:
    p = record_path(run_dir)
    if not p.exists():
        return None
    return json.loads(p.read_text())


def write_record(run_dir: os.PathLike, record: Dict[str, Any]) -> Path:
    """Atomically write ``record``; refuses to replace a finished record with an unfinished one."""
    old = read_record(run_dir)
    if old is not None and old.get("status") == "finished" and record.get("status") != "finished":
        raise RuntimeError(f"{record_path(run_dir)} holds a finished run; refusing to overwrite it with "
                           f"status '{record.get('status')}'")
    record = dict(record, schema=SCHEMA, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return atomic_write_json(record_path(run_dir), record)


def iter_records(root: os.PathLike, status: Optional[str] = "finished") -> Iterator[Dict[str, Any]]:
    """Every record under ``root`` (recursively), optionally only those with ``status``."""
    for p in sorted(Path(root).rglob(RECORD)):
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if status is None or rec.get("status") == status:
            rec.setdefault("run_dir", str(p.parent))
            yield rec


def load_records(root: os.PathLike, status: Optional[str] = "finished") -> List[Dict[str, Any]]:
    return list(iter_records(root, status))
