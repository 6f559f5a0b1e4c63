"""The points of a grid stage and the raw config of each: what :func:`kdsuite.experiments.grid.expand` validates.

Role in the flow: for one stage, :func:`explicit_points` lists its ``runs`` and :func:`axis_points` the crossing
of its ``axes`` (``method_pairs`` replacing the pair axis for their method, ``exclude`` applied); for each point
:func:`explicit_raw` / :func:`axis_raw` merge, in order, the grid's defaults, the point's own values and the
stage's ``student_overrides``, ``method_overrides`` and matching ``overrides`` rules, and return the merged
config with the layers over the defaults (for the plan's settings column). A pair's teacher keys are resolved
to the grid's teachers map or to the run of an earlier stage that exports that teacher.
"""
from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

import yaml

from kdsuite.experiments.config import ConfigError, apply_overrides, deep_merge
from kdsuite.experiments.grid_rules import excluded, merge_all, rule_matches

if TYPE_CHECKING:
    from kdsuite.experiments.grid import _Expansion


def _axis_items(axes: Mapping[str, List[Any]], where: str):
    if not isinstance(axes, Mapping):
        raise ConfigError(f"{where}.axes must map config fields to lists of values, got {axes!r}")
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where}.axes.{k} must be a non-empty list, got {v!r}")
    keys = list(axes)
    for combo in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, combo))


def _student_arch(raw: Mapping[str, Any]) -> Optional[str]:
    """The student architecture of a raw config, written either as ``student: ARCH`` or ``student: {arch: ARCH}``."""
    st = raw.get("student")
    return st.get("arch") if isinstance(st, Mapping) else st if isinstance(st, str) else None


def explicit_points(ex: "_Expansion", st: Mapping[str, Any], where: str) -> List[tuple]:
    """``(label, key, run fields, None)`` for each of the stage's explicit ``runs``."""
    points = []
    for i, r in enumerate(st.get("runs") or []):
        r = dict(r)
        key = r.pop("key", None)
        if key is not None and key in ex.existing:
            ex.errors.append(f"{where}.runs[{i}]: key {key!r} is also in the grid's teachers map; use one or the other")
        if "student" in r and isinstance(r["student"], str):
            r["student"] = {"arch": r["student"]}
        points.append((f"{where}.runs[{i}]", key, r, {}))
    return points


def axis_points(ex: "_Expansion", st: Mapping[str, Any], where: str) -> List[tuple]:
    """``(label, None, None, point)`` for each crossing of the stage's axes (``method_pairs`` replacing
    the pair axis for their method, ``exclude`` applied)."""
    if "axes" in st and not st["axes"]:
        ex.errors.append(f"{where}.axes = {st['axes']!r}: an empty axes mapping plans no runs; give at least one "
                         f"axis (method, seed, pair or a dotted config field) or remove it")
    try:
        axis_points = list(_axis_items(st["axes"], where)) if st.get("axes") else []
    except ConfigError as e:
        ex.errors.append(str(e))
        return []
    points = []
    for point in axis_points:
        method = point.get("method")
        pairs = (st.get("method_pairs") or {}).get(method) if method else None
        for pair in ([None] if "pair" not in point and pairs is None else (pairs or [point.get("pair")])):
            p = dict(point)
            if pair is not None:
                p["pair"] = pair
            if excluded(p, st.get("exclude") or []):
                continue
            points.append((f"{where}[{', '.join(f'{k}={v}' for k, v in p.items())}]", None, None, p))
    return points


def _student_override(st: Mapping[str, Any], raw: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    so = st.get("student_overrides") or {}
    return so.get(_student_arch(raw)) if isinstance(so, Mapping) else None


def explicit_raw(ex: "_Expansion", st: Mapping[str, Any], explicit: Mapping[str, Any]) -> tuple:
    """An explicit run: the grid's defaults < its own fields < ``student_overrides``; with the layers over
    the defaults (for :attr:`RunSpec.settings`)."""
    raw = deep_merge(copy.deepcopy(ex.defaults), explicit)
    layers = {k: v for k, v in explicit.items() if k != "student"}
    if isinstance(explicit.get("student"), Mapping):
        layers["student"] = {k: v for k, v in explicit["student"].items() if k != "arch"}
    so = _student_override(st, raw)
    if so:
        raw, layers = merge_all(raw, so), merge_all(layers, so)
    return raw, layers


def _pair_fields(ex: "_Expansion", pair: Any, point_errors: List[str]) -> Dict[str, Any]:
    """``student`` and ``teachers`` of a run from its pair (teacher keys: earlier runs or the teachers map)."""
    if not isinstance(pair, dict) or "student" not in pair:
        raise ConfigError(f"pair {pair!r} must be {{teachers: [KEY...], student: ARCH}}")
    teachers = []
    for tk in pair.get("teachers") or []:
        if tk in ex.existing:
            teachers.append({f: x for f, x in ex.existing[tk].items() if f not in ("dataset", "view")})
        elif tk in ex.teacher_runs:
            t = ex.teacher_runs[tk]
            teachers.append({"checkpoint": str(t.run_dir), "arch": t.cfg["student"]["arch"], "config_hash": t.hash})
        elif tk in ex.failed_keys:
            point_errors.append(f"teacher key {tk!r} is not planned: its run {ex.failed_keys[tk]} has problems")
        elif tk in ex.refused:
            point_errors.append(f"teacher key {tk!r}: its record is refused (teachers.{tk}, above)")
        else:
            point_errors.append(f"teacher key {tk!r} is produced by no earlier stage and is not in the grid's "
                                f"teachers map (known: {sorted(ex.teacher_runs) + sorted(ex.existing)})")
    student = pair["student"]
    if isinstance(student, Mapping):
        return {"student": {"search": _search_fields(ex, student, point_errors), "kwargs": {}}, "teachers": teachers}
    return {"student": {"arch": student, "kwargs": {}}, "teachers": teachers}


def _search_fields(ex: "_Expansion", student: Mapping[str, Any], point_errors: List[str]) -> Optional[Dict[str, Any]]:
    """A pair's ``student: {search: STAGE}``: the candidate runs of that earlier stage."""
    from kdsuite.experiments.search import grid_candidates

    stage = student.get("search")
    if set(student) != {"search"} or not isinstance(stage, str):
        point_errors.append(f"pair student {dict(student)!r}: expected a model name or {{search: STAGE}} (the "
                            f"architecture chosen by the candidates of an earlier stage)")
        return None
    if stage in ex.stage_runs and not ex.stage_runs[stage]:
        point_errors.append(f"pair student {{search: {stage}}}: stage {stage!r} planned no candidate runs")
        return None
    if stage not in ex.stage_runs:
        point_errors.append(f"pair student {{search: {stage}}}: no earlier stage {stage!r} with candidate runs "
                            f"(earlier: {sorted(ex.stage_runs)})")
        return None
    return grid_candidates(stage, ex.stage_runs[stage])


def axis_raw(ex: "_Expansion", st: Mapping[str, Any], p: Mapping[str, Any], rules: List[Mapping[str, Any]],
              rule_hits: List[int], point_errors: List[str]) -> tuple:
    """An axis point: the grid's defaults < its axis values < ``student_overrides`` < ``method_overrides``
    < matching ``overrides`` rules; a method without teachers drops the pair's. With the layers."""
    from kdsuite.methods.registry import get_method

    raw = copy.deepcopy(ex.defaults)
    dotted = []
    for k, v in p.items():
        if k == "method":
            raw["method"] = {"name": v, "hparams": {}}
        elif k == "seed":
            raw["seed"] = v
        elif k == "pair":
            raw.update(_pair_fields(ex, v, point_errors))
        else:
            dotted.append(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}")
    raw, layers = apply_overrides(raw, dotted), apply_overrides({}, dotted)
    so = _student_override(st, raw)
    if so:
        raw, layers = merge_all(raw, so), merge_all(layers, so)
    mname = (raw.get("method") or {}).get("name", "vanilla")  # the config default
    mo = (st.get("method_overrides") or {}).get(mname)
    if mo:
        raw, layers = merge_all(raw, mo), merge_all(layers, mo)
    for ri, rule in enumerate(rules):
        if rule_matches(rule["match"], p):
            raw, layers = merge_all(raw, rule["set"]), merge_all(layers, rule["set"])
            rule_hits[ri] += 1
    try:
        if get_method(mname).num_teachers == 0:
            raw["teachers"] = []
    except KeyError:
        pass
    return raw, layers
