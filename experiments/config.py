"""Run configs: defaults, YAML loading, dotted overrides, validation and the config hash.

Role in the flow: the first step. A run config (a YAML file, a grid entry or CLI ``--set`` pairs)
is merged over :data:`DEFAULTS` (derived from the section models of :mod:`kdsuite.experiments.settings`),
validated once by :func:`validate` through those models — every error names the field, the value and
what is allowed, before any model is built or file written — and hashed by
:func:`config_hash`, which is the run's identity (records, run folders, grid idempotence).

The hash covers what decides the result (data, models, method and its hyper-parameters, recipe,
seed, precision, teacher *weights* by their sha256) and leaves out where and how the run is
watched (device, output folder, W&B, progress display, teacher paths). Data is identified by its
content, not its path: for data whose name does not pin its content (image folders, CIFAR read without
the checksum check) the hash covers the fingerprint of :func:`kdsuite.experiments.identity.hash_fingerprint`.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from kdsuite.core.errors import ConfigError
from kdsuite.core.yamlio import parse_yaml_value, read_yaml_mapping  # noqa: F401 (re-exported)
from kdsuite.engine.settings import MAX_LR, OPTIMIZERS, SCHEDULES  # noqa: F401 (re-exported)
from kdsuite.experiments.settings import RunConfig, check, declared_defaults
from kdsuite.experiments.view_rules import resolve_views
from kdsuite.methods.registry import get_method

# every default, as a mapping: declared once, on the section models of kdsuite.experiments.settings
DEFAULTS: Dict[str, Any] = declared_defaults()

# fields that do not change a run's result, so they stay out of its identity
NON_IDENTITY = ("name", "device", "log_every", "progress", "output", "wandb")
# fields added after run records existed: left out of the identity while at these values, so the hashes
# (and run folders) of earlier runs stay valid
HASH_NEUTRAL = {"sync_bn": False}


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and k not in ("hparams", "kwargs"):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_value(text: str, key: Optional[str] = None) -> Any:
    """A ``--set`` value: YAML scalars, lists and mappings (``4``, ``1e-3``, ``true``, ``[150,180]``), read by
    the strict loader of :mod:`kdsuite.core.yamlio`; one that does not parse names the key and the text."""
    return parse_yaml_value(text, key)


# sections a config may write as one word: ``method: kd``, ``student: cifar_resnet8``
SHORTHAND = {"method": "name", "student": "arch"}


def _set_one(cfg: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(p.strip() for p in parts):
        raise ConfigError(f"--set {key}: empty part in the dotted key; expected e.g. method.hparams.T=4")
    node: Any = cfg
    for i, p in enumerate(parts[:-1]):
        here = node.get(p)
        if not isinstance(here, dict):
            path = ".".join(parts[:i + 1])
            if path in SHORTHAND and isinstance(here, str):
                node[p] = {SHORTHAND[path]: here}  # `method: kd` read as {name: kd}, so method.hparams.T applies
            elif here is None:
                node[p] = {}
            else:
                raise ConfigError(f"--set {key}: '{path}' is {here!r}, not a section; set '{path}' itself, or "
                                  f"give it as a mapping")
        node = node[p]
    node[parts[-1]] = value


def apply_overrides(cfg: Dict[str, Any], pairs: List[str]) -> Dict[str, Any]:
    """``["method.hparams.T=2", "epochs=3"]`` applied to ``cfg`` (dotted paths). Pairs compose whatever their
    order: a key is set before the keys below it (``method=kd`` before ``method.hparams.T=2``), and a dotted
    key reaches into a section written as one word (``method: kd``)."""
    cfg = copy.deepcopy(dict(cfg))
    parsed = []
    for pair in pairs:
        if not isinstance(pair, str) or "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. method.hparams.T=4")
        key, text = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {pair!r}: the key before '=' is empty; expected KEY=VALUE")
        parsed.append((key, parse_value(text, key)))
    # shallower keys first (stable: pairs of one depth keep their order, the last one winning)
    for key, value in sorted(parsed, key=lambda kv: kv[0].count(".")):
        _set_one(cfg, key, value)
    return cfg


def load_yaml(path: str | Path) -> Dict[str, Any]:
    return read_yaml_mapping(path, "config file")


class Resolved(dict):
    """A resolved config as written (what is hashed, recorded and shown) with its typed, validated
    form in :attr:`settings`, made by :func:`validate`."""
    settings: RunConfig


def validate(raw: Mapping[str, Any]) -> Resolved:
    """Merge ``raw`` over the defaults and check every field (once, through
    :class:`~kdsuite.experiments.settings.RunConfig`); returns the config as written, shorthand forms
    expanded and method hyper-parameters filled with their defaults, with the typed config attached."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config must be a mapping of fields, got {raw!r}")
    cfg = Resolved(deep_merge(DEFAULTS, raw))
    typed = check(cfg)
    # the written form keeps values as given (``lr: 1e-3`` stays a string, ``warmup_epochs: 5`` an integer),
    # so that hashes stay what they were; only shorthand forms are expanded, as the models read them
    if isinstance(cfg["student"], str):
        cfg["student"] = {"arch": cfg["student"], "kwargs": {}}
    cfg["student"].setdefault("kwargs", {})
    if cfg["student"].get("search"):
        cfg["student"]["arch"] = typed.student.arch  # None until the search has chosen (search.resolve_search)
    else:
        cfg["student"].pop("search", None)  # written configs (records) as before the field existed
    cfg["teachers"] = [{"checkpoint": t} if isinstance(t, str) else t for t in cfg["teachers"]]
    if isinstance(cfg["method"], str):
        cfg["method"] = {"name": cfg["method"], "hparams": {}}
    cfg["method"]["hparams"] = typed.method.hp.as_dict()
    resolve_views(cfg["dataset"], get_method(cfg["method"]["name"]), bool(cfg["teachers"]))
    typed.dataset.views = cfg["dataset"]["views"]
    cfg.settings = typed
    return cfg


def settings_of(cfg: Mapping[str, Any]) -> RunConfig:
    """The typed form of a resolved config: attached by :func:`validate`, or checked again when ``cfg``
    arrived as a plain mapping (a record's config)."""
    typed = getattr(cfg, "settings", None)
    return typed if isinstance(typed, RunConfig) else validate(cfg).settings


def effective(cfg: Mapping[str, Any], device_type: str) -> Dict[str, Any]:
    """The fast-path switches as they apply on ``device_type`` ("cuda" / "cpu"): ``fast_path: auto``
    is on with CUDA; each ``auto`` field then follows it. Recorded in every run record."""
    fast = cfg["fast_path"] is True or (cfg["fast_path"] == "auto" and device_type == "cuda")
    small = cfg["dataset"]["name"] in ("digits", "cifar10", "cifar100")
    return {
        "fast_path": fast,
        "precision": cfg["precision"] if cfg["precision"] != "auto" else ("bf16" if fast else "fp32"),
        "channels_last": cfg["channels_last"] if cfg["channels_last"] != "auto" else fast,
        # CIFAR's derived views (dataset.views) are rendered in the tensor pipeline only
        "pipeline": cfg["dataset"]["pipeline"] if cfg["dataset"]["pipeline"] != "auto"
        else ("tensor" if (fast and small) or (small and cfg["dataset"].get("views")) else "loader"),
        "compile": bool(cfg["compile"]),
    }


def _is_zero(v: Any) -> bool:
    # val_fraction 0 holds nothing out: the data of runs made before the validation split existed
    try:
        return float(v) == 0.0
    except (TypeError, ValueError):
        return False


def _identity_hparams(method: Mapping[str, Any]) -> Dict[str, Any]:
    """The method's hyper-parameters but those declared ``hash_neutral`` and at their default."""
    declared = get_method(method["name"]).hparams
    return {k: v for k, v in (method.get("hparams") or {}).items()
            if not (k in declared and declared[k].hash_neutral and v == declared[k].default)}


def identity(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """The part of a resolved config that decides the result."""
    ident = {k: copy.deepcopy(v) for k, v in cfg.items()
             if k not in NON_IDENTITY and not (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k])}
    ident["method"] = {k: v for k, v in dict(ident["method"], hparams=_identity_hparams(ident["method"])).items()
                       if not (k == "pairs" and v is None)}  # method.pairs came later: out of the hash while null
    ident["dataset"] = {k: v for k, v in ident["dataset"].items()
                        if k not in ("root", "download") and not (k == "views" and v is None)
                        and not (k == "aug_views" and v in (None, ["weak"]))
                        and not (k == "val_fraction" and _is_zero(v))}
    from kdsuite.experiments.identity import hash_fingerprint

    fp = hash_fingerprint(cfg["dataset"])
    if fp is not None:  # absent for digits and checksummed CIFAR, whose hashes therefore stay as they were
        ident["dataset"]["content"] = fp
    # a searched student is identified by its candidates (the choice follows from them); the field is
    # left out when unused, so that the hashes of runs made before it existed stay
    search = ident["student"].pop("search", None)
    if search:
        ident["student"] = {"kwargs": ident["student"].get("kwargs", {}),
                            "search": [c.get("config_hash") or c["run"] for c in search["candidates"]]}
    # a teacher is identified by the run that made it (its config hash) or else by its weights
    ident["teachers"] = [{"arch": t.get("arch"), "id": t.get("config_hash") or t.get("sha256")}
                         for t in ident["teachers"]]
    return ident


# a number YAML 1.1 read as a string (no dot, or an unsigned exponent: ``1e-3``, ``5E-4``, ``1.0e3``): the
# strict loader reads it as a float, and the identity hashes its value, so ``lr: 1e-3`` and ``lr: 0.001``
# are one run. Records written before, holding the string, are found by run.run_dir_for.
_SCI = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")


def canonical(value: Any) -> Any:
    """``value`` with every number written as a string (``'1e-3'``) replaced by the number."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, str) and len(value) <= 32 and _SCI.fullmatch(value):
        return float(value)
    return value


def _digest(ident: Mapping[str, Any]) -> str:
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def config_hash(cfg: Mapping[str, Any]) -> str:
    """The run's identity: a digest of :func:`identity`, numbers by value (:func:`canonical`)."""
    return _digest(canonical(identity(cfg)))


def legacy_config_hash(cfg: Mapping[str, Any]) -> str:
    """The identity as hashed before numbers were read by value: numbers as written (``'1e-3'``). Equal to
    :func:`config_hash` for every config that writes no number as a string."""
    return _digest(identity(cfg))
