"""Where a run lives: its folder under ``output.root``, named from the method, student, seed and config hash.

Role in the flow: :func:`kdsuite.experiments.run.prepare` (when a run starts) and grid planning
(:mod:`kdsuite.experiments.grid`, before anything is submitted) both place a run with :func:`run_dir_for`,
so a grid's plan, status and the run itself agree on the folder. A folder made before numbers were hashed by
value (``lr: 1e-3`` read as a string) is found again by the hash of its recorded config.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple


def run_dir_for(cfg: Mapping[str, Any], h: str) -> Path:
    """The run folder of the validated config ``cfg`` with hash ``h``: ``<output.root>/<method>-<student>-s<seed>-<hash[:10]>``,
    or the folder an earlier spelling of the same run made (see :func:`_earlier_spelling`)."""
    from kdsuite.experiments.search import student_label  # the zoo's display names (imports torch)

    prefix = f"{cfg['method']['name']}-{student_label(cfg)}-s{cfg['seed']}-"
    folder = Path(cfg["output"]["root"]) / f"{prefix}{h[:10]}"
    if folder.exists():
        return folder
    return _earlier_spelling(folder.parent, prefix, h) or folder


_RESPELLED: Dict[Tuple[str, int], Dict[str, Path]] = {}  # (root, its mtime) -> {new hash: folder}
_QUOTED_SCI = re.compile(r'"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+"')


def _earlier_spelling(root: Path, prefix: str, h: str) -> Optional[Path]:
    """A run folder made before numbers were hashed by value (its config wrote ``lr: 1e-3``, kept as a
    string, and was hashed so): the same run, found by the hash of its recorded config, so it is reused,
    not retrained. One scan of ``root`` per change of its listing (its mtime)."""
    try:
        key = (str(root), root.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _RESPELLED:
        _RESPELLED[key] = _scan_respelled(root)
    found = _RESPELLED[key].get(h)
    return found if found is not None and found.name.startswith(prefix) else None


def _scan_respelled(root: Path) -> Dict[str, Path]:
    import json

    from kdsuite.experiments.config import canonical, config_hash, identity

    out: Dict[str, Path] = {}
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return out
    for cand in folders:
        try:
            text = (cand / "record.json").read_text()
            if not _QUOTED_SCI.search(text):  # the common case: no number written as a string
                continue
            cfg = json.loads(text)["config"]
            ident = identity(cfg)
            if canonical(ident) != ident:
                out.setdefault(config_hash(cfg), cand)
        except Exception:  # noqa: BLE001 — a foreign or damaged folder is simply not a run of this kind
            continue
    return out
