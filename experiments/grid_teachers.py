"""The teachers of a grid: the grid-wide ``teachers`` map of existing records, and the check that every run's
teachers (records or runs of an earlier stage) were trained on its data set and view.

Role in the flow: :func:`kdsuite.experiments.grid.expand` resolves the map once (:func:`existing_teachers`) and
asks :func:`teacher_problems` for each planned run; :func:`existing_teachers` also refuses, by name, a record whose
weights file is damaged or does not fit the architecture it declares. Both use :mod:`kdsuite.experiments.teacher_checks`, the
checks a run makes again when it starts, so a plan refuses what the run would refuse.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.teacher_checks import check_teacher_weights, teacher_entry, teacher_mismatch, teacher_record


def teacher_problems(cfg: Mapping[str, Any], teacher_runs: Mapping[str, Any],
                     existing: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """Each teacher of ``cfg`` trained on another data set or view than the run gives it: a record of the
    grid-wide ``teachers`` map (its ``dataset`` / ``view``) or a run an earlier stage plans (its config's)."""
    planned = {str(r.run_dir): (key, r.cfg) for key, r in teacher_runs.items()}
    problems = []
    for t in cfg["teachers"]:
        if t["checkpoint"] in planned:
            key, tcfg = planned[t["checkpoint"]]
            problem = teacher_mismatch(cfg, f"teacher {key!r}", tcfg["dataset"]["name"],
                                       (tcfg["dataset"].get("views") or {}).get("student"))
        else:
            rec = next((e for e in existing.values() if e["checkpoint"] == t["checkpoint"]), None)
            problem = None if rec is None else teacher_mismatch(
                cfg, f"teacher record {t['checkpoint']}", rec["dataset"], rec["view"])
        if problem:
            problems.append(problem)
    return problems


def existing_teachers(spec: Mapping[str, Any], errors: List[str],
                      refused: Optional[List[str]] = None) -> Dict[str, Dict[str, Any]]:
    """The grid-wide ``teachers`` map resolved to teacher entries ``{checkpoint, arch, sha256[, config_hash]}``
    — the same fields :func:`kdsuite.experiments.run.resolve_teachers` fills at run time, so the hash planned here
    is the hash the run gets — plus ``dataset`` and ``view`` (checked against each run's, then dropped). A
    record that cannot be used (missing, damaged, weights that do not fit its architecture) goes to ``errors``
    and its key to ``refused``."""
    import os

    given = spec.get("teachers")
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        errors.append(f"teachers must map teacher keys to {{checkpoint: PATH}}, got {given!r}")
        return {}
    out: Dict[str, Dict[str, Any]] = {}
    for key, entry in given.items():
        where = f"teachers.{key}"
        if isinstance(entry, str):
            entry = {"checkpoint": entry}
        if not isinstance(entry, Mapping) or set(entry) != {"checkpoint"} or not isinstance(entry["checkpoint"], str):
            errors.append(f"{where} = {entry!r}: expected {{checkpoint: PATH}} (a teacher record folder)")
            continue
        ckpt = os.path.expandvars(os.path.expanduser(entry["checkpoint"]))
        try:
            meta = teacher_record(ckpt, f"{where}.checkpoint")
            check_teacher_weights(ckpt, meta, f"{where}.checkpoint")  # the file's header, the model on torch's meta device
        except ConfigError as e:
            errors.append(str(e))
            if refused is not None:
                refused.append(str(key))
            continue
        out[str(key)] = dict(teacher_entry(ckpt, meta), dataset=meta.get("dataset"), view=meta.get("view"))
    return out
