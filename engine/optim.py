"""Optimizers and learning-rate schedules: what the trainer steps.

Role in the flow: :class:`kdsuite.engine.trainer.Trainer` builds one optimizer per parameter group the
plugin names (:meth:`kdsuite.methods.base.Distiller.optim_groups`) at each stage start, each from the
config's ``optim`` / ``schedule`` overlaid by the plugin's group defaults and the config's
``optimizers.NAME``; plugins step them through :meth:`OptimizerGroups.optimize`, and the epoch loop
(:mod:`kdsuite.engine.epoch`) sets every group's learning rate from :func:`lr_factor` before each step.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence

import torch
import torch.nn as nn
from pydantic import ValidationError

from kdsuite.core.errors import ConfigError
from kdsuite.engine import distributed
from kdsuite.engine.settings import (OPTIMIZERS, SCHEDULES, GroupOptim, ScheduleSettings, TrainSettings,
                                     config_error as settings_error)
from kdsuite.methods.base import Distiller, OptimGroup, Stage


def lr_factor(schedule: ScheduleSettings | Mapping[str, Any], epoch_float: float, total_epochs: int) -> float:
    """Multiplier of the base learning rate at ``epoch_float`` (epochs done, fractional).
    Linear warm-up over ``warmup_epochs``, then ``step`` (×gamma at each milestone epoch, applied
    at epoch boundaries as in the classic recipes), ``cosine`` (to ``min_lr_ratio``) or ``constant``."""
    s = schedule if isinstance(schedule, ScheduleSettings) else ScheduleSettings.model_validate(schedule)
    warm = float(s.warmup_epochs)
    if warm > 0 and epoch_float < warm:
        return (epoch_float + 1e-12) / warm if epoch_float > 0 else 1.0 / max(1.0, warm * 1000)
    if s.name == "constant":
        return 1.0
    if s.name == "step":
        done = math.floor(epoch_float + 1e-9)
        return float(s.gamma) ** sum(1 for m in s.milestones if done >= m)
    if s.name == "cosine":
        floor = float(s.min_lr_ratio)
        span = max(total_epochs - warm, 1e-9)
        t = min(max((epoch_float - warm) / span, 0.0), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    raise ConfigError(f"schedule.name = {s.name!r} is not one of {list(SCHEDULES)}")


def build_optimizer(params: Sequence[nn.Parameter], spec: GroupOptim | Mapping[str, Any]) -> torch.optim.Optimizer:
    o = spec if isinstance(spec, GroupOptim) else GroupOptim.model_validate(dict(spec))
    lr, wd = float(o.lr), float(o.weight_decay)
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(o.momentum), weight_decay=wd, nesterov=o.nesterov)
    if o.name in ("adamw", "adam"):
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, betas=o.betas or (0.9, 0.999), weight_decay=wd)
    raise ConfigError(f"optim.name = {o.name!r} is not one of {list(OPTIMIZERS)}")

def _typed(model: Any, fields: Dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as e:
        raise settings_error(e, where) from None


class OptimizerGroups:
    """The trainer's optimizer side (a mixin of :class:`kdsuite.engine.trainer.Trainer`): checks the
    plugin's groups, builds a stage's optimizers and schedules, and the calls plugins make
    (``optimize``, ``reset_optimizer``, ``lr``)."""
    method: Distiller
    s: TrainSettings
    dist: distributed.DistInfo
    groups: Dict[str, OptimGroup]
    optimizers: Dict[str, torch.optim.Optimizer]
    _active: List[str]
    _schedules: Dict[str, ScheduleSettings]
    _stage_epochs: int
    _stage: "Stage | None"
    _local_n: int

    def _check_groups(self) -> None:
        teacher_ids = {id(p) for t in self.method.teachers for p in t.parameters()}
        for name, g in self.groups.items():
            if teacher_ids & {id(p) for p in g.params}:
                raise ValueError(f"method '{self.method.name}' put frozen teacher parameters in optimizer '{name}'")
        unknown = sorted(set(self.s.optimizers) - set(self.groups))
        if unknown:
            raise ConfigError(f"optimizers: {unknown} name no parameter group of method '{self.method.name}'; "
                              f"its groups: {sorted(self.groups)}")

    def _check_disjoint(self, names: Sequence[str]) -> None:
        """Groups stepped in the same stage must not share parameters (a stage-1 group may train a
        subset of what a later stage's group trains)."""
        seen: Dict[int, str] = {}
        for name in names:
            for p in self.groups[name].params:
                if id(p) in seen:
                    raise ValueError(f"method '{self.method.name}': a parameter is in optimizer groups "
                                     f"'{seen[id(p)]}' and '{name}', both active in one stage")
                seen[id(p)] = name

    def _group_spec(self, name: str) -> GroupOptim:
        """``optim``, then the plugin's defaults for the group, then the config's ``optimizers.NAME``."""
        over = self.s.optimizers.get(name)
        spec = {**self.s.optim.model_dump(), **self.groups[name].defaults, **(over.optim_fields() if over else {})}
        return _typed(GroupOptim, spec, f"optimizers.{name}")

    def _group_schedule(self, name: str) -> ScheduleSettings:
        over = self.s.optimizers.get(name)
        sched = {**self.s.schedule.model_dump(), **self.groups[name].schedule, **(over.schedule_fields() if over else {})}
        return _typed(ScheduleSettings, sched, f"optimizers.{name}.schedule")

    def _start_stage(self, stage: Stage) -> None:
        names = list(stage.optimizers) if stage.optimizers is not None else list(self.groups)
        missing = [n for n in names if n not in self.groups]
        if missing:
            raise ValueError(f"stage '{stage.name}' names unknown optimizer groups {missing}")
        self._check_disjoint(names)
        self._active = names
        self.optimizers = {n: build_optimizer(self.groups[n].params, self._group_spec(n)) for n in names}
        for opt in self.optimizers.values():
            for pg in opt.param_groups:
                pg["initial_lr"] = pg["lr"]
        self._schedules = {n: self._group_schedule(n) for n in names}
        self._stage_epochs = stage.epochs
        self._stage = stage

    def optimize(self, groups: str | Sequence[str], losses: Dict[str, torch.Tensor] | torch.Tensor,
                 retain_graph: bool = False) -> None:
        """Backward the sum of ``losses`` once and step the optimizer of each named group (a name or a
        sequence of names: e.g. the student and a learnable temperature trained through gradient
        reversal). Only those groups' gradients are cleared before the backward and applied after it;
        ``retain_graph`` keeps the graph for a later backward through the same forward."""
        names = [groups] if isinstance(groups, str) else list(groups)
        inactive = [g for g in names if g not in self.optimizers]
        if inactive or not names:
            raise KeyError(f"optimizer group(s) {inactive or names} not active in this stage; active: {self._active}")
        total = losses if torch.is_tensor(losses) else sum(losses.values())
        for g in names:
            self.optimizers[g].zero_grad(set_to_none=True)
        total.backward(retain_graph=retain_graph)
        for g in names:
            params = self.groups[g].params
            distributed.allreduce_grads(params, self._local_n, self.dist)
            if self.s.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, self.s.grad_clip)
            self.optimizers[g].step()

    def reset_optimizer(self, group: str) -> None:
        """Forget the optimizer state (momenta, Adam moments) of ``group``, e.g. when a plugin starts
        over with new values for its parameters (DeepInversion's next synthetic batch)."""
        self.optimizers[group].state.clear()

    def lr(self, group: str) -> float:
        return self.optimizers[group].param_groups[0]["lr"]

    # ---- the loop ------------------------------------------------------------------------
    def _set_lrs(self, epoch_float: float) -> None:
        for n, opt in self.optimizers.items():
            f = lr_factor(self._schedules[n], epoch_float, self._stage_epochs)
            for pg in opt.param_groups:
                pg["lr"] = pg["initial_lr"] * f
