"""Grid files: methods × teacher→student pairs × seeds (× hyper-parameters), in stages.

Role in the flow: a grid file (``experiments/grids/*.yaml``) expands into run configs, each
identified by its config hash; executors (``slurm.executors``: local, debug, Slurm) run them stage by
stage through :func:`experiments.run.run`.

Format::

    name: demo
    output: runs/demo                 # run folders go here
    defaults: {...}                   # merged into every run config (dataset, optim, schedule ...)
    stages:
      teachers:                       # a stage of explicit runs
        runs:
          - {key: wrn_16_2, student: cifar_wrn_16_2, epochs: 30}
        resources: {...}              # per-stage cluster resources (slurm profiles)
      students:
        needs: teachers               # runs wait for the teachers they name
        axes:                         # crossed
          method: [vanilla, kd]
          pair: [{teachers: [wrn_16_2], student: cifar_resnet8}]
          seed: [0, 1]
          "method.hparams.T": [2, 4]  # any dotted config path can be an axis
        method_overrides: {kd: {method: {hparams: {alpha: 0.1}}}}
        method_pairs: {aver: [{teachers: [a, b], student: cifar_resnet8}]}   # replaces `pair` for a method
        exclude: [{method: kd, seed: 1}]

A method that takes no teacher (vanilla, online, self) drops the pair's teachers; runs that end up
identical (same config hash) are planned once.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import yaml

from experiments.config import ConfigError, apply_overrides, config_hash, deep_merge, validate
from experiments.run import run_dir_for

GRID_DIR = Path(__file__).parent / "grids"
STAGE_KEYS = {"runs", "axes", "needs", "resources", "method_overrides", "method_pairs", "exclude", "parallel"}


@dataclass
class RunSpec:
    stage: str
    cfg: Dict[str, Any]
    hash: str
    run_dir: Path
    key: Optional[str] = None               # teacher key, for runs other runs depend on
    needs: List[str] = field(default_factory=list)  # hashes of runs this one waits for

    @property
    def label(self) -> str:
        return self.run_dir.name


@dataclass
class Grid:
    name: str
    path: Optional[Path]
    spec: Dict[str, Any]
    stages: Dict[str, List[RunSpec]]

    def all_runs(self) -> List[RunSpec]:
        return [r for runs in self.stages.values() for r in runs]


def find_grid(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    cand = GRID_DIR / f"{name_or_path}.yaml"
    if cand.exists():
        return cand
    shipped = sorted(x.stem for x in GRID_DIR.glob("*.yaml"))
    raise ConfigError(f"grid '{name_or_path}' is neither a file nor a shipped grid; shipped: {', '.join(shipped)}")


def load_grid(name_or_path: str, output: Optional[str] = None, overrides: Optional[List[str]] = None) -> Grid:
    path = find_grid(name_or_path)
    spec = yaml.safe_load(path.read_text()) or {}
    if output:
        spec["output"] = output
    return expand(spec, path, overrides or [])


def _axis_items(axes: Mapping[str, List[Any]], where: str):
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where}.axes.{k} must be a non-empty list, got {v!r}")
    keys = list(axes)
    for combo in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, combo))


def _excluded(point: Mapping[str, Any], rules: List[Mapping[str, Any]]) -> bool:
    return any(all(point.get(k) == v for k, v in rule.items()) for rule in rules)


def expand(spec: Dict[str, Any], path: Optional[Path] = None, overrides: Optional[List[str]] = None) -> Grid:
    """Expand and validate every run of ``spec``; all problems are collected and raised together."""
    errors: List[str] = []
    name = spec.get("name") or (path.stem if path else "grid")
    unknown = sorted(set(spec) - {"name", "output", "defaults", "stages", "description", "gpu_hours_per_run"})
    if unknown:
        errors.append(f"grid: unknown field(s) {unknown}")
    output = spec.get("output") or f"runs/{name}"
    defaults = deep_merge(spec.get("defaults") or {}, {"output": {"root": output}})
    defaults = apply_overrides(defaults, overrides or [])
    stages_spec = spec.get("stages") or {}
    if not stages_spec:
        errors.append("grid: no stages")
    teacher_runs: Dict[str, RunSpec] = {}
    stages: Dict[str, List[RunSpec]] = {}
    for sname, st in stages_spec.items():
        where = f"stages.{sname}"
        bad = sorted(set(st) - STAGE_KEYS)
        if bad:
            errors.append(f"{where}: unknown field(s) {bad}; allowed: {sorted(STAGE_KEYS)}")
        needs = st.get("needs")
        if needs is not None and needs not in stages:
            errors.append(f"{where}.needs = {needs!r}: no earlier stage has that name (earlier: {list(stages)})")
        out: Dict[str, RunSpec] = {}
        points: List[tuple] = []
        for i, r in enumerate(st.get("runs") or []):
            r = dict(r)
            key = r.pop("key", None)
            if "student" in r and isinstance(r["student"], str):
                r["student"] = {"arch": r["student"]}
            points.append((f"{where}.runs[{i}]", key, r, {}))
        rules = st.get("exclude") or []
        for point in (_axis_items(st["axes"], where) if st.get("axes") else []):
            method = point.get("method")
            pairs = (st.get("method_pairs") or {}).get(method) if method else None
            for pair in ([None] if "pair" not in point and pairs is None else (pairs or [point.get("pair")])):
                p = dict(point)
                if pair is not None:
                    p["pair"] = pair
                if _excluded(p, rules):
                    continue
                points.append((f"{where}[{', '.join(f'{k}={v}' for k, v in p.items())}]", None, None, p))
        for label, key, explicit, p in points:
            point_errors: List[str] = []
            try:
                raw = copy.deepcopy(defaults)
                if explicit is not None:
                    raw = deep_merge(raw, explicit)
                else:
                    dotted = []
                    for k, v in p.items():
                        if k == "method":
                            raw["method"] = {"name": v, "hparams": {}}
                        elif k == "seed":
                            raw["seed"] = v
                        elif k == "pair":
                            if not isinstance(v, dict) or "student" not in v:
                                raise ConfigError(f"pair {v!r} must be {{teachers: [KEY...], student: ARCH}}")
                            raw["student"] = {"arch": v["student"], "kwargs": {}}
                            raw["teachers"] = []
                            for tk in v.get("teachers") or []:
                                if tk not in teacher_runs:
                                    point_errors.append(f"teacher key {tk!r} is produced by no earlier stage "
                                                        f"(known: {sorted(teacher_runs)})")
                                    continue
                                t = teacher_runs[tk]
                                raw["teachers"].append({"checkpoint": str(t.run_dir), "arch": t.cfg["student"]["arch"],
                                                        "config_hash": t.hash})
                        else:
                            dotted.append(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}")
                    raw = apply_overrides(raw, dotted)
                    mname = raw["method"]["name"]
                    mo = (st.get("method_overrides") or {}).get(mname)
                    if mo:
                        raw = deep_merge(raw, mo)
                    from methods.registry import get_method

                    try:
                        if get_method(mname).num_teachers == 0:
                            raw["teachers"] = []
                    except KeyError:
                        pass
                raw.setdefault("name", name)
                if key is not None:
                    raw["export_teacher"] = True
                try:
                    cfg = validate(raw)
                except ConfigError as e:
                    # a missing teacher also breaks the teacher count; report the cause, not that
                    if not (point_errors and "teacher(s), the config gives" in str(e)):
                        point_errors.append(str(e))
                if point_errors:
                    raise ConfigError("; ".join(point_errors))
                h = config_hash(cfg)
                spec_ = RunSpec(sname, cfg, h, run_dir_for(cfg, h), key=key,
                                needs=[t["config_hash"] for t in cfg["teachers"] if t.get("config_hash")])
                if key is not None:
                    teacher_runs[key] = spec_
                out.setdefault(h, spec_)
            except ConfigError as e:
                errors.append(f"{label}: {e}")
        stages[sname] = list(out.values())
    if errors:
        raise ConfigError(f"grid '{name}' has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return Grid(name, path, spec, stages)
