"""The trainer's settings, typed: optimizer, learning-rate schedule, per-group overrides and the loop.

Role in the flow: :mod:`kdsuite.experiments.settings` builds the whole run config on these models
(its top-level trainer fields *are* :class:`TrainSettings`'s), validates it once and hands the
trainer a :class:`TrainSettings` as is. Every default of these sections is declared here and
nowhere else; the trainer reads typed fields, never ``.get(name, default)``.

Checks are :class:`~kdsuite.methods.hparams.HParam` rules, so a bad value reads as everywhere in
kdsuite: ``optim.lr = -0.1 is out of range; expected a number > 0 and <= 10.0``. A rule raises
with the placeholder :data:`FIELD` for the field's name; :func:`config_error` puts the dotted path
of the field (``optimizers.peer1.lr``) in its place.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError, model_validator
from typing_extensions import Annotated

from kdsuite.core.errors import ConfigError
from kdsuite.methods.hparams import HParam

SCHEDULES = ("step", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw", "adam")
# the largest learning rate accepted: far above any recipe (SGD on CIFAR/ImageNet uses 0.01–0.4, LARS-style
# large-batch recipes a few units); a larger value is a typo (a missing "e-3") that would only diverge
MAX_LR = 10.0

FIELD = "\x00field\x00"  # stands for the field's dotted path in a rule's message


class FieldProblem(ValueError):
    """A rule's complaint; its text holds :data:`FIELD` where the field's path goes."""


def rule(spec: HParam, optional: bool = False) -> PlainValidator:
    """Validation by ``spec`` (type, choices, range), the value kept as checked; ``optional``: None passes."""
    def check(value: Any) -> Any:
        if optional and value is None:
            return None
        try:
            return spec.check(FIELD, value)
        except ConfigError as e:
            raise FieldProblem(str(e)) from None
    return PlainValidator(check)


def number(spec: HParam, optional: bool = False, high: Any = None) -> PlainValidator:
    """A float field: a number, or a string YAML left unparsed (``1e-3``), finite and within ``spec``'s
    range (``high``: a callable giving the upper bound at check time)."""
    def check(value: Any) -> Any:
        if optional and value is None:
            return None
        s = spec if high is None else HParam(spec.default, low=spec.low, low_open=spec.low_open, high=high())
        if isinstance(value, str):
            try:
                num = float(value)
            except ValueError:
                raise FieldProblem(f"{FIELD} = {value!r} is not {s.allowed()}") from None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            num = float(value)
        else:
            raise FieldProblem(f"{FIELD} = {value!r} is not {s.allowed()}")
        if math.isinf(num):
            raise FieldProblem(f"{FIELD} = {value!r} is not finite; expected {s.allowed()}")
        try:
            return s.check(FIELD, num)
        except ConfigError as e:
            raise FieldProblem(str(e)) from None
    return PlainValidator(check)


def _max_lr() -> float:
    return MAX_LR  # read at check time (a test lifts it to make a run diverge on purpose)


def _milestones(value: Any) -> List[int]:
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value) \
            or value != sorted(value):
        raise FieldProblem(f"{FIELD} = {value!r}: expected an increasing list of epochs (integers >= 1)")
    return value


def _betas(value: Any) -> Optional[Tuple[float, float]]:
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1 for v in value)
    if not ok:
        raise FieldProblem(f"{FIELD} = {value!r}: expected two numbers >= 0 and < 1 (Adam's beta1, beta2)")
    return (float(value[0]), float(value[1]))


class Section(BaseModel):
    """A config section: a mapping whose every field is declared; anything else is refused by name."""
    model_config = ConfigDict(extra="forbid", validate_assignment=False, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            raise FieldProblem(f"{FIELD} must be a mapping, got {data!r}")
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise FieldProblem(f"{FIELD}: unknown field(s) {unknown}; allowed: {sorted(cls.model_fields)}")
        return data


class OptimSettings(Section):
    name: Annotated[str, rule(HParam("sgd", choices=OPTIMIZERS))] = "sgd"
    lr: Annotated[float, number(HParam(0.1, low=0, low_open=True), high=_max_lr)] = 0.05
    momentum: Annotated[float, number(HParam(0.9, low=0, high=1, high_open=True))] = 0.9
    weight_decay: Annotated[float, number(HParam(0.0, low=0, high=1))] = 5e-4
    nesterov: Annotated[bool, rule(HParam(False))] = False


class ScheduleSettings(Section):
    name: Annotated[str, rule(HParam("step", choices=SCHEDULES))] = "step"
    milestones: Annotated[List[int], PlainValidator(_milestones)] = []
    gamma: Annotated[float, number(HParam(0.1, low=0, low_open=True, high=1))] = 0.1
    warmup_epochs: Annotated[float, number(HParam(0.0, low=0))] = 0
    min_lr_ratio: Annotated[float, number(HParam(0.0, low=0, high=1))] = 0.0


class GroupOptim(OptimSettings):
    """One parameter group's optimizer: ``optim`` with the plugin's group defaults and the config's
    ``optimizers.GROUP`` on top. As an override only the fields it sets count (``model_fields_set``)."""
    betas: Annotated[Optional[Tuple[float, float]], PlainValidator(_betas)] = None  # None: torch's
    schedule: Optional[ScheduleSettings] = None

    def optim_fields(self) -> Dict[str, Any]:
        """The optimizer fields this override sets (its ``schedule`` apart)."""
        return {k: getattr(self, k) for k in self.model_fields_set if k != "schedule"}

    def schedule_fields(self) -> Dict[str, Any]:
        s = self.schedule
        return {} if s is None else {k: getattr(s, k) for k in s.model_fields_set}


class TrainSettings(Section):
    """The trainer's part of a run config; also the top-level trainer fields of the run config itself."""
    epochs: Annotated[int, rule(HParam(1, low=0))] = 10
    seed: Annotated[int, rule(HParam(0, low=0))] = 0
    optim: OptimSettings = OptimSettings.model_construct()
    schedule: ScheduleSettings = ScheduleSettings.model_construct()
    optimizers: Dict[str, GroupOptim] = {}  # per-group overrides
    eval_every: Annotated[int, rule(HParam(1, low=1))] = 1
    precision: Annotated[str, rule(HParam("fp32", choices=("fp32", "bf16")))] = "fp32"
    channels_last: Annotated[bool, rule(HParam(False))] = False
    grad_clip: Annotated[Optional[float], number(HParam(1.0, low=0, low_open=True), optional=True)] = None
    log_every: Annotated[int, rule(HParam(1, low=1))] = 50
    # a cap (tests, smoke runs); data-free methods: the number of synthetic batches per epoch
    max_steps_per_epoch: Annotated[Optional[int], rule(HParam(1, low=1), optional=True)] = None
    progress: Annotated[str, rule(HParam("auto", choices=("auto", "bar", "lines", "none")))] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _optimizers_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and "optimizers" in data and not isinstance(data["optimizers"], dict):
            raise FieldProblem(f"optimizers must map group names to overrides, got {data['optimizers']!r}")
        return data


def dotted(loc: Tuple[Union[str, int], ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def config_error(exc: ValidationError, where: str = "") -> ConfigError:
    """The first problem of ``exc`` in kdsuite's words: the field's dotted path (under ``where``), the value,
    what is allowed."""
    err = exc.errors(include_url=False)[0]
    path = ".".join(p for p in (where, dotted(err["loc"])) if p) or "config"
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    if isinstance(cause, FieldProblem):
        return ConfigError(str(cause).replace(FIELD, path))
    if err["type"] == "missing":
        return ConfigError(f"{path}: required field missing")
    return ConfigError(f"{path} = {err.get('input')!r}: {err['msg']}")


def train_settings(**fields: Any) -> TrainSettings:
    """:class:`TrainSettings` from keyword fields (mappings for the sections), as a :class:`ConfigError`
    when a value is refused."""
    try:
        return TrainSettings.model_validate(fields)
    except ValidationError as e:
        raise config_error(e) from None
