"""The teacher checks of a run, in one place for planning and running.

Role in the flow: a run's teachers are records (``teacher.json`` beside the weights, made by a teacher run's
export or by ``kdsuite teacher import``) or runs an earlier grid stage will train. Both
:func:`kdsuite.experiments.run.resolve_teachers` (when a run starts) and :mod:`kdsuite.experiments.grid`
(when a grid is planned, before anything is submitted) read a record with :func:`teacher_record`, take the
identity fields a config hash covers with :func:`teacher_entry`, ask :func:`teacher_mismatch` whether
the teacher was trained on the run's data set and on the view the run shows it, and :func:`check_teacher_weights`
whether its weights file fits the architecture it declares. Importing this module imports no torch.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.view_rules import DEFAULT_VIEW

TEACHER_META_KEYS = ("arch", "num_classes", "dataset", "sha256")


def teacher_record(ref: str, field: str) -> Dict[str, Any]:
    """The teacher record at ``ref``; a missing, damaged (not JSON, not a mapping, a folder in place of the
    file) or incomplete one is a ConfigError naming ``field`` and the path."""
    from kdsuite.zoo.teachers import META, read_teacher_meta  # the zoo owns the record's file layout

    try:
        meta = read_teacher_meta(ref, field)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{field} = '{ref}': the teacher record {META} is damaged ({e}); "
                          f"re-export the teacher (rerun its run) or restore the file") from None
    except OSError as e:
        raise ConfigError(f"{field} = '{ref}': the teacher record {META} there cannot be read "
                          f"({e.strerror or e}); it must be a JSON file") from None
    missing = [k for k in TEACHER_META_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ConfigError(f"{field} = '{ref}': the teacher record {META} is incomplete (missing "
                          f"{', '.join(missing)}; a record holds {', '.join(TEACHER_META_KEYS)}, …)")
    from kdsuite.core.schema import check_file
    from kdsuite.core.teacher_record import TeacherRecord

    check_file(TeacherRecord, meta, f"{field} = '{ref}': the teacher record {META}")
    return meta


def teacher_entry(ref: str, meta: Mapping[str, Any]) -> Dict[str, Any]:
    """The fields of a config's ``teachers[i]`` that a record fills (and the config hash covers)."""
    t = {"checkpoint": ref, "arch": meta["arch"], "sha256": meta["sha256"]}
    if meta.get("config_hash"):
        t["config_hash"] = meta["config_hash"]
    return t


def teacher_mismatch(cfg: Mapping[str, Any], who: str, dataset: Optional[str], view: Optional[str]) -> Optional[str]:
    """Why a teacher trained on ``dataset`` / ``view`` (None: not recorded) cannot teach the run ``cfg``, or None.
    ``who`` names the teacher in the message (``teachers[0].checkpoint: the teacher``, ``teacher 'wrn'``)."""
    run_ds = cfg["dataset"]["name"]
    if dataset not in (None, run_ds):
        return f"{who} was trained on dataset {dataset!r} but this run uses {run_ds!r}"
    default = DEFAULT_VIEW.get(run_ds)
    shown = (cfg["dataset"].get("views") or {}).get("teacher") or default
    trained = view or default
    if trained != shown:
        return (f"{who} was trained on view {trained!r} but this run shows its teachers view {shown!r} "
                f"(dataset.views.teacher); a teacher is used on the view it was trained on")
    return None


def check_teacher_weights(ref: str, meta: Mapping[str, Any], field: str) -> None:
    """Refuse the record at ``ref`` (a :class:`ConfigError` naming ``field``, the folder, the file and the first
    tensor that differs) unless its weights file is a whole safetensors file whose tensors fit the architecture
    its ``meta`` declares; reads the file's header only, builds the model on torch's meta device (this imports
    torch). A record of a deployed student is left to the run's refusal."""
    from kdsuite.zoo.teacher_weights import check_weights
    from kdsuite.zoo.teachers import WEIGHTS, teacher_folder

    if meta.get("deployed_by"):
        return
    path = teacher_folder(ref) / WEIGHTS
    if not path.is_file():
        raise ConfigError(f"{field} = '{ref}': the weights file {WEIGHTS} of the teacher record is missing")
    check_weights(str(path), meta, f"{field} = '{ref}'")
