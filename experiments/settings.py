"""The run config, typed: one model per section, every default declared here (the trainer's fields in
:mod:`kdsuite.engine.settings`), validated once by :func:`kdsuite.experiments.config.validate`.

Role in the flow: ``validate`` merges a raw config over :data:`kdsuite.experiments.config.DEFAULTS`
(derived from these models by :func:`declared_defaults`), checks it through :class:`RunConfig` and
returns the config as written (what is hashed and recorded) with the typed :class:`RunConfig` attached;
``run.build`` hands ``RunConfig.train_settings(...)`` to the trainer and ``RunConfig.method.hp`` (the
resolved, typed hyper-parameters) to the plugin.

Adding a field to a section: declare it on the section's model with its type, its default and its
check (``rule(HParam(...))`` for integers, booleans, strings and choices; ``number(HParam(...))`` for
floats; ``PlainValidator(fn)`` raising :class:`FieldProblem` for anything else). A field added after
run records existed also goes into ``HASH_NEUTRAL`` (config.py) at its default, so old hashes stay.
"""
from __future__ import annotations

import re

from typing import Any, Dict, List, Optional, Type, Union

from pydantic import BaseModel, PlainValidator, PrivateAttr, ValidationError, model_validator
from typing_extensions import Annotated

from kdsuite.core.errors import ConfigError
from kdsuite.engine.settings import FIELD, FieldProblem, Section, TrainSettings, config_error, number, rule
from kdsuite.experiments.data_bundle import DATASETS, TRAIN_SPLIT_IMAGES  # torch-free: validating a config needs no torch
from kdsuite.methods.hparams import HParam, HParams, resolve_hparams


def _as_written(value: Any) -> Any:
    return value


AsWritten = PlainValidator(_as_written)  # a field kdsuite does not check (its user: data, W&B, paths)


def _path(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise FieldProblem(f"{FIELD} = {value!r} is not a path; expected a folder name as a string")
    if "\x00" in value:
        raise FieldProblem(f"{FIELD} = {value!r}: a path cannot hold a NUL character")
    return value


def _mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise FieldProblem(f"{FIELD} = {value!r} is not a mapping; expected {{NAME: VALUE, ...}}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise FieldProblem(f"{FIELD}: key {bad[0]!r} is not a name")
    return value


def _augment(value: Any) -> Any:
    # None: the data set's default; "cifar" (older configs): on
    if value is None or isinstance(value, bool) or value == "cifar":
        return value
    raise FieldProblem(f"{FIELD} = {value!r} is not allowed; expected true, false or null (the data set's default)")


AUG_VIEW_NAMES = ("weak", "strong", "autoaugment")  # kdsuite.experiments.data_strong.AUG_VIEWS (torch-free here)


def _aug_views(value: Any) -> Any:
    # None: one weak view (the data set's own augmentation), what every run before this field had
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= 2 or any(v not in AUG_VIEW_NAMES for v in value):
        raise FieldProblem(f"{FIELD} = {value!r} is not allowed; expected a list of one or two views from "
                           f"{list(AUG_VIEW_NAMES)} (the first is the batch's x, a second its aug_x), e.g. [weak, strong]")
    return value


def _str_list(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldProblem(f"{FIELD} = {value!r}: expected a list of strings")
    return value


def _opt_str(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise FieldProblem(f"{FIELD} = {value!r}: expected a string or null")
    return value


def _run_name(value: Any) -> Any:
    from kdsuite.core.names import name_problem

    problem = None if value is None else name_problem(value)
    if problem:
        raise FieldProblem(f"{FIELD} = {value!r}: {problem}")
    return value


Path_ = PlainValidator(_path)
Mapping_ = PlainValidator(_mapping)
OptStr = PlainValidator(_opt_str)
AUTO_OR_BOOL = HParam("auto", choices=("auto", True, False), kind=object)


class DatasetSettings(Section):
    name: Annotated[str, rule(HParam("digits", choices=DATASETS))] = "digits"
    root: Annotated[str, Path_] = "data"
    download: Annotated[bool, rule(HParam(True))] = True
    verify_checksums: Annotated[bool, rule(HParam(True))] = True
    batch_size: Annotated[int, rule(HParam(64, low=1))] = 64
    eval_batch_size: Annotated[int, rule(HParam(256, low=1))] = 256
    num_workers: Annotated[int, rule(HParam(0, low=0))] = 0
    image_size: Annotated[Optional[int], rule(HParam(16, low=8), optional=True)] = None
    augment: Annotated[Optional[Union[bool, str]], PlainValidator(_augment)] = None
    pipeline: Annotated[str, rule(HParam("loader", choices=("auto", "loader", "tensor")))] = "auto"
    train_fraction: Annotated[float, number(HParam(1.0, low=0, low_open=True, high=1.0))] = 1.0
    # held out of the training split (class-stratified, fixed seed per data set); the "best" epoch is chosen on it
    val_fraction: Annotated[float, number(HParam(0.1, low=0, high=0.5, high_open=True))] = 0.1
    # paired multi-view data (cross-modal KD): {student: VIEW[, teacher: VIEW]}, normalised by config.validate
    views: Annotated[Optional[Dict[str, Any]], AsWritten] = None  # checked by views.check_views
    # augmented views of each training sample per batch (kdsuite.experiments.data_strong); None = [weak]
    aug_views: Annotated[Optional[List[str]], PlainValidator(_aug_views)] = None

    @model_validator(mode="after")
    def _views_exist(self) -> "DatasetSettings":
        from kdsuite.experiments.view_rules import check_views

        check_views(self.name, self.views)
        if self.aug_views not in (None, ["weak"]):
            if self.name == "imagefolder":
                raise ConfigError(f"dataset.aug_views = {self.aug_views!r}: image folders serve one weak view; "
                                  f"strong views are built for digits, cifar10 and cifar100")
            if self.views:
                raise ConfigError(f"dataset.aug_views = {self.aug_views!r} with dataset.views = {self.views!r}: "
                                  f"augmented views and paired sensor views do not combine; drop one")
        return self


def _check_search(value: Any) -> Any:
    """``student.search``: the candidate runs of an architecture search (kdsuite.experiments.search)."""
    if value is None:
        return None
    cands = value.get("candidates") if isinstance(value, dict) else None
    if not isinstance(cands, list) or not cands or not all(
            isinstance(c, dict) and isinstance(c.get("run"), str) and isinstance(c.get("config_hash", ""), str)
            for c in cands):
        raise FieldProblem(f"{FIELD} must be {{candidates: [{{run: RUN_FOLDER, config_hash: HASH}}, ...]}} (a grid "
                           f"writes it for a pair `student: {{search: STAGE}}`), got {value!r}")
    unknown = sorted(set(value) - {"stage", "candidates", "chosen"})
    if unknown:
        raise FieldProblem(f"{FIELD}: unknown field(s) {unknown}; allowed: candidates, stage, chosen")
    return value


class StudentSettings(Section):
    arch: Annotated[Optional[str], AsWritten] = "cifar_resnet8"  # None: chosen by the search when the run starts
    kwargs: Annotated[Dict[str, Any], Mapping_] = {}
    search: Annotated[Optional[Dict[str, Any]], PlainValidator(_check_search)] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"arch": data}  # student: ARCH
        if isinstance(data, dict) and isinstance(data.get("search"), dict):
            return dict(data, arch=data["search"].get("chosen"))  # the search's choice, once made
        return data

    @model_validator(mode="after")
    def _known_model(self) -> "StudentSettings":
        from kdsuite import zoo

        if self.search is not None:
            if self.kwargs:
                raise ConfigError(f"student.kwargs = {self.kwargs!r}: a searched student takes the candidates' "
                                  f"architectures as they are; give no kwargs")
            if self.arch is None:
                return self
        if not isinstance(self.arch, str):
            raise ConfigError(f"student.arch must be a model name, got {self.arch!r}")
        if not zoo.known_arch(self.arch):
            try:
                zoo.create_model(self.arch, num_classes=10)  # raises the listing error
            except ConfigError as e:
                raise ConfigError(f"student.arch: {e}") from None
        _check_model_kwargs(self.arch, self.kwargs)
        return self


class TeacherEntry(Section):
    checkpoint: Annotated[str, Path_]
    arch: Annotated[Optional[str], OptStr] = None         # filled from the teacher's record
    sha256: Annotated[Optional[str], OptStr] = None       # filled from the teacher's record
    config_hash: Annotated[Optional[str], OptStr] = None  # the run that made it, when kdsuite did

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"checkpoint": data}  # teachers: [PATH]
        if not isinstance(data, dict) or "checkpoint" not in data:
            raise FieldProblem(f"{FIELD} must be {{checkpoint: PATH}}, got {data!r}")
        return data


_TAP = re.compile(r"^feat\d+(_pre)?$")


def _check_pairs(value: Any) -> Any:
    """``method.pairs``: the teacher↔student stage pairs named explicitly, ``[{student: feat<i>, teacher:
    feat<j>}, ...]`` (null: the stated rule, kdsuite.methods.pairing); each tap is checked against its model
    when the method is built."""
    if value is None:
        return None
    allowed = "a non-empty list of {student: feat<i>, teacher: feat<j>} (feature taps, feat<i>_pre for pre-activations)"
    if not isinstance(value, list) or not value:
        raise FieldProblem(f"{FIELD} = {value!r}: expected {allowed}, or null for the relative-depth rule")
    for k, p in enumerate(value):
        if not isinstance(p, dict) or set(p) != {"student", "teacher"}:
            raise FieldProblem(f"{FIELD}[{k}] = {p!r}: expected {{student: feat<i>, teacher: feat<j>}}")
        for side in ("student", "teacher"):
            if not isinstance(p[side], str) or not _TAP.match(p[side]):
                raise FieldProblem(f"{FIELD}[{k}].{side} = {p[side]!r}: expected a feature tap feat<i> or feat<i>_pre")
    keys = [(p["student"], p["teacher"]) for p in value]
    if len(set(keys)) != len(keys):
        raise FieldProblem(f"{FIELD} = {value!r}: a pair is named twice; allowed: {allowed}, each pair once")
    return [dict(p) for p in value]


class MethodSettings(Section):
    name: Annotated[str, rule(HParam("vanilla", kind=str))] = "vanilla"
    hparams: Annotated[Dict[str, Any], Mapping_] = {}  # overrides as written; resolved into .hp
    # explicit stage pairs instead of the relative-depth rule; left out of the config hash while null
    pairs: Annotated[Optional[List[Dict[str, str]]], PlainValidator(_check_pairs)] = None
    _hp: Optional[HParams] = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data  # method: NAME

    @property
    def hp(self) -> HParams:
        """Every hyper-parameter of the method, typed and checked: what the plugin gets."""
        if self._hp is None:
            raise RuntimeError("method.hp is set by RunConfig validation")
        return self._hp


class OutputSettings(Section):
    root: Annotated[str, Path_] = "runs"


class WandbSettings(Section):
    mode: Annotated[str, rule(HParam("disabled", choices=("online", "offline", "disabled")))] = "disabled"
    project: Annotated[str, rule(HParam("kdsuite", kind=str))] = "kdsuite"
    entity: Annotated[Optional[str], OptStr] = None
    group: Annotated[Optional[str], OptStr] = None
    tags: Annotated[List[str], PlainValidator(_str_list)] = []


class RunConfig(TrainSettings):
    """A whole run config. Its trainer fields (epochs, optim, schedule, optimizers, ...) are
    :class:`TrainSettings`'s; ``precision`` and ``channels_last`` may also be ``auto`` here (the fast path
    decides, see ``config.effective``)."""
    name: Annotated[Optional[str], PlainValidator(_run_name)] = None  # the run's (or its grid's) name
    dataset: DatasetSettings = DatasetSettings.model_construct()
    student: StudentSettings = StudentSettings.model_construct()
    teachers: List[TeacherEntry] = []
    method: MethodSettings = MethodSettings.model_construct()
    fast_path: Annotated[Union[str, bool], rule(AUTO_OR_BOOL)] = "auto"  # auto = on with CUDA, off on CPU
    precision: Annotated[str, rule(HParam("fp32", choices=("auto", "fp32", "bf16")))] = "auto"  # auto: bf16 with the fast path
    # auto: on with the fast path; config.effective turns "auto" into the trainer's bool before training
    channels_last: Annotated[Union[str, bool], rule(AUTO_OR_BOOL)] = "auto"  # type: ignore[assignment]
    compile: Annotated[bool, rule(HParam(False))] = False  # torch.compile student and teachers
    # reuse teacher logits across epochs: auto = when valid (no random augmentation)
    teacher_cache: Annotated[Union[str, bool], rule(AUTO_OR_BOOL)] = "auto"
    sync_bn: Annotated[bool, rule(HParam(False))] = False  # data-parallel on GPUs: batch-norm statistics synchronised
    device: Annotated[str, rule(HParam("auto", kind=str))] = "auto"
    deterministic: Annotated[bool, rule(HParam(True))] = True
    export_teacher: Annotated[bool, rule(HParam(False))] = False
    output: OutputSettings = OutputSettings.model_construct()
    wandb: WandbSettings = WandbSettings.model_construct()

    @model_validator(mode="before")
    @classmethod
    def _teachers_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and "teachers" in data and not isinstance(data["teachers"], list):
            raise FieldProblem(f"teachers must be a list of {{checkpoint: PATH}} entries, got {data['teachers']!r}")
        return data

    @model_validator(mode="after")
    def _method_fits(self) -> "RunConfig":
        from kdsuite.methods.registry import get_method

        try:
            cls = get_method(self.method.name)
        except KeyError as e:
            raise ConfigError(f"method.name: {e.args[0]}") from None
        self.method._hp = resolve_hparams(cls.name, cls.hparams, self.method.hparams or {})
        if cls.below_num_train:  # a count of training rows that no run of this data set can hold
            from kdsuite.methods.build_checks import plan_below_num_train

            plan_below_num_train(cls, self.method._hp, self.dataset.name, TRAIN_SPLIT_IMAGES.get(self.dataset.name))
        _check_aug_views(cls, self.dataset.aug_views)
        if not cls.teacher_count_ok(len(self.teachers)):
            raise ConfigError(f"teachers: method '{cls.name}' takes {cls.teacher_count_text()} teacher(s), "
                              f"the config gives {len(self.teachers)}")
        return self

    def train_settings(self, precision: str, channels_last: bool) -> TrainSettings:
        """The trainer's settings as validated here, with the fast path's ``precision`` and ``channels_last``."""
        fields = {k: getattr(self, k) for k in TrainSettings.model_fields}
        return TrainSettings.model_validate(dict(fields, precision=precision, channels_last=channels_last))


def _check_aug_views(cls: Any, views: Optional[List[str]]) -> None:
    """A method that trains on two views of each sample (batch field ``aug_x``) needs two ``aug_views``, and
    a second view is drawn only for a method that uses it."""
    two = "aug_x" in tuple(cls.batch_fields)
    n = len(views or ["weak"])
    if two and n != 2:
        raise ConfigError(f"dataset.aug_views = {views!r}: method '{cls.name}' trains on two views of each sample; "
                          f"set dataset.aug_views to two views, e.g. [weak, strong]")
    if not two and n == 2:
        raise ConfigError(f"dataset.aug_views = {views!r}: method '{cls.name}' trains on one view (x); give one "
                          f"view, e.g. [strong]")


def check(cfg: Dict[str, Any]) -> RunConfig:
    """``cfg`` (merged over the defaults) as a :class:`RunConfig`; the first problem as a :class:`ConfigError`."""
    try:
        return RunConfig.model_validate(cfg)
    except ValidationError as e:
        raise config_error(e) from None


def declared_defaults(model: Type[BaseModel] = RunConfig) -> Dict[str, Any]:
    """The defaults of ``model``'s fields as a plain mapping (sections as nested mappings)."""
    return {name: _plain(f.get_default(call_default_factory=True)) for name, f in model.model_fields.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


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
