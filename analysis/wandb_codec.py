"""The record ↔ W&B run codec: which record fields a run carries where, written by the mirror and read back
by the source with one field mapping.

Role in the flow: during training :class:`kdsuite.analysis.wandb_log.WandbMirror` puts the record's identity
fields (:data:`IDENTITY`) into the W&B config under :data:`CONFIG_KEY` (:func:`identity_block`) and its
metrics into the run summary as ``final/*`` (:func:`summary_from_record`); ``kdsuite table --source wandb:…``
(:mod:`kdsuite.analysis.wandb_source`) reads them back with :func:`identity_from_config` and
:func:`metrics_from_summary`. A field added to the record's W&B form is added here, once, for both sides.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Tuple

#: record fields copied into the W&B config under ``kdsuite``
IDENTITY = ("run_id", "config_hash", "name", "method", "category", "scheme", "category_title", "paper", "dataset",
            "student", "student_name", "teachers", "teacher_names", "pair", "seed")
CONFIG_KEY = "kdsuite"  # the W&B config entry holding the identity block
SUMMARY_PREFIX = "final/"  # the W&B summary keys holding the record's metrics


# ---- writing (the mirror) ---------------------------------------------------------------------------
def identity_block(record: Mapping[str, Any]) -> Dict[str, Any]:
    """The identity fields of ``record``, as the W&B config's :data:`CONFIG_KEY` entry holds them."""
    return {k: record.get(k) for k in IDENTITY}


def summary_from_record(record: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``final/*`` summary of a (finished or failed) record: scalars only, lists spread by index."""
    out: Dict[str, Any] = {f"{SUMMARY_PREFIX}status": record.get("status")}
    for k, v in (record.get("metrics") or {}).items():
        if isinstance(v, (list, tuple)):
            vals = [x for x in v if isinstance(x, (int, float))]
            if vals:
                out[f"{SUMMARY_PREFIX}{k}"] = vals[0]
            for i, x in enumerate(v):
                if isinstance(x, (int, float)) or x is None:
                    out[f"{SUMMARY_PREFIX}{k}/{i}"] = x
        elif isinstance(v, (int, float, str)) or v is None:
            out[f"{SUMMARY_PREFIX}{k}"] = v
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


# ---- reading (the table source) ---------------------------------------------------------------------
def identity_from_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The identity block of a W&B run's config, removed from ``config`` (empty for runs logged without one)."""
    return dict(config.pop(CONFIG_KEY, None) or {})


def _num(v: Any) -> Optional[float]:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def metrics_from_summary(summary: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(metrics, extra)`` of a W&B run summary: the record's ``metrics`` from the ``final/*`` keys (each
    teacher's accuracy gathered back into the ``teacher_top1`` list) and ``{"final_status": …}`` where the
    summary has one."""
    metrics: Dict[str, Any] = {}
    extra: Dict[str, Any] = {}
    teacher: Dict[int, Any] = {}
    for k, v in summary.items():
        if not k.startswith(SUMMARY_PREFIX):
            continue
        key = k[len(SUMMARY_PREFIX):]
        if key.startswith("teacher_top1/") and key.split("/")[-1].isdigit():
            teacher[int(key.split("/")[-1])] = _num(v)
        elif key == "teacher_top1":
            continue
        elif key == "status":
            extra["final_status"] = v
        else:
            metrics[key] = v if isinstance(v, str) else _num(v)
    if teacher:
        metrics["teacher_top1"] = [teacher[i] for i in sorted(teacher)]
    elif _num(summary.get(f"{SUMMARY_PREFIX}teacher_top1")) is not None:
        metrics["teacher_top1"] = [summary[f"{SUMMARY_PREFIX}teacher_top1"]]
    else:
        metrics["teacher_top1"] = []
    return metrics, extra
