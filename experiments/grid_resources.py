"""The cluster resources a grid file may ask for (grid-wide ``resources`` and per stage), checked at planning.

Role in the flow: :func:`kdsuite.experiments.grid.expand` collects the problems these checks find with every
other problem of the grid; :mod:`kdsuite.slurm.executors` lays the fields over the Slurm profile's when it
submits (each field overrides the profile's field of the same name).
"""
from __future__ import annotations

from typing import Any, List, Mapping

# resource fields a grid may set (per stage or grid-wide); each overrides the Slurm profile's field
RESOURCE_INT = ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "timeout_min", "array_parallelism", "pack",
                "max_num_timeout")
RESOURCE_STR = ("partition", "account", "constraint", "qos", "gres")
RESOURCE_FIELDS = RESOURCE_INT + RESOURCE_STR + ("mem_gb",)
# submitit asks Slurm to signal a job SIGNAL_DELAY_S before its time limit (checkpoint, then requeue); a
# limit that leaves less than TIMEOUT_MARGIN_S of work before that signal "times out" at once, every attempt
SIGNAL_DELAY_S = 90
TIMEOUT_MARGIN_S = 120
MIN_TIMEOUT_MIN = -(-(SIGNAL_DELAY_S + TIMEOUT_MARGIN_S) // 60)  # 4 minutes
_RESOURCE_MIN = {"gpus_per_node": 0, "max_num_timeout": 0, "timeout_min": MIN_TIMEOUT_MIN}


def timeout_problem(v, where: str):
    """Why ``timeout_min = v`` cannot work (None when it can)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < MIN_TIMEOUT_MIN:
        return (f"{where} = {v!r}: expected an integer >= {MIN_TIMEOUT_MIN} (minutes): submitit signals a job "
                f"{SIGNAL_DELAY_S} s before its time limit to checkpoint and requeue it, and a run needs at least "
                f"{TIMEOUT_MARGIN_S} s of work before that, or every attempt times out at once")
    return None


def check_resources(res: Any, where: str) -> List[str]:
    """Problems of a ``resources`` mapping (empty list when it is fine)."""
    if res is None:
        return []
    if not isinstance(res, Mapping):
        return [f"{where}: must be a mapping of {list(RESOURCE_FIELDS)}, got {res!r}"]
    out = [f"{where}.{k}: unknown resource field (allowed: {', '.join(RESOURCE_FIELDS)})"
           for k in res if k not in RESOURCE_FIELDS]
    for k in RESOURCE_INT:
        v = res.get(k)
        low = _RESOURCE_MIN.get(k, 1)
        if k == "timeout_min" and v is not None and timeout_problem(v, f"{where}.{k}"):
            out.append(timeout_problem(v, f"{where}.{k}"))
        elif v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            out.append(f"{where}.{k} = {v!r}: expected an integer >= {low}")
    v = res.get("mem_gb")
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
        out.append(f"{where}.mem_gb = {v!r}: expected a number > 0")
    for k in RESOURCE_STR:
        v = res.get(k)
        if v is not None and not isinstance(v, str):
            out.append(f"{where}.{k} = {v!r}: expected a string")
    return out


def check_hours(v: Any, where: str) -> List[str]:
    if v is None or (not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0):
        return []
    return [f"{where} = {v!r}: expected a number of GPU-hours >= 0"]
