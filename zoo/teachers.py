"""Teacher checkpoints: trained weights stored with safetensors plus a JSON metadata record.

Role in the flow: ``kdsuite train-teacher`` (a ``vanilla`` run with ``export_teacher``) calls
:func:`save_teacher`; a student run names its teacher by that folder (or its ``teacher.json``) and
:func:`load_teacher` rebuilds the model, checks the weights' hash and refuses any mismatch with
what the run expects (architecture, number of classes, dataset, input channels).

Files in a teacher folder: ``teacher.safetensors`` (the state dict) and ``teacher.json``:
``{"arch", "num_classes", "in_chans", "model_kwargs", "dataset", "image_size", "top1", "top5",
"sha256", "config_hash", "created"}``.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch.nn as nn
from safetensors.torch import load_file

from kdsuite.core.fileio import atomic_write_bytes, atomic_write_json
from kdsuite.core.errors import ConfigError
from kdsuite.core.fileio import file_digest
from kdsuite.zoo.teacher_weights import check_weights

WEIGHTS = "teacher.safetensors"
META = "teacher.json"


def _sha256(path: Path) -> str:
    return file_digest(path)


def save_teacher(model: nn.Module, folder: Path, meta: Dict[str, Any]) -> Dict[str, Any]:
    """Write weights then metadata (both atomically); returns the metadata written."""
    from safetensors.torch import save as st_save

    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = st_save(state)
    meta = dict(meta, sha256=hashlib.sha256(data).hexdigest(), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    from kdsuite.core.schema import check_file
    from kdsuite.core.teacher_record import TeacherRecord

    check_file(TeacherRecord, meta, f"teacher record {folder / META}")  # nothing is written when it is wrong
    atomic_write_bytes(folder / WEIGHTS, data)
    atomic_write_json(folder / META, meta)
    return meta


def teacher_folder(ref: str | Path) -> Path:
    p = Path(ref)
    return p.parent if p.name in (META, WEIGHTS) else p


def read_teacher_meta(ref: str | Path, field: str = "teachers[0].checkpoint") -> Dict[str, Any]:
    folder = teacher_folder(ref)
    meta_path = folder / META
    if not meta_path.exists():
        raise ConfigError(f"{field} = '{ref}': no teacher record ({META}) there; train one with "
                          f"`kdsuite train-teacher`, import released weights with `kdsuite teacher import`, or "
                          f"point at a folder holding {META} and {WEIGHTS}")
    return json.loads(meta_path.read_text())


def check_teacher(meta: Dict[str, Any], field: str, arch: Optional[str] = None, num_classes: Optional[int] = None,
                  dataset: Optional[str] = None, in_chans: Optional[int] = None) -> None:
    """Raise :class:`ConfigError` when the record does not fit what the run expects."""
    checks = [("arch", arch), ("num_classes", num_classes), ("dataset", dataset), ("in_chans", in_chans)]
    for key, want in checks:
        have = meta.get(key)
        if want is not None and have is not None and have != want:
            raise ConfigError(f"{field}: the teacher record has {key} = {have!r} but this run needs "
                              f"{key} = {want!r}")


def load_teacher(ref: str | Path, build, field: str = "teachers[0].checkpoint", **expect) -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild the teacher with ``build(arch, num_classes, in_chans, **model_kwargs)`` and load its
    weights after checking metadata (``expect``: arch / num_classes / dataset / in_chans) and hash."""
    folder = teacher_folder(ref)
    meta = read_teacher_meta(folder, field)
    check_teacher(meta, field, **expect)
    if meta.get("deployed_by"):
        parts = ", ".join(meta.get("inference_parts") or {})
        raise ConfigError(f"{field} = '{ref}': the record holds the deployed student of method "
                          f"'{meta['deployed_by']}' ({parts}), not a plain '{meta['arch']}' network; it cannot "
                          f"be loaded as a teacher")
    wpath = folder / WEIGHTS
    if not wpath.exists():
        raise ConfigError(f"{field} = '{ref}': weights file {WEIGHTS} is missing")
    digest = _sha256(wpath)
    if digest != meta.get("sha256"):
        raise ConfigError(f"{field} = '{ref}': {WEIGHTS} has sha256 {digest[:12]}… but its record says "
                          f"{str(meta.get('sha256'))[:12]}…; the weights were changed or truncated")
    model = build(meta["arch"], meta["num_classes"], meta.get("in_chans", 3), **meta.get("model_kwargs", {}))
    # a damaged file, or tensors of another network: named before loading (load_state_dict would raise on shapes)
    check_weights(str(wpath), meta, f"{field} = '{ref}'", {k: tuple(v.shape) for k, v in model.state_dict().items()})
    model.load_state_dict(load_file(str(wpath)))
    return model, meta
