"""Run configs: defaults, YAML loading, dotted overrides, validation and the config hash.

Role in the flow: the first step. A run config (a YAML file, a grid entry or CLI ``--set`` pairs)
is merged over :data:`DEFAULTS`, validated by :func:`validate` — every error names the field, the
value and what is allowed, before any model is built or file written — and hashed by
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
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import yaml

from kdsuite.core.errors import ConfigError
from kdsuite.methods.hparams import HParam, resolve_hparams
from kdsuite.engine.trainer import OPTIMIZERS, SCHEDULES

DEFAULTS: Dict[str, Any] = {
    "name": None,
    "seed": 0,
    "dataset": {"name": "digits", "root": "data", "download": True, "verify_checksums": True,
                "batch_size": 64, "eval_batch_size": 256, "num_workers": 0, "image_size": None,
                "augment": None, "pipeline": "auto", "train_fraction": 1.0,
                "val_fraction": 0.1},  # held out of the training split; "best" epoch chosen on it
    "student": {"arch": "cifar_resnet8", "kwargs": {}},
    "teachers": [],
    "method": {"name": "vanilla", "hparams": {}},
    "epochs": 10,
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False},
    "schedule": {"name": "step", "milestones": [], "gamma": 0.1, "warmup_epochs": 0, "min_lr_ratio": 0.0},
    "optimizers": {},
    "eval_every": 1,
    "fast_path": "auto",     # auto = on with CUDA, off on CPU; sets the three "auto" fields below
    "precision": "auto",     # fp32 | bf16 | auto (bf16 with the fast path)
    "channels_last": "auto",  # true | false | auto (true with the fast path)
    "compile": False,        # torch.compile student and teachers
    "teacher_cache": "auto",  # reuse teacher logits across epochs: auto = when valid (no random augmentation)
    "grad_clip": None,
    "sync_bn": False,        # data-parallel runs on GPUs: synchronise batch-norm statistics across processes
    "max_steps_per_epoch": None,
    "device": "auto",
    "deterministic": True,
    "log_every": 50,
    "progress": "auto",
    "export_teacher": False,
    "output": {"root": "runs"},
    "wandb": {"mode": "disabled", "project": "kdsuite", "entity": None, "group": None, "tags": []},
}

# the largest learning rate accepted: far above any recipe (SGD on CIFAR/ImageNet uses 0.01–0.4, LARS-style
# large-batch recipes a few units); a larger value is a typo (a missing "e-3") that would only diverge
MAX_LR = 10.0

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


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalars and lists (``4``, ``0.1``, ``true``, ``[150,180]``)."""
    return yaml.safe_load(text)


def apply_overrides(cfg: Dict[str, Any], pairs: List[str]) -> Dict[str, Any]:
    """``["method.hparams.T=2", "epochs=3"]`` applied to ``cfg`` (dotted paths)."""
    cfg = copy.deepcopy(cfg)
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. method.hparams.T=4")
        key, value = pair.split("=", 1)
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{p}' is not a section")
        node[parts[-1]] = parse_value(value)
    return cfg


def read_yaml_mapping(path: str | Path, what: str = "config file") -> Dict[str, Any]:
    """A YAML file that must hold a mapping; a missing file, a syntax error (with its line) or another
    top-level type is a :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{what} '{path}': not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} '{path}': not a text file ({e.reason})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping of fields, not a {type(data).__name__}")
    return data


def load_yaml(path: str | Path) -> Dict[str, Any]:
    return read_yaml_mapping(path, "config file")


def _check_keys(section: Mapping[str, Any], allowed: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def _check(field: str, value: Any, spec: HParam) -> Any:
    return spec.check(field, value)


def _number(field: str, value: Any, spec: HParam) -> float:
    """A float field: a number, or a string YAML left unparsed (``1e-3``), finite and within ``spec``'s
    range. The config keeps the value as written (its hash stays what it was)."""
    if isinstance(value, str):
        try:
            num = float(value)
        except ValueError:
            raise ConfigError(f"{field} = {value!r} is not {spec.allowed()}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        num = float(value)
    else:
        raise ConfigError(f"{field} = {value!r} is not {spec.allowed()}")
    if math.isinf(num):
        raise ConfigError(f"{field} = {value!r} is not finite; expected {spec.allowed()}")
    return spec.check(field, num)


def validate(raw: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge ``raw`` over the defaults and check every field; returns the resolved config
    (method hyper-parameters filled with their defaults)."""
    from kdsuite.experiments.data import DATASETS
    from kdsuite.methods.registry import get_method

    _check_keys(raw, DEFAULTS, "config")
    cfg = deep_merge(DEFAULTS, raw)
    for sec in ("dataset", "optim", "schedule", "output", "wandb"):
        if not isinstance(cfg[sec], dict):
            raise ConfigError(f"{sec} must be a mapping, got {cfg[sec]!r}")
        _check_keys(cfg[sec], DEFAULTS[sec], sec)
    ds = cfg["dataset"]
    _check("dataset.name", ds["name"], HParam("digits", choices=DATASETS))
    _check("dataset.batch_size", ds["batch_size"], HParam(64, low=1))
    _check("dataset.eval_batch_size", ds["eval_batch_size"], HParam(256, low=1))
    _check("dataset.num_workers", ds["num_workers"], HParam(0, low=0))
    _number("dataset.train_fraction", ds["train_fraction"], HParam(1.0, low=0, low_open=True, high=1.0))
    _number("dataset.val_fraction", ds["val_fraction"], HParam(0.1, low=0, high=0.5, high_open=True))
    _check("dataset.pipeline", ds["pipeline"], HParam("loader", choices=("auto", "loader", "tensor")))
    if ds["image_size"] is not None:
        _check("dataset.image_size", ds["image_size"], HParam(16, low=8))
    _check("seed", cfg["seed"], HParam(0, low=0))
    _check("epochs", cfg["epochs"], HParam(1, low=0))
    _check("eval_every", cfg["eval_every"], HParam(1, low=1))
    _check("log_every", cfg["log_every"], HParam(1, low=1))
    _check("precision", cfg["precision"], HParam("fp32", choices=("auto", "fp32", "bf16")))
    _check("fast_path", cfg["fast_path"], HParam("auto", choices=("auto", True, False), kind=object))
    _check("channels_last", cfg["channels_last"], HParam("auto", choices=("auto", True, False), kind=object))
    _check("compile", cfg["compile"], HParam(False))
    _check("sync_bn", cfg["sync_bn"], HParam(False))
    _check("teacher_cache", cfg["teacher_cache"], HParam("auto", choices=("auto", True, False), kind=object))
    _check("device", cfg["device"], HParam("auto", kind=str))
    _check("progress", cfg["progress"], HParam("auto", choices=("auto", "bar", "lines", "none")))
    if cfg["max_steps_per_epoch"] is not None:
        _check("max_steps_per_epoch", cfg["max_steps_per_epoch"], HParam(1, low=1))
    if cfg["grad_clip"] is not None:
        _number("grad_clip", cfg["grad_clip"], HParam(1.0, low=0, low_open=True))
    _check_optim(cfg["optim"], "optim")
    _check_schedule(cfg["schedule"], "schedule", cfg["epochs"])
    if not isinstance(cfg["optimizers"], dict):
        raise ConfigError(f"optimizers must map group names to overrides, got {cfg['optimizers']!r}")
    for name, over in cfg["optimizers"].items():
        if not isinstance(over, dict):
            raise ConfigError(f"optimizers.{name} must be a mapping, got {over!r}")
        merged = dict(cfg["optim"], **{k: v for k, v in over.items() if k != "schedule"})
        _check_keys({k: v for k, v in over.items() if k != "schedule"}, DEFAULTS["optim"] | {"betas": 0},
                    f"optimizers.{name}")
        _check_optim(merged, f"optimizers.{name}")
        if "schedule" in over:
            _check_schedule(dict(cfg["schedule"], **over["schedule"]), f"optimizers.{name}.schedule", cfg["epochs"])
    _check("wandb.mode", cfg["wandb"]["mode"], HParam("disabled", choices=("online", "offline", "disabled")))

    # student / teachers / method
    st = cfg["student"]
    if isinstance(st, str):
        st = cfg["student"] = {"arch": st, "kwargs": {}}
    _check_keys(st, DEFAULTS["student"], "student")
    st.setdefault("kwargs", {})
    if not isinstance(st.get("arch"), str):
        raise ConfigError(f"student.arch must be a model name, got {st.get('arch')!r}")
    from kdsuite import zoo

    if not zoo.known_arch(st["arch"]):
        zoo.create_model(st["arch"], num_classes=10)  # raises the listing error
    _check_model_kwargs(st["arch"], st["kwargs"])
    if not isinstance(cfg["teachers"], list):
        raise ConfigError(f"teachers must be a list of {{checkpoint: PATH}} entries, got {cfg['teachers']!r}")
    for i, t in enumerate(cfg["teachers"]):
        if isinstance(t, str):
            t = cfg["teachers"][i] = {"checkpoint": t}
        if not isinstance(t, dict) or "checkpoint" not in t:
            raise ConfigError(f"teachers[{i}] must be {{checkpoint: PATH}}, got {t!r}")
        _check_keys(t, {"checkpoint": 0, "arch": 0, "sha256": 0, "config_hash": 0}, f"teachers[{i}]")
    m = cfg["method"]
    if isinstance(m, str):
        m = cfg["method"] = {"name": m, "hparams": {}}
    _check_keys(m, DEFAULTS["method"], "method")
    try:
        cls = get_method(m["name"])
    except KeyError as e:
        raise ConfigError(f"method.name: {e.args[0]}") from None
    m["hparams"] = vars(resolve_hparams(cls.name, cls.hparams, m.get("hparams") or {}))
    if not cls.teacher_count_ok(len(cfg["teachers"])):
        raise ConfigError(f"teachers: method '{cls.name}' takes {cls.teacher_count_text()} teacher(s), "
                          f"the config gives {len(cfg['teachers'])}")
    return cfg


def _check_model_kwargs(arch: str, kwargs: Any) -> None:
    """``student.kwargs`` must be keywords the model accepts: the model is built once on the meta
    device (no memory, no weights) so that a wrong keyword fails here, not in the job."""
    if not isinstance(kwargs, dict):
        raise ConfigError(f"student.kwargs must be a mapping of model keywords, got {kwargs!r}")
    trial = {k: v for k, v in kwargs.items() if k != "pretrained"}
    if not trial:
        return
    import torch

    from kdsuite import zoo

    try:
        with torch.device("meta"):
            zoo.create_model(arch, num_classes=10, **trial)
    except TypeError as e:
        raise ConfigError(f"student.kwargs = {kwargs!r}: model '{arch}' does not accept them ({e})") from None


def _check_optim(o: Mapping[str, Any], where: str) -> None:
    _check(f"{where}.name", o.get("name"), HParam("sgd", choices=OPTIMIZERS))
    _number(f"{where}.lr", o.get("lr", -1), HParam(0.1, low=0, low_open=True, high=MAX_LR))
    _number(f"{where}.weight_decay", o.get("weight_decay", 0), HParam(0.0, low=0, high=1))
    _number(f"{where}.momentum", o.get("momentum", 0), HParam(0.9, low=0, high=1, high_open=True))


def _check_schedule(s: Mapping[str, Any], where: str, epochs: int) -> None:
    _check_keys(s, DEFAULTS["schedule"], where)
    _check(f"{where}.name", s.get("name"), HParam("step", choices=SCHEDULES))
    _number(f"{where}.gamma", s.get("gamma", 0.1), HParam(0.1, low=0, low_open=True, high=1))
    _number(f"{where}.warmup_epochs", s.get("warmup_epochs", 0), HParam(0.0, low=0))
    _number(f"{where}.min_lr_ratio", s.get("min_lr_ratio", 0.0), HParam(0.0, low=0, high=1))
    ms = s.get("milestones", [])
    if not isinstance(ms, list) or any(not isinstance(v, int) or v < 1 for v in ms) or ms != sorted(ms):
        raise ConfigError(f"{where}.milestones = {ms!r}: expected an increasing list of epochs (integers >= 1)")


def effective(cfg: Mapping[str, Any], device_type: str) -> Dict[str, Any]:
    """The fast-path switches as they apply on ``device_type`` ("cuda" / "cpu"): ``fast_path: auto``
    is on with CUDA; each ``auto`` field then follows it. Recorded in every run record."""
    fast = cfg["fast_path"] is True or (cfg["fast_path"] == "auto" and device_type == "cuda")
    small = cfg["dataset"]["name"] in ("digits", "cifar10", "cifar100")
    return {
        "fast_path": fast,
        "precision": cfg["precision"] if cfg["precision"] != "auto" else ("bf16" if fast else "fp32"),
        "channels_last": cfg["channels_last"] if cfg["channels_last"] != "auto" else fast,
        "pipeline": cfg["dataset"]["pipeline"] if cfg["dataset"]["pipeline"] != "auto"
        else ("tensor" if fast and small else "loader"),
        "compile": bool(cfg["compile"]),
    }


def identity(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """The part of a resolved config that decides the result."""
    ident = {k: copy.deepcopy(v) for k, v in cfg.items()
             if k not in NON_IDENTITY and not (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k])}
    ident["dataset"] = {k: v for k, v in ident["dataset"].items() if k not in ("root", "download")}
    from kdsuite.experiments.identity import hash_fingerprint

    fp = hash_fingerprint(cfg["dataset"])
    if fp is not None:  # absent for digits and checksummed CIFAR, whose hashes therefore stay as they were
        ident["dataset"]["content"] = fp
    # a teacher is identified by the run that made it (its config hash) or else by its weights
    ident["teachers"] = [{"arch": t.get("arch"), "id": t.get("config_hash") or t.get("sha256")}
                         for t in ident["teachers"]]
    return ident


def config_hash(cfg: Mapping[str, Any]) -> str:
    blob = json.dumps(identity(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
