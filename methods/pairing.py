"""Which teacher stage each student stage is compared with: the stated rules and the explicit pairs of a run.

Role in the flow: a plugin that compares stages pair by pair (AT, VID, NST, ReviewKD …) calls
``Distiller.require_paired_stages`` and one that hints a single stage (FitNet …) ``paired_teacher_tap``; both
land here. Without ``method.pairs`` in the run config the pairs follow a stated rule — one to one within a
family with equal stage counts, the same stage number for a single hint within a family, otherwise
relative depth (:data:`PAIRING_RULE`); with it (``BuildContext.stage_pairs``, the config's
``[{student: feat<i>, teacher: feat<j>}, …]``) exactly those pairs, each tap checked against its model.
Every pair, its depths and its rule go to the run record's ``features.pairs``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch.nn as nn

from kdsuite.methods.hparams import ConfigError
from kdsuite.zoo import taps as ztaps

PAIRING_RULE = ("relative depth: each stage of the model with fewer stages is paired with the other model's stage "
                "nearest in relative depth (kdsuite.zoo.taps.relative_depth; ties go to the deeper stage)")
EXPLICIT_RULE = "explicit: the run's method.pairs"

Pair = Tuple[str, str]


def depth(model: nn.Module, tap: str) -> float:
    return ztaps.relative_depth(model, int(tap[len("feat"):].split("_")[0]))


def records(s_model: nn.Module, t_model: nn.Module, pairs: Sequence[Pair], rule: str) -> List[Dict[str, Any]]:
    """The record's ``features.pairs`` entries: each pair with both relative depths and its rule."""
    return [{"student": s, "teacher": t, "student_depth": round(depth(s_model, s), 4),
             "teacher_depth": round(depth(t_model, t), 4), "rule": rule} for s, t in pairs]


def by_rule(s_model: nn.Module, t_model: nn.Module, s_taps: Sequence[str], t_taps: Sequence[str]) -> Tuple[List[Pair], str]:
    """Stage pairs by the stated rule: one to one within a family of equal stage counts, else relative depth."""
    if ztaps.family(s_model) == ztaps.family(t_model) and len(s_taps) == len(t_taps):
        return list(zip(s_taps, t_taps)), "one to one (one family, equal stage counts)"

    def nearest(model, cands, d):
        return min(cands, key=lambda t: (abs(depth(model, t) - d), -depth(model, t)))

    if len(s_taps) <= len(t_taps):
        return [(s, nearest(t_model, t_taps, depth(s_model, s))) for s in s_taps], PAIRING_RULE
    return [(nearest(s_model, s_taps, depth(t_model, t)), t) for t in t_taps], PAIRING_RULE


def hint_by_rule(s_model: nn.Module, t_model: nn.Module, s_tap: str, method: str) -> Tuple[str, str]:
    """The teacher stage of a single hint: the same stage number within a family (RepDistiller's
    convention), else the teacher stage nearest in relative depth."""
    si = int(s_tap[len("feat"):])
    if ztaps.family(s_model) == ztaps.family(t_model):
        try:
            return ztaps.resolve(t_model, [f"feat{si}"])[0], "same stage number (one family)"
        except ValueError as e:
            raise ConfigError(f"method '{method}': {e}") from None
    cands = ztaps.resolve(t_model, ["stages"])
    sd = depth(s_model, s_tap)
    return min(cands, key=lambda t: (abs(depth(t_model, t) - sd), -depth(t_model, t))), PAIRING_RULE


def check_explicit(pairs: Sequence[Pair], s_model: nn.Module, t_model: nn.Module) -> List[Pair]:
    """``method.pairs`` against the two models: every tap a feature the model has (ConfigError naming the
    entry, its value and the model's features otherwise)."""
    out = []
    for k, (s, t) in enumerate(pairs):
        for side, tap, model in (("student", s, s_model), ("teacher", t, t_model)):
            try:
                ztaps.resolve(model, [tap])
            except ValueError as e:
                n = ztaps.feature_count(model)
                raise ConfigError(f"method.pairs[{k}].{side} = {tap!r}: {e}; the {side} "
                                  f"({type(model).__name__}) has feat0..feat{n - 1}") from None
        out.append((s, t))
    return out


def explicit_hint(pairs: Sequence[Pair], s_tap: str, method: str, s_model: nn.Module, t_model: nn.Module) -> str:
    """The teacher tap ``method.pairs`` names for the single hinted student tap ``s_tap``."""
    pairs = check_explicit(pairs, s_model, t_model)
    hits = [t for s, t in pairs if s == s_tap]
    if len(pairs) != 1 or not hits:
        raise ConfigError(f"method.pairs = {[{'student': s, 'teacher': t} for s, t in pairs]}: method '{method}' "
                          f"hints one student stage, {s_tap}; allowed: one pair whose student is {s_tap!r}")
    return hits[0]


def split_stage_taps(taps: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Stage taps (feat<i>, feat<i>_pre), which are paired, and the rest (pool, logits), which stay."""
    return [t for t in taps if t.startswith("feat")], [t for t in taps if not t.startswith("feat")]


def given(pairs: Optional[Sequence[Any]]) -> Optional[List[Pair]]:
    """The config's ``method.pairs`` entries as (student, teacher) tuples; None when not given."""
    if not pairs:
        return None
    return [(p["student"], p["teacher"]) if isinstance(p, dict) else (p[0], p[1]) for p in pairs]
