"""Grid files: methods × teacher→student pairs × seeds (× hyper-parameters), in stages.

Role in the flow: a grid file (``experiments/grids/*.yaml``) expands into run configs, each
identified by its config hash; executors (``kdsuite.slurm.executors``: local, debug, Slurm) run them stage by
stage through :func:`kdsuite.experiments.run.run`; ``kdsuite grid plan|launch|status`` (``kdsuite.cli_grid``)
drives them.

Format::

    name: demo
    description: one line              # optional
    output: runs/demo                  # run folders go here (and the Slurm launch manifest)
    gpu_hours_per_run: 0.5             # optional: GPU-hours of one run, for `grid plan`'s estimate
    resources: {...}                   # optional: cluster resources of every stage (see below)
    defaults: {...}                    # merged into every run config (dataset, optim, schedule ...)
    teachers:                          # optional: teacher records that exist already, by key
      resnet32x4: {checkpoint: /shared/teachers/resnet32x4}   # or just the path; ~ and $VARS expand
    stages:
      teachers:                        # a stage of explicit runs
        runs:
          - {key: wrn_16_2, student: cifar_wrn_16_2, epochs: 30}
        resources: {gpus_per_node: 1, timeout_min: 600}   # per stage: overrides the profile's fields
        gpu_hours_per_run: 2.0         # per stage: overrides the grid-wide estimate
      students:
        needs: teachers                # runs wait for the teachers they name
        axes:                          # crossed
          method: [vanilla, kd]
          pair: [{teachers: [wrn_16_2], student: cifar_resnet8}]
          seed: [0, 1]
          "method.hparams.T": [2, 4]   # any dotted config path can be an axis
        student_overrides: {cifar_mobilenetv2: {optim: {lr: 0.01}}}   # merged into runs of that student
        method_overrides: {kd: {method: {hparams: {alpha: 0.1}}}}      # merged into runs of that method
        method_pairs: {aver: [{teachers: [a, b], student: cifar_resnet8}]}   # replaces `pair` for a method
        overrides:                     # per-run recipes: merged into the runs that match every key
          - match: {method: dkd, pair: {teachers: [wrn_16_2], student: cifar_resnet8}}
            set: {method: {hparams: {beta: 2.0}}}
        exclude: [{method: kd, seed: 1}]

Order of merging for one run: ``defaults`` < the run's own fields / axis values < ``student_overrides``
(by student architecture) < ``method_overrides`` (by method name) < ``overrides`` (in file order).
``student_overrides`` also applies to the explicit ``runs`` of a stage (e.g. a lower learning rate for
every MobileNetV2). The override layers merge recursively, ``method.hparams`` included (a method
override's ``alpha`` and an axis's ``T`` both survive).

An ``overrides`` rule matches on the stage's axis names (``method``, ``pair``, ``seed``, dotted axes;
``pair`` after ``method_pairs``) and on ``student`` (architecture) and ``teachers`` (list of teacher keys);
each value must equal the run's. A rule that matches no planned run is an error (a typo would otherwise
apply nothing). Every run records the settings its overrides change from the grid's defaults
(``RunSpec.settings``, dotted paths), which ``kdsuite grid plan`` prints per run.

``resources`` (grid-wide, then per stage; each field overrides the Slurm profile's field of the same
name, see ``slurm/README.md``): ``partition``, ``account``, ``nodes``, ``gpus_per_node``,
``tasks_per_node`` (processes per node; > 1 trains data-parallel with torch.distributed, one process
per GPU — default: ``gpus_per_node`` when that is > 1), ``cpus_per_task``, ``mem_gb``, ``timeout_min``,
``constraint``, ``qos``, ``gres``, ``array_parallelism``, ``max_num_timeout`` (requeues after a time-out),
``pack`` (several runs per job, see ``kdsuite.slurm.packing``).


A pair's teacher key names either a run of an earlier stage (``key:``; the student waits for it) or an
entry of the grid-wide ``teachers`` map: a record folder made by ``kdsuite teacher import`` (released
RepDistiller / mdistiller / torchvision weights) or ``kdsuite train-teacher``. Such a record must exist
when the grid is expanded: its architecture and weight hash become part of each student's identity, and
its students are planned with no teacher stage to wait for.

A pair's student may be a search instead of a model: ``{teachers: [T], student: {search: STAGE}}`` trains
the architecture that the candidate runs of the earlier stage ``STAGE`` (each run of a ``nas`` method, e.g.
``tgas``, leaving a proxy score in its record) rank first; the run waits for every candidate and its
identity is theirs (see :mod:`kdsuite.experiments.search`). ``student_overrides`` do not apply to it (its
architecture is chosen when it starts).

A method that takes no teacher (vanilla, online, self) drops the pair's teachers; runs that end up
identical (same config hash) are planned once. Every problem of a grid (unknown method / model /
dataset, values out of range, teacher keys no earlier stage produces, bad resources) is collected and
raised together in one :class:`ConfigError`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Set

from kdsuite.experiments.config import ConfigError, apply_overrides, config_hash, deep_merge, read_yaml_mapping, validate
from kdsuite.experiments.run_paths import run_dir_for
from kdsuite.experiments.grid_resources import check_hours, check_resources, timeout_problem  # noqa: F401 (timeout_problem: re-exported)
from kdsuite.experiments.grid_rules import changed_settings, check_override_keys, check_rules
from kdsuite.experiments.grid_points import axis_points, axis_raw, explicit_points, explicit_raw
from kdsuite.experiments.grid_problems import RunProblems, grouped_problems
from kdsuite.experiments.grid_size import check_size, progress_printer
from kdsuite.experiments.grid_teachers import existing_teachers, teacher_problems
from kdsuite.experiments.schemas import check_grid_file
from kdsuite.core.names import name_problem

GRID_DIR = Path(__file__).parent / "grids"
STAGE_KEYS = {"runs", "axes", "needs", "resources", "method_overrides", "method_pairs", "exclude", "parallel",
              "student_overrides", "gpu_hours_per_run", "overrides"}
GRID_KEYS = {"name", "output", "defaults", "stages", "description", "gpu_hours_per_run", "resources", "teachers"}
@dataclass
class RunSpec:
    stage: str
    cfg: Dict[str, Any]
    hash: str
    run_dir: Path
    key: Optional[str] = None               # teacher key, for runs other runs depend on
    needs: List[str] = field(default_factory=list)  # hashes of runs this one waits for
    settings: Dict[str, Any] = field(default_factory=dict)  # dotted path -> value the overrides changed
    teacher_keys: List[str] = field(default_factory=list)   # the pair's teacher keys (for display)

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

    @property
    def output(self) -> Path:
        return Path(self.spec.get("output") or f"runs/{self.name}")

    def stage_spec(self, stage: str) -> Dict[str, Any]:
        return (self.spec.get("stages") or {}).get(stage) or {}

    def resources(self, stage: str) -> Dict[str, Any]:
        """The grid-wide ``resources`` with the stage's own on top (profile fields they override)."""
        return {**(self.spec.get("resources") or {}), **(self.stage_spec(stage).get("resources") or {})}

    def gpu_hours_per_run(self, stage: str) -> Optional[float]:
        v = self.stage_spec(stage).get("gpu_hours_per_run", self.spec.get("gpu_hours_per_run"))
        return None if v is None else float(v)

    def by_hash(self) -> Dict[str, RunSpec]:
        return {r.hash: r for r in self.all_runs()}


def find_grid(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    if os.path.lexists(p) or os.sep in name_or_path or p.suffix in (".yaml", ".yml"):
        from kdsuite.core.fileio import check_readable_file

        check_readable_file(p, "grid file", "expected a grid YAML file or the name of a shipped grid ("
                            + ", ".join(sorted(x.stem for x in GRID_DIR.glob("*.yaml"))) + ")")
    cand = GRID_DIR / f"{name_or_path}.yaml"
    if cand.exists():
        return cand
    shipped = sorted(x.stem for x in GRID_DIR.glob("*.yaml"))
    raise ConfigError(f"grid '{name_or_path}' is neither a file nor a shipped grid; shipped: {', '.join(shipped)}")


def load_grid(name_or_path: str, output: Optional[str] = None, overrides: Optional[List[str]] = None,
              max_runs: Optional[int] = None) -> Grid:
    path = find_grid(name_or_path)
    spec = read_yaml_mapping(path, "grid file")
    if output:
        spec["output"] = output
    return expand(spec, path, overrides or [], max_runs=max_runs)


@dataclass
class _Expansion:
    """What expanding one grid carries from stage to stage."""
    name: str
    defaults: Dict[str, Any]                    # the grid's defaults (output root and --set applied)
    existing: Dict[str, Dict[str, Any]]         # the grid-wide teachers map, resolved
    errors: List[str]
    teacher_runs: Dict[str, RunSpec] = field(default_factory=dict)  # key -> the run exporting that teacher
    stage_runs: Dict[str, List[RunSpec]] = field(default_factory=dict)  # the stages expanded so far, in order
    run_problems: List[tuple] = field(default_factory=list)  # (run label, [problem, ...]) of each refused run
    failed_keys: Dict[str, str] = field(default_factory=dict)  # teacher key -> the label of its refused run
    progress: Optional[Callable[[int], None]] = None  # called with the number of runs planned so far
    planned: int = 0
    refused: Set[str] = field(default_factory=set)  # keys of the teachers map whose record is refused


def expand(spec: Dict[str, Any], path: Optional[Path] = None, overrides: Optional[List[str]] = None,
           max_runs: Optional[int] = None) -> Grid:
    """Expand and validate every run of ``spec``; all problems are collected and raised together. A grid
    asking for more than ``max_runs`` runs (default :data:`~kdsuite.experiments.grid_size.MAX_RUNS`) is refused
    before anything is expanded."""
    errors: List[str] = []
    source = f"grid file '{path}'" if path else "grid"
    check_grid_file(spec, source)  # the shape first: what follows walks it
    name = spec.get("name") or (path.stem if path else "grid")
    if name_problem(name):
        raise ConfigError(f"{source}: name (from the file name) = {name!r}: {name_problem(name)}; set `name:`")
    counts = check_size(spec, name, max_runs)
    errors += _check_grid_fields(spec)
    output = spec.get("output") or f"runs/{name}"
    defaults = apply_overrides(deep_merge(spec.get("defaults") or {}, {"output": {"root": output}}), overrides or [])
    stages_spec = spec.get("stages") or {}
    if not stages_spec:
        errors.append("grid: no stages")
    refused: List[str] = []
    ex = _Expansion(name, defaults, existing_teachers(spec, errors, refused), errors, refused=set(refused),
                    progress=progress_printer(name, sum(counts.values())))
    for sname, st in stages_spec.items():
        ex.stage_runs[sname] = _expand_stage(ex, sname, st, list(ex.stage_runs))
    errors += grouped_problems(ex.run_problems)
    if errors:
        raise ConfigError(f"grid '{name}' has {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return Grid(name, path, spec, ex.stage_runs)


def _check_grid_fields(spec: Mapping[str, Any]) -> List[str]:
    unknown = sorted(set(spec) - GRID_KEYS)
    out = [f"grid: unknown field(s) {unknown}; allowed: {sorted(GRID_KEYS)}"] if unknown else []
    return out + check_resources(spec.get("resources"), "resources") + \
        check_hours(spec.get("gpu_hours_per_run"), "gpu_hours_per_run")


def _check_stage_fields(st: Mapping[str, Any], where: str) -> List[str]:
    bad = sorted(set(st) - STAGE_KEYS)
    out = [f"{where}: unknown field(s) {bad}; allowed: {sorted(STAGE_KEYS)}"] if bad else []
    out += check_resources(st.get("resources"), f"{where}.resources")
    out += check_hours(st.get("gpu_hours_per_run"), f"{where}.gpu_hours_per_run")
    out += check_override_keys(st, where)
    return out


def _expand_stage(ex: _Expansion, sname: str, st: Any, earlier: List[str]) -> List[RunSpec]:
    """The runs of one stage (problems go to ``ex.errors``); runs with the same hash are planned once."""
    where = f"stages.{sname}"
    if not isinstance(st, Mapping):
        ex.errors.append(f"{where}: must be a mapping with runs/axes, got {st!r}")
        return []
    ex.errors.extend(_check_stage_fields(st, where))
    rule_problems = check_rules(st.get("overrides"), st.get("axes"), where)
    ex.errors.extend(rule_problems)
    needs = st.get("needs")
    if needs is not None and needs not in earlier:
        ex.errors.append(f"{where}.needs = {needs!r}: no earlier stage has that name (earlier: {earlier})")
    rules = [] if rule_problems else list(st.get("overrides") or [])
    points = explicit_points(ex, st, where)
    if rules and not st.get("axes"):
        ex.errors.append(f"{where}.overrides: only a stage with axes can match runs by rule")
        rules = []
    rule_hits = [0] * len(rules)
    points += axis_points(ex, st, where)
    out: Dict[str, RunSpec] = {}
    for label, key, explicit, p in points:
        ex.planned += 1
        if ex.progress:
            ex.progress(ex.planned)
        point_errors: List[str] = []
        try:
            if explicit is not None:
                raw, layers = explicit_raw(ex, st, explicit)
            else:
                raw, layers = axis_raw(ex, st, p, rules, rule_hits, point_errors)
            run = _plan_run(ex, sname, raw, layers, key, p, point_errors)
            if key is not None:
                ex.teacher_runs[key] = run
            out.setdefault(run.hash, run)
        except ConfigError as e:
            ex.run_problems.append((label, e.problems if isinstance(e, RunProblems) else [str(e)]))
            if key is not None:
                ex.failed_keys[key] = label
    for ri, hits in enumerate(rule_hits):
        if not hits:
            ex.errors.append(f"{where}.overrides[{ri}]: match {dict(rules[ri]['match'])!r} matches no run "
                             f"of this stage (check the method, pair and teacher keys against axes/exclude)")
    if not points and not ("axes" in st and not st["axes"]):
        ex.errors.append(f"{where}: plans no runs (no `runs`, no `axes`, or `exclude` removes every point)")
    return list(out.values())


def _plan_run(ex: _Expansion, sname: str, raw: Dict[str, Any], layers: Mapping[str, Any], key: Optional[str],
              p: Mapping[str, Any], point_errors: List[str]) -> RunSpec:
    """Validate one run's config and plan it (its hash, folder, the runs it waits for)."""
    raw.setdefault("name", ex.name)
    if key is not None:
        raw["export_teacher"] = True
    try:
        cfg = validate(raw)
        point_errors.extend(teacher_problems(cfg, ex.teacher_runs, ex.existing))
    except ConfigError as e:
        # a missing teacher also breaks the teacher count; report the cause, not that
        if not (point_errors and "teacher(s), the config gives" in str(e)):
            point_errors.append(str(e))
    if point_errors:
        raise RunProblems(point_errors)
    h = config_hash(cfg)
    produced = {r.hash for r in ex.teacher_runs.values()}
    search = cfg["student"].get("search") or {}
    return RunSpec(sname, cfg, h, run_dir_for(cfg, h), key=key,
                   needs=[t["config_hash"] for t in cfg["teachers"] if t.get("config_hash") in produced]
                   + [c["config_hash"] for c in search.get("candidates", [])],
                   settings=changed_settings(layers, ex.defaults),
                   teacher_keys=list((p.get("pair") or {}).get("teachers") or []) if cfg["teachers"] else [])
