"""The merge and match rules of a grid stage: how layers of settings merge, which runs an ``overrides`` rule or an
``exclude`` entry names, and which settings a run's overrides change from the grid's defaults.

Role in the flow: :func:`kdsuite.experiments.grid.expand` merges each run's config from the grid's layers with
:func:`merge_all`, checks the stage's rules with :func:`check_rules` / :func:`check_override_keys` (collected
with every other problem) and records :func:`changed_settings` as the run's ``settings`` (``grid plan`` prints them).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping

RULE_KEYS = ("match", "set")
MATCH_EXTRA = ("student", "teachers")  # match keys derived from the pair, besides the stage's axis names


def merge_all(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """Recursive merge of every mapping (``hparams`` and ``kwargs`` included, unlike ``deep_merge``)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merge_all(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def flatten(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"optim": {"lr": 0.01}}`` -> ``{"optim.lr": 0.01}`` (lists and scalars are leaves)."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))  # an empty mapping changes nothing
        else:
            out[key] = v
    return out


def _lookup(d: Mapping[str, Any], dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def changed_settings(layers: Mapping[str, Any], defaults: Mapping[str, Any]) -> Dict[str, Any]:
    """The leaves of ``layers`` whose value differs from the grid's ``defaults``."""
    return {k: v for k, v in flatten(layers).items() if _lookup(defaults, k) != v}


def check_rules(rules: Any, axes: Mapping[str, Any], where: str) -> List[str]:
    """Problems of a stage's ``overrides`` list (empty when it is fine)."""
    from kdsuite import zoo
    from kdsuite.methods.registry import get_method

    if rules is None:
        return []
    if not isinstance(rules, list):
        return [f"{where}.overrides must be a list of {{match: {{...}}, set: {{...}}}}, got {rules!r}"]
    allowed = sorted(set(axes or {}) | set(MATCH_EXTRA))
    out = []
    for i, rule in enumerate(rules):
        w = f"{where}.overrides[{i}]"
        if not isinstance(rule, Mapping) or set(rule) != set(RULE_KEYS):
            got = sorted(rule) if isinstance(rule, Mapping) else repr(rule)
            out.append(f"{w}: must be a mapping with exactly the keys {list(RULE_KEYS)}, got {got}")
            continue
        match, set_ = rule["match"], rule["set"]
        if not isinstance(match, Mapping) or not match:
            out.append(f"{w}.match = {match!r}: expected a non-empty mapping of {allowed}")
        else:
            for k, v in match.items():
                if k not in allowed:
                    out.append(f"{w}.match.{k}: not an axis of this stage nor a pair field; allowed: {allowed}")
                elif k == "method":
                    try:
                        get_method(v)
                    except (KeyError, TypeError) as e:
                        out.append(f"{w}.match.method = {v!r}: {e.args[0] if e.args else 'not a method name'}")
                elif k == "student" and (not isinstance(v, str) or v not in zoo.list_models(v)):
                    out.append(f"{w}.match.student = {v!r}: no model of that name (see `kdsuite models`)")
                elif k == "teachers" and (not isinstance(v, list) or not all(isinstance(t, str) for t in v)):
                    out.append(f"{w}.match.teachers = {v!r}: expected a list of teacher keys")
        if not isinstance(set_, Mapping) or not set_:
            out.append(f"{w}.set = {set_!r}: expected a non-empty mapping of config overrides")
    return out


def rule_matches(match: Mapping[str, Any], point: Mapping[str, Any]) -> bool:
    pair = point.get("pair") if isinstance(point.get("pair"), Mapping) else {}
    derived = {"student": pair.get("student"), "teachers": list(pair.get("teachers") or [])}
    return all((point.get(k) if k not in MATCH_EXTRA else derived[k]) == v for k, v in match.items())


def excluded(point: Mapping[str, Any], rules: List[Mapping[str, Any]]) -> bool:
    return any(all(point.get(k) == v for k, v in rule.items()) for rule in rules)


def check_override_keys(st: Mapping[str, Any], where: str) -> List[str]:
    """``method_overrides`` / ``method_pairs`` must name registered methods, ``student_overrides``
    known models (a typo there would silently apply nothing)."""
    from kdsuite import zoo
    from kdsuite.methods.registry import get_method

    out = []
    for sec in ("method_overrides", "method_pairs"):
        for m in (st.get(sec) or {}):
            try:
                get_method(m)
            except KeyError as e:
                out.append(f"{where}.{sec}.{m}: {e.args[0]}")
    so = st.get("student_overrides")
    if so is not None and not isinstance(so, Mapping):
        out.append(f"{where}.student_overrides must map model names to config overrides, got {so!r}")
    for arch, over in (so or {}).items() if isinstance(so, Mapping) else ():
        if arch not in zoo.list_models(str(arch)):
            out.append(f"{where}.student_overrides.{arch}: no model of that name (see `kdsuite models`)")
        if not isinstance(over, Mapping):
            out.append(f"{where}.student_overrides.{arch} must be a mapping of config overrides, got {over!r}")
    return out
