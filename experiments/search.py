"""A student chosen by an architecture search (NAS-based distillation, survey §5.9).

Role in the flow: a grid stage names a search as its student, ``pair: {teachers: [T], student: {search:
STAGE}}``; the grid expands that into ``student: {search: {stage, candidates: [{run, config_hash}, ...]}}``
— the candidate runs of the earlier stage ``STAGE``, each a short proxy training by a ``nas`` method that
leaves ``metrics.search_score`` in its record (:mod:`kdsuite.methods.components.search`). The run waits
for its candidates (Slurm dependencies, or stage order locally); when it starts, :func:`resolve_search`
reads their records and sets ``student.search.chosen`` — the architecture with the highest mean score
over its seeds (ties: fewer parameters, then name). The run's identity is its candidates' config hashes
(not the choice, which follows from them), so the hash planned is the hash that runs.

Every candidate must have finished (a search missing a candidate would choose among fewer than the user
asked for); a diverged candidate is kept out of the choice and listed as such. The record of the run
holds ``search``: the chosen architecture and every candidate's score.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from kdsuite import zoo
from kdsuite.core.errors import ConfigError
from kdsuite.core.records import RecordError, read_record
from kdsuite.methods.components.search import SCORE

SEARCHED = "searched"  # the student's name in a run folder's label: the choice is made when the run starts


def search_of(cfg: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The ``student.search`` section of a config, None for a student named directly."""
    return (cfg.get("student") or {}).get("search") or None


def student_label(cfg: Mapping[str, Any]) -> str:
    """The student's name in run folders and plans: its display name, or ``searched`` for a search."""
    return SEARCHED if search_of(cfg) else zoo.display_name(cfg["student"]["arch"])


def candidate_scores(search: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """One entry per candidate run: ``{run, arch, params, seed, method, status, score, config_hash}``; a ConfigError
    naming every candidate that has not finished (or whose record is unreadable or of another config)."""
    out, problems = [], []
    for i, c in enumerate(search["candidates"]):
        where = f"student.search.candidates[{i}] ({c['run']})"
        try:
            rec = read_record(c["run"])
        except RecordError as e:
            problems.append(f"{where}: {e}")
            continue
        if rec is None:
            problems.append(f"{where}: no record yet (the candidate has not run)")
            continue
        if c.get("config_hash") and rec.get("config_hash") != c["config_hash"]:
            problems.append(f"{where}: holds run {str(rec.get('config_hash'))[:10]}, not the planned candidate "
                            f"{c['config_hash'][:10]}")
            continue
        status = rec["status"]
        score = (rec.get("metrics") or {}).get(SCORE)
        if status == "finished" and not isinstance(score, (int, float)):
            problems.append(f"{where}: finished without a {SCORE} (method {rec.get('method')!r} is not a "
                            f"search proxy; use a method of category nas, see `kdsuite methods`)")
            continue
        if status not in ("finished", "diverged"):
            problems.append(f"{where}: status {status!r}; every candidate must finish before the search chooses")
            continue
        out.append({"run": c["run"], "config_hash": rec.get("config_hash"), "arch": rec.get("student"),
                    "params": (rec.get("metrics") or {}).get("student_params"),
                    "seed": rec.get("seed"), "method": rec.get("method"), "status": status,
                    "score": float(score) if status == "finished" else None})
    if problems:
        raise ConfigError(f"the search of stage {search.get('stage')!r} cannot choose yet:\n  - " + "\n  - ".join(problems))
    return out


def choose(candidates: List[Mapping[str, Any]]) -> Dict[str, Any]:
    """Rank the architectures by mean score over their finished candidates; the record's ``search`` entry."""
    by_arch: Dict[str, List[float]] = {}
    for c in candidates:
        by_arch.setdefault(c["arch"], [])
        if c["score"] is not None:
            by_arch[c["arch"]].append(c["score"])
    params = {c["arch"]: c["params"] for c in candidates}  # counted by each candidate's run, as trained
    ranked = []
    for arch, scores in by_arch.items():
        ranked.append({"arch": arch, "params": params[arch], "seeds": len(scores),
                       "mean_score": statistics.fmean(scores) if scores else None,
                       "std_score": statistics.stdev(scores) if len(scores) > 1 else None,
                       "diverged": sum(1 for c in candidates if c["arch"] == arch and c["score"] is None)})
    scored = [r for r in ranked if r["mean_score"] is not None]
    if not scored:
        raise ConfigError("the search cannot choose: every candidate diverged")
    scored.sort(key=lambda r: (-r["mean_score"], r["params"], r["arch"]))
    methods = sorted({c["method"] for c in candidates if c["method"]})
    return {"chosen": scored[0]["arch"], "proxy": "+".join(methods),
            "ranking": scored + [r for r in ranked if r["mean_score"] is None],
            "candidates": [dict(c) for c in candidates]}


def resolve_search(cfg: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Set ``student.search.chosen`` and ``student.arch`` of a search run from its candidates' records;
    returns the record's ``search`` entry (None for a student named directly)."""
    search = search_of(cfg)
    if search is None:
        return None
    result = choose(candidate_scores(search))
    search["chosen"] = cfg["student"]["arch"] = result["chosen"]
    typed = getattr(cfg, "settings", None)
    if typed is not None:  # the typed config says the same
        typed.student.arch = result["chosen"]
    return dict(result, stage=search.get("stage"))


def grid_candidates(stage: str, runs) -> Dict[str, Any]:
    """The ``student.search`` section the grid writes for a pair ``student: {search: stage}``."""
    return {"stage": stage, "candidates": [{"run": str(Path(r.run_dir)), "config_hash": r.hash} for r in runs]}
