"""Frame renderers: the methods × pairs table and the taxonomy summary in long form, for CSV.

Role in the flow: ``kdsuite table --format csv`` (registered in :mod:`kdsuite.analysis.table_formats`) writes
these frames; a missing cell is an empty field, never 0.
"""
from __future__ import annotations

from typing import Any, Dict, List

import pandas as pd

from kdsuite.analysis.table_text import unranked_text


def comparison_frame(table: Dict[str, Any]) -> pd.DataFrame:
    """The comparison table in long form (one row per method × pair, missing cells kept as empty)."""
    refs = table.get("refs") or {}
    rows = []
    for label, cat, cells in table["rows"]:
        for c in table["columns"]:
            s = cells.get(c)
            r = refs.get((label, c))
            ok = s is not None and "mean" in s
            rows.append({"method": label, "category": cat, "pair": c, "metric": table["metric"],
                         "mean": s["mean"] if ok else None, "std": s["std"] if ok else None,
                         "n": None if s is None else s["n"], "diverged": (s or {}).get("diverged", 0),
                         "duplicate_seeds": "+".join((s or {}).get("dup", [])),
                         "protocol": (table.get("marks") or {}).get((label, c), ""),
                         "published": r["value"] if r else None,
                         "delta": (s["mean"] - r["value"]) if (r and ok and r.get("comparable") is not False) else None,
                         "published_epoch": (r.get("epoch_policy") or None) if r else None,
                         "published_source": r["source"] if r else None})
    return pd.DataFrame(rows)



def summary_frame(rows: List[Dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{"category": r["category"], "title": r["title"], "axis": r["axis"], "section": r["section"],
                          "schemes": "+".join(r["schemes"]), "methods": "+".join(r["methods"]), "runs": r["runs"],
                          "gain_mean": r["gain"]["mean"] if r["gain"] else None,
                          "gain_std": r["gain"]["std"] if r["gain"] else None,
                          "gain_cells": r["gain"]["n"] if r["gain"] else None,
                          "best_method": r["best"][0] if r["best"] else None,
                          "best_gain": r["best"][1] if r["best"] else None,
                          "not_ranked": unranked_text(r)} for r in rows])
