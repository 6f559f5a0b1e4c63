"""Atomic file writes shared by checkpoints (trainer), teacher weights (zoo) and run records
(analysis): write to a temporary file in the same folder, fsync, then ``os.replace``. A reader
sees either the old file or the new one, never half of one; a crash never erases a finished file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def _atomic(path: os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: os.PathLike, data: bytes) -> Path:
    return _atomic(path, lambda fh: fh.write(data))


def atomic_write_text(path: os.PathLike, text: str) -> Path:
    return _atomic(path, lambda fh: fh.write(text), mode="w")


def atomic_write_json(path: os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: os.PathLike) -> Path:
    return _atomic(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: os.PathLike) -> Any:
    """Checkpoints hold only tensors and plain containers, so the safe loader suffices."""
    return torch.load(path, map_location="cpu", weights_only=True)
