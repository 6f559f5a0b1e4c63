"""Protocol marks: how a run's recipe differs from the standard recipe of its table column.

Role in the flow: :func:`kdsuite.analysis.table_compute.runs_frame` reads each record's protocol facts
(:func:`facts_of`: the record's ``protocol``, written by :mod:`kdsuite.experiments.run`, or derived from its
config and ``inference_parts`` for records written before it) and :func:`add_marks` gives every run the marks
of its differences from its column's standard recipe — one weak view per step, the student alone at inference,
the epochs of the column's vanilla runs (else the column's most common) — as ``2 views, strong aug``,
``teacher head``, ``480 ep``. The methods table prints a cell's marks beside it; the categories summary ranks
only unmarked cells and names the marked ones apart.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

import pandas as pd

HEAD_NAMES = ("fc", "head", "classifier", "linear")


def facts_of(r: Dict[str, Any]) -> Dict[str, Any]:
    """A record's protocol facts: {"epochs", "aug_views", "views_per_step", "teacher_parts"}."""
    if isinstance(r.get("protocol"), dict):
        return r["protocol"]
    cfg = r.get("config") or {}
    views = list((cfg.get("dataset") or {}).get("aug_views") or ["weak"])
    parts = r.get("inference_parts") or {}
    return {"epochs": cfg.get("epochs"), "aug_views": views, "views_per_step": len(views),
            "teacher_parts": sorted(p for p, e in parts.items() if str((e or {}).get("source", "")).startswith("teacher"))}


def _view_mark(views: List[str]) -> str:
    if views in ([], ["weak"]):
        return ""
    augs = sorted({"strong aug" if v == "strong" else "AutoAugment" for v in views if v != "weak"})
    return ", ".join(([f"{len(views)} views"] if len(views) > 1 else []) + augs)


def _teacher_mark(parts: List[str]) -> str:
    if not parts:
        return ""
    heads = all(p.rsplit(".", 1)[-1] in HEAD_NAMES for p in parts)
    return "teacher head" if heads else "teacher parts"


def marks(facts: Dict[str, Any], standard_epochs: Any) -> str:
    """The marks of ``facts`` against a standard recipe of ``standard_epochs``: '' when it is that recipe."""
    out = [_view_mark(list(facts.get("aug_views") or ["weak"])), _teacher_mark(list(facts.get("teacher_parts") or []))]
    ep = facts.get("epochs")
    if ep is not None and standard_epochs is not None and ep != standard_epochs:
        out.append(f"{ep} ep")
    return ", ".join(m for m in out if m)


def _standard_epochs(col: pd.DataFrame) -> Any:
    van = col[col["method"] == "vanilla"]["epochs"].dropna()
    pool = van if len(van) else col["epochs"].dropna()
    return pool.mode().iloc[0] if len(pool) else None


def add_marks(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (the runs frame, with ``protocol`` as JSON and ``epochs``) with a ``marks`` column, each run
    against its column (pair; a teacher-free run against the columns of its student)."""
    df = df.copy()
    df["marks"] = ""
    if df.empty:
        return df
    for pair, col in df.groupby("pair", dropna=False):
        std = _standard_epochs(pd.concat([col, df[(df["teachers"] == "") & df["student"].isin(col["student"])]]))
        for i in col.index:
            df.at[i, "marks"] = marks(json.loads(df.at[i, "protocol"]), std)
    return df
