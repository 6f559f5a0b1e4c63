"""The launch manifest (``<output>/slurm-manifest.json``): every Slurm launch of a grid (time, profile,
arrays with their dependencies) and, per run hash, the job id training it and its log files.

Role in the flow: a launch reads it to find the jobs of earlier launches (their states decide what is
submitted again) and rewrites it atomically after every array it submits; ``kdsuite grid status``
reads it to report each run's job.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from kdsuite.core.errors import ConfigError

MANIFEST = "slurm-manifest.json"


def read_manifest(output: Path) -> Dict[str, Any]:
    import json

    p = Path(output) / MANIFEST
    if not p.exists():
        return {"launches": [], "runs": {}}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"launch manifest '{p}' is damaged ({e}); move it aside to launch afresh (runs with "
                          f"finished records are still skipped)") from None


def _write_manifest(output: Path, manifest: Dict[str, Any]) -> None:
    from kdsuite.core.fileio import atomic_write_json

    atomic_write_json(Path(output) / MANIFEST, manifest)
