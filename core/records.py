"""Run records: one JSON file per run, the suite's source of truth, in one typed schema.

Role in the flow: the run entry point writes ``<run_dir>/record.json`` when a run starts
(``status: running``) and when it ends (``finished``, ``diverged``, ``failed`` or ``interrupted``);
grids, tables and plots read them back. :class:`RunRecord` is the schema: every write and every read
goes through :func:`write_record` / :func:`load_record` here. Writes are atomic, and a failed or
restarted run never overwrites the record of a finished one. A record that cannot be read (truncated,
not JSON, not a record) raises :class:`RecordError` naming its path; :func:`scan_records` collects
those instead of dropping them, so every caller can list them.

A record holds: the resolved config and its hash (the run's identity), the seed, the method's
variant (its non-default hyper-parameters), the data's identity (name + content fingerprint), the
method's code identity (plugin file sha256 + package version), the git commit, library versions,
host, the method's category / scheme / paper, the student and teacher architectures, the metrics
(best/last top-1 and top-5, teacher accuracy, student parameters, wall time, images/s, per-peer /
per-exit / per-stage results), the per-epoch history, and for a diverged run where it diverged.
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
from typing import Any, Dict, Iterator, List, Literal, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kdsuite.core.fileio import atomic_write_json
from kdsuite.core.errors import ConfigError

RECORD = "record.json"
SCHEMA = 2
STATUSES = ("running", "finished", "diverged", "failed", "interrupted")
# folders whose records are not part of a grid's results (stale runs moved aside by --rerun-stale)
ARCHIVE = ".superseded"
_LIBS = ("kdsuite", "torch", "torchvision", "timm", "numpy", "wandb", "pandas", "submitit", "scikit-learn", "safetensors")


# metrics tables and plots compute with: a record whose value is not a number is unreadable, not a crash
NUMERIC_METRICS = ("last_top1", "last_top5", "best_top1", "best_top5", "best_test_top1", "best_val_top1",
                   "teacher_top1", "teacher_record_top1", "student_params", "wall_time_s", "train_time_s",
                   "images_per_s")
LISTED_METRICS = ("teacher_top1", "teacher_record_top1")  # one per teacher


def _number_or_numbers(v: Any, listed: bool) -> bool:
    if isinstance(v, list) and listed:
        return all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in v)
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


class RecordError(ConfigError):
    """A ``record.json`` that cannot be read as a run record; the message names the file."""

    def __init__(self, path: os.PathLike, reason: str, remedy: Optional[str] = None):
        self.path, self.reason = Path(path), reason
        remedy = remedy or "move it aside or delete it — the run is then treated as not started"
        super().__init__(f"{path}: unreadable run record ({reason}); {remedy}")


def _schema_of(path: os.PathLike, data: Dict[str, Any]) -> int:
    """The record's schema version (a record without one is schema 1); a newer one than this kdsuite
    reads is refused by name, since guessing at its fields could misreport the run."""
    version = data.get("schema", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RecordError(path, f"schema = {version!r} is not a schema version; expected an integer 1 to {SCHEMA}")
    if version > SCHEMA:
        raise RecordError(path, f"schema {version} was written by a newer kdsuite; this one reads schemas 1 to "
                                f"{SCHEMA}", remedy="upgrade kdsuite to read it (provenance.versions.kdsuite in the file "
                                "names the one that wrote it); it is left as it is and its run is not retrained")
    return version


def _migrate(data: Dict[str, Any], version: int) -> Dict[str, Any]:
    """An older record in today's schema; written back as today's schema when it is next written."""
    if version == 1 and data.get("status") == "stopped":
        data = dict(data, status="interrupted")  # schema 1 wrote the trainer's word
    return data


class DataIdentity(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    fingerprint: Optional[str] = None
    basis: Optional[str] = None


class CodeIdentity(BaseModel):
    model_config = ConfigDict(extra="allow")
    module: Optional[str] = None
    file: Optional[str] = None
    file_sha256: Optional[str] = None
    package: Optional[str] = None
    version: Optional[str] = None


class RunRecord(BaseModel):
    """The schema of ``record.json``. Unknown fields are kept (``extra="allow"``): tools that add
    fields to a record do not lose them when it is rewritten."""
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_version: int = Field(SCHEMA, alias="schema")
    status: Literal["running", "finished", "diverged", "failed", "interrupted"]
    run_id: Optional[str] = None
    config_hash: Optional[str] = None
    config: Dict[str, Any] = Field(default_factory=dict)
    seed: Optional[int] = None
    name: Optional[str] = None
    method: Optional[str] = None
    variant: Dict[str, Any] = Field(default_factory=dict)
    variant_label: str = ""
    category: Optional[str] = None
    category_title: Optional[str] = None
    scheme: Optional[str] = None
    paper: Optional[str] = None
    dataset: Optional[str] = None
    data: Optional[DataIdentity] = None
    code: Optional[CodeIdentity] = None
    student: Optional[str] = None
    student_name: Optional[str] = None
    teachers: List[str] = Field(default_factory=list)
    teacher_names: List[str] = Field(default_factory=list)
    pair: Optional[str] = None
    run_dir: Optional[str] = None
    started: Optional[str] = None
    finished: Optional[str] = None
    updated: Optional[str] = None
    provenance: Dict[str, Any] = Field(default_factory=dict)
    effective: Dict[str, Any] = Field(default_factory=dict)
    metrics: Dict[str, Any] = Field(default_factory=dict)
    history: List[Dict[str, Any]] = Field(default_factory=list)
    stage_results: Dict[str, Any] = Field(default_factory=dict)
    divergence: Optional[Dict[str, Any]] = None  # {"stage", "epoch", "step", "what"} of a diverged run
    error: Optional[str] = None
    traceback: Optional[str] = None
    teacher_export: Optional[Dict[str, Any]] = None
    search: Optional[Dict[str, Any]] = None  # a searched student: {chosen, proxy, ranking, candidates, stage}
    # what the method reads of each model: family, taps (kind, grid, prefix tokens, depth, token → map step),
    # stage pairs and their rule (docs/heterogeneous.md)
    features: Dict[str, Any] = Field(default_factory=dict)
    # each distillation term's ratio to CE at the run's first step: {term: {ratio, band: [lo, hi], inside}}
    # (``stage/term`` for several stages; empty where nothing was compared, and in older records)
    scale: Dict[str, Any] = Field(default_factory=dict)

    @field_validator("metrics")
    @classmethod
    def _numeric_metrics(cls, v: Dict[str, Any]) -> Dict[str, Any]:
        for key, value in v.items():
            if key in NUMERIC_METRICS and not _number_or_numbers(value, listed=key in LISTED_METRICS):
                raise ValueError(f"metrics.{key} = {value!r}: expected a number (or null)"
                                 + (" or a list of numbers" if key in LISTED_METRICS else ""))
        return v

    @field_validator("status", mode="before")
    @classmethod
    def _legacy_status(cls, v):
        return "interrupted" if v == "stopped" else v  # schema 1 wrote the trainer's "stopped"

    def to_dict(self) -> Dict[str, Any]:
        return self.model_dump(by_alias=True)


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


def load_record(path: os.PathLike) -> RunRecord:
    """The record in file ``path``; :class:`RecordError` (naming the file) when it cannot be read."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise RecordError(path, f"not valid JSON, truncated? {e.msg} at line {e.lineno} column {e.colno}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(path, f"{type(e).__name__}: {e}") from None
    if not isinstance(data, dict):
        raise RecordError(path, f"holds a {type(data).__name__}, not a record")
    data = _migrate(data, _schema_of(path, data))
    try:
        return RunRecord.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        if first["type"] == "value_error":  # our own validators say field and value themselves
            raise RecordError(path, str(first["ctx"]["error"])) from None
        where = ".".join(str(x) for x in first["loc"]) or "record"
        raise RecordError(path, f"{where}: {first['msg']}") from None


def read_record(run_dir: os.PathLike) -> Optional[Dict[str, Any]]:
    """The record of ``run_dir`` as a dict (every schema field present), None when there is none."""
    p = record_path(run_dir)
    if not p.exists():
        return None
    return load_record(p).to_dict()


def write_record(run_dir: os.PathLike, record: Union[RunRecord, Dict[str, Any]]) -> Path:
    """Atomically write ``record`` (checked against :class:`RunRecord`); refuses to replace a finished
    record with an unfinished one."""
    old = read_record(run_dir)
    rec = record if isinstance(record, RunRecord) else RunRecord.model_validate(dict(record))
    if old is not None and old.get("status") == "finished" and rec.status != "finished":
        raise RuntimeError(f"{record_path(run_dir)} holds a finished run; refusing to overwrite it with "
                           f"status '{rec.status}'")
    out = rec.to_dict()
    out.update(schema=SCHEMA, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return atomic_write_json(record_path(run_dir), out)


def _archived(p: Path, root: Path) -> bool:
    return ARCHIVE in p.relative_to(root).parts


def scan_records(root: os.PathLike, status: Optional[str] = "finished") -> Tuple[List[Dict[str, Any]], List[RecordError]]:
    """Every readable record under ``root`` (recursively; runs moved aside as superseded are left out),
    optionally only those with ``status`` (one status or a tuple), and every unreadable one."""
    root = Path(root)
    wanted = (status,) if isinstance(status, str) else status
    out, bad = [], []
    for p in sorted(root.rglob(RECORD)):
        if _archived(p, root):
            continue
        try:
            rec = load_record(p).to_dict()
        except RecordError as e:
            bad.append(e)
            continue
        if wanted is None or rec.get("status") in wanted:
            rec["run_dir"] = rec.get("run_dir") or str(p.parent)
            rec["record_path"] = str(p)
            out.append(rec)
    return out, bad


def iter_records(root: os.PathLike, status: Optional[str] = "finished") -> Iterator[Dict[str, Any]]:
    """Every record under ``root``; an unreadable one raises :class:`RecordError` (use
    :func:`scan_records` to collect them instead)."""
    recs, bad = scan_records(root, status)
    if bad:
        raise bad[0]
    yield from recs


def load_records(root: os.PathLike, status: Optional[str] = "finished") -> List[Dict[str, Any]]:
    return list(iter_records(root, status))
