"""The one trainer every method runs on.

Role in the flow: ``kdsuite.experiments.run`` builds data, models and the method plugin, then calls
:meth:`Trainer.fit`. The trainer owns optimizers (one per parameter group the plugin names),
learning-rate schedules (per group), precision (fp32 / bf16 autocast), channels_last, evaluation,
checkpoints and exact resume; plugins only compute losses and, where their scheme needs it,
alternate ``trainer.optimize(group, losses)`` calls inside their ``train_step``.

Exact resume: every epoch starts from RNG states derived from (seed, stage, epoch) — torch, numpy,
Python and the batch source's (:mod:`kdsuite.engine.batches`) — and a checkpoint is written atomically
after each epoch. A run stopped anywhere and resumed therefore replays the interrupted epoch from the
same states and ends with the same weights as a run that never stopped (bit-exact on CPU). SIGTERM /
Ctrl-C (:mod:`kdsuite.engine.stop`) instead let the step in progress finish and write a mid-epoch
checkpoint with the epoch's sums and the RNG states after that step; the resumed run replays the batch
source up to that step (its order and augmentation follow the epoch seed) and goes on from there.

No per-step host synchronisation: loss terms are accumulated on the device and read back only every
``log_every`` steps and at the end of each epoch.

Divergence: the first step whose summed loss is not finite is remembered on the device; it is read at
the same points (every ``log_every`` steps, and at each epoch end together with a check that every
parameter and buffer is finite). A run that diverged stops there with ``status='diverged'`` and
:attr:`FitResult.divergence` saying where; its last checkpoint stays the last finite epoch.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from pydantic import ValidationError

from kdsuite.engine import cpu_memory, distributed, stop
from kdsuite.engine.batches import BatchSource, as_batch_source
from kdsuite.methods.base import Distiller, OptimGroup, Stage
from kdsuite.core.fileio import load_latest_checkpoint, save_checkpoint
from kdsuite.core.errors import ConfigError
from kdsuite.engine.progress import Reporter
from kdsuite.engine.settings import (OPTIMIZERS, SCHEDULES, GroupOptim, ScheduleSettings,  # noqa: F401
                                     TrainSettings, config_error as settings_error)

CHECKPOINT_FORMAT = 1


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run seed and a path (stage, epoch ...); stable across processes."""
    h = hashlib.sha256(repr((seed,) + parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


# ---- learning-rate schedules and optimizers ------------------------------------------------------
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


# ---- evaluation ----------------------------------------------------------------------------
@torch.no_grad()
def evaluate(models: Dict[str, nn.Module], loader: Iterable, device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager], channels_last: bool = False,
             max_batches: Optional[int] = None, dist_info: Optional[distributed.DistInfo] = None
             ) -> Dict[str, Dict[str, float]]:
    """Top-1 / top-5 accuracy (%) and mean CE of each model on ``loader``. In a data-parallel run each
    process evaluates every W-th batch (or its sampler's share) and the counts are summed."""
    info = distributed.world_of(dist_info)
    presharded = getattr(loader, "sharded", False)
    modes = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()
    stats = {k: torch.zeros(3, device=device, dtype=torch.float64) for k in models}
    n = 0
    try:
        for b, (x, y) in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            if info.active and not presharded and b % info.world != info.rank:
                continue
            x = x.to(device, non_blocking=True)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            n += y.numel()
            with autocast():
                outs = {k: m(x) for k, m in models.items()}
            for k, logits in outs.items():
                logits = logits.float()
                k5 = min(5, logits.shape[1])
                top = logits.topk(k5, dim=1).indices
                hit = top.eq(y[:, None])
                stats[k] += torch.stack([hit[:, 0].sum().double(), hit.any(dim=1).sum().double(),
                                         nn.functional.cross_entropy(logits, y, reduction="sum").double()])
    finally:
        for k, m in models.items():
            m.train(modes[k])
    if info.active:
        count = distributed.sum_(torch.tensor([float(n)], device=device, dtype=torch.float64), info)
        n = int(count.item())
        for s in stats.values():
            distributed.sum_(s, info)
    out = {}
    for k, s in stats.items():
        s = s.cpu().tolist()
        out[k] = {"top1": 100.0 * s[0] / max(n, 1), "top5": 100.0 * s[1] / max(n, 1), "loss": s[2] / max(n, 1)}
    return out


# ---- the trainer ---------------------------------------------------------------------------
@dataclass
class FitResult:
    status: str                      # finished | stopped | diverged
    metrics: Dict[str, Any]
    history: List[Dict[str, Any]]
    stage_results: Dict[str, Dict[str, Any]]
    divergence: Optional[Dict[str, Any]] = None  # {"stage", "epoch", "step", "what"} when diverged


class Diverged(Exception):
    """Raised inside an epoch when the loss or the weights stopped being finite."""

    def __init__(self, info: Dict[str, Any]):
        super().__init__(info["what"])
        self.info = info


@dataclass
class _EpochSums:
    """What an epoch accumulates step by step (kept on the device; a mid-epoch checkpoint stores it)."""
    first_bad: torch.Tensor  # the first step whose loss was not finite, or -1
    sums: Dict[str, torch.Tensor] = field(default_factory=dict)
    images: int = 0
    done: int = 0  # steps taken


def _rng_states() -> Dict[str, Any]:
    """The global RNG states as tensors and plain numbers (a checkpoint is read with ``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    out = {"torch": torch.get_rng_state(),
           "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
           "python": [version, torch.tensor(py_state, dtype=torch.int64), py_gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_states(states: Dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = states["python"]
    random.setstate((version, tuple(int(v) for v in py_state.tolist()), py_gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _typed(model: Any, fields: Dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as e:
        raise settings_error(e, where) from None


class Trainer:
    def __init__(self, method: Distiller, train_loader: Optional[BatchSource], val_loader: Optional[Iterable],
                 settings: TrainSettings, device: torch.device | str = "cpu", run_dir: Optional[os.PathLike] = None,
                 log_fn: Optional[Callable[[Dict[str, Any], int], None]] = None, reporter: Optional[Reporter] = None,
                 dist_info: Optional[distributed.DistInfo] = None, *, select_loader: Optional[Iterable] = None,
                 teacher_val_loader: Optional[Iterable] = None, teacher_cache_loader: Optional[Iterable] = None,
                 teacher_cache_size: int = 0, batch_fields: Optional[Sequence[str]] = None):
        """``train_loader``: the training batch source (None for data-free methods); ``val_loader``: the test
        split (what is reported); ``select_loader``: the validation split, on which the "best" epoch is
        chosen (None: no validation split, no "best"); ``teacher_val_loader``: the test split in the teachers'
        own view (paired views); ``teacher_cache_loader``: the training set in order without random
        augmentation, yielding (x, y, index), from which teacher outputs are cached once
        (``teacher_cache_size`` samples; None: no cache); ``batch_fields``: what each training batch holds
        (default: the method's)."""
        self.method = method
        self.dist = distributed.world_of(dist_info)
        self._local_n = 1  # samples of the current step on this process (weights its gradient share)
        self.train_loader = as_batch_source(train_loader) if train_loader is not None else None
        self.val_loader = val_loader
        self.s = settings
        self.device = torch.device(device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.log_fn = log_fn
        self.reporter = reporter or Reporter(settings.progress)
        if method.needs_train_data and train_loader is None:
            raise ConfigError(f"method '{method.name}' trains on data but no training data loader was given")
        if not method.needs_train_data and not settings.max_steps_per_epoch:
            raise ConfigError(f"method '{method.name}' is data-free: set max_steps_per_epoch (> 0), the number "
                              f"of synthetic batches per epoch")
        if settings.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision = {settings.precision!r} is not one of ['fp32', 'bf16']")
        if self.device.type == "cpu":
            cpu_memory.tune_for_training()
        memory_format = torch.channels_last if settings.channels_last else torch.preserve_format
        method.to(self.device, memory_format=memory_format)
        for t in method.teachers:
            t.to(self.device, memory_format=memory_format).eval().requires_grad_(False)
        self.groups: Dict[str, OptimGroup] = method.optim_groups()
        self._check_groups()
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        self._active: List[str] = []
        self._schedules: Dict[str, ScheduleSettings] = {}
        self._stage_epochs = 1
        self._stage: Optional[Stage] = None
        self._n_stages = 1
        self.teacher_cache_loader, self.teacher_cache_size = teacher_cache_loader, teacher_cache_size
        self.teacher_val_loader = teacher_val_loader
        self.batch_fields: Sequence[str] = tuple(batch_fields if batch_fields is not None else method.batch_fields)
        self.select_loader = select_loader

    # ---- set-up helpers ------------------------------------------------------------------
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

    def enter_stage(self, index: int = -1) -> Stage:
        """Build the optimizers of stage ``index`` and run the plugin's stage hook, as ``fit`` does
        at a stage boundary (tests and tools that drive single steps use this)."""
        stages = self.method.stages()
        index = index % len(stages)
        stage = stages[index]
        self._start_stage(stage)
        seed_everything(derive_seed(self.s.seed, index, "stage-start"))
        self.method.progress.stage, self.method.progress.stage_index = stage.name, index
        self.method.on_stage_start(stage, self)
        return stage

    def autocast(self):
        if self.s.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ---- what plugins call ---------------------------------------------------------------
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

    def step(self, batch) -> Dict[str, torch.Tensor]:
        """One training step of the plugin on a batch already on the device: the current stage's own
        step where it names one (:attr:`Stage.step`), else the plugin's ``train_step``."""
        if batch is not None:
            self.method.batch_extras = dict(zip(self.batch_fields[2:], batch[2:]))
        step_fn = self._stage.step if self._stage is not None and self._stage.step is not None \
            else self.method.train_step
        with self.autocast():
            return step_fn(batch, self)

    def step_at(self, batch, step: int, steps_per_epoch: int = 8) -> Dict[str, torch.Tensor]:
        """One optimisation step as :meth:`fit` takes it at global ``step`` of the current stage: progress and
        learning rates set first, ``batch`` as the train loader yields it (moved to the device here). The
        public single-step API for tests and tools (enter a stage first with :meth:`enter_stage`)."""
        self.method.train()
        self.method.progress.step = step
        self.method.progress.epoch = step // steps_per_epoch
        self.method.progress.epoch_float = step / steps_per_epoch
        self._set_lrs(self.method.progress.epoch_float)
        return self.step(self._to_device(batch))

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

    def _seed_epoch(self, stage_index: int, epoch: int) -> None:
        s = derive_seed(self.s.seed, stage_index, epoch)
        seed_everything(s)
        if self.train_loader is not None:
            self.train_loader.set_epoch_seed(s)

    def _batches(self) -> Iterable:
        if not self.method.needs_train_data:
            return (None for _ in range(self.s.max_steps_per_epoch))
        return self.train_loader

    def _steps_in_epoch(self) -> int:
        if not self.method.needs_train_data:
            return int(self.s.max_steps_per_epoch)
        n = len(self.train_loader)
        return min(n, self.s.max_steps_per_epoch) if self.s.max_steps_per_epoch else n

    def _to_device(self, batch):
        if batch is None:
            return None
        x, y = batch[0], batch[1]
        x = x.to(self.device, non_blocking=True)
        if self.s.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return (x, y.to(self.device, non_blocking=True)) + tuple(b.to(self.device, non_blocking=True)
                                                                 for b in batch[2:])

    def _checkpoint_path(self) -> Optional[Path]:
        return self.run_dir / "checkpoint.pt" if self.run_dir is not None else None

    def _save(self, state: Dict[str, Any]) -> None:
        path = self._checkpoint_path()
        if path is None or not self.dist.main:
            return
        state = dict(state, format=CHECKPOINT_FORMAT, method=self.method.state_dict(),
                     optimizers={n: o.state_dict() for n, o in self.optimizers.items()})
        save_checkpoint(state, path)

    def _load(self) -> Optional[Dict[str, Any]]:
        path = self._checkpoint_path()
        if path is None:
            return None
        ckpt = load_latest_checkpoint(path, log=lambda msg: print(f"[{self.run_dir.name}] {msg}", file=sys.stderr,
                                                                  flush=True))
        if ckpt is None:
            return None
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise RuntimeError(f"{path}: checkpoint format {ckpt.get('format')} is not {CHECKPOINT_FORMAT}")
        self.method.load_state_dict(ckpt["method"])
        return ckpt

    def fit(self, stop_after_epochs: Optional[int] = None) -> FitResult:
        """Train all stages (resuming from ``run_dir/checkpoint.pt`` if present). With
        ``stop_after_epochs`` the call returns ``status='stopped'`` after that many epochs (tests of
        resume; the checkpoint is already on disk)."""
        stages = self.method.stages()
        self._n_stages = len(stages)
        for st in stages:
            if st.epochs < 0:
                raise ConfigError(f"stage '{st.name}' has epochs = {st.epochs}; must be >= 0")
        ckpt = self._load()
        if ckpt is None:
            state: Dict[str, Any] = {"stage_index": 0, "epoch": 0, "history": [], "stage_results": {},
                                     "teacher_eval": None, "train_time": 0.0, "images": 0, "stage_started": False}
        else:
            state = {k: ckpt[k] for k in ("stage_index", "epoch", "history", "stage_results", "teacher_eval",
                                          "train_time", "images", "stage_started")}
            state["mid"] = ckpt.get("mid")
            if self.dist.main:
                where = f" of stage '{stages[state['stage_index']].name}'" if len(stages) > 1 and \
                    state["stage_index"] < len(stages) else ""
                at = f"step {state['mid']['step']} of epoch {state['epoch'] + 1}" if state["mid"] \
                    else f"epoch {state['epoch']}"
                print(f"[{self.run_dir.name}] resuming from {at}{where} "
                      f"({len(state['history'])} epochs done, from its checkpoint)", file=sys.stderr, flush=True)
        if state["teacher_eval"] is None:
            state["teacher_eval"] = self._eval_teachers()
        if self.teacher_cache_loader is not None:
            self._fill_teacher_cache()
        epochs_run = 0
        while state["stage_index"] < len(stages):
            si = state["stage_index"]
            stage = stages[si]
            self._start_stage(stage)
            if not state["stage_started"]:
                seed_everything(derive_seed(self.s.seed, si, "stage-start"))
                self.method.progress.stage, self.method.progress.stage_index = stage.name, si
                self.method.on_stage_start(stage, self)
                state["stage_started"] = True
            elif ckpt is not None and ckpt.get("stage_index") == si:
                for n, o in self.optimizers.items():
                    o.load_state_dict(ckpt["optimizers"][n])
            while state["epoch"] < stage.epochs:
                if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                    return self._result("stopped", state, stages)
                try:
                    self._train_epoch(si, stage, state)
                except Diverged as d:
                    res = self._result("diverged", state, stages)
                    res.divergence = d.info
                    return res
                epochs_run += 1
            state["stage_index"] += 1
            state["epoch"] = 0
            state["stage_started"] = False
            ckpt = None
        return self._result("finished", state, stages)

    @torch.no_grad()
    def _fill_teacher_cache(self) -> None:
        """One inference pass of every teacher over the (unaugmented) training set, stored by sample
        index; recomputed on resume (teachers are frozen, so it is the same)."""
        method = self.method
        caches: List[Optional[torch.Tensor]] = [None] * len(method.teachers)
        for batch in self.teacher_cache_loader:
            x, idx = batch[0].to(self.device), batch[2].to(self.device)
            if self.s.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                for i, t in enumerate(method.teachers):
                    logits = t(x).float()
                    if caches[i] is None:
                        caches[i] = torch.zeros(self.teacher_cache_size, logits.shape[1], device=self.device)
                    caches[i][idx] = logits
        method.set_teacher_cache(caches)

    def _eval_teachers(self) -> List[Dict[str, float]]:
        if not self.method.teachers or self.val_loader is None:
            return []
        loader = self.teacher_val_loader if self.teacher_val_loader is not None else self.val_loader
        res = evaluate({f"teacher{i}": t for i, t in enumerate(self.method.teachers)}, loader,
                       self.device, self.autocast, self.s.channels_last, dist_info=self.dist)
        return [res[f"teacher{i}"] for i in range(len(self.method.teachers))]

    def _train_epoch(self, si: int, stage: Stage, state: Dict[str, Any]) -> None:
        method, prog = self.method, self.method.progress
        epoch = state["epoch"]
        self._seed_epoch(si, epoch)
        method.train()
        steps = self._steps_in_epoch()
        prog.stage, prog.stage_index, prog.epoch, prog.total_epochs = stage.name, si, epoch, stage.epochs
        label = f"[{stage.name}] epoch {epoch + 1}/{stage.epochs}" if self._n_stages > 1 \
            else f"epoch {epoch + 1}/{stage.epochs}"
        self.reporter.start_epoch(label, steps)
        acc = _EpochSums(torch.full((), -1, dtype=torch.int64, device=self.device))  # first non-finite step
        t0 = time.time()
        batches = iter(self._batches())
        mid = state.pop("mid", None)
        if mid is not None:  # stopped after step `mid["step"]` of this epoch: replay the source to there
            for _ in range(mid["step"]):
                next(batches)
            acc = _EpochSums(mid["first_bad"].to(self.device), {k: v.to(self.device) for k, v in mid["sums"].items()},
                             mid["images"], mid["step"])
            t0 -= mid["train_time"]
            _set_rng_states(mid["rng"])  # after the replay: the states the stopped run had at this step
            prog.step = epoch * steps + acc.done - 1
        # a data-parallel run stops at once (its processes would first have to agree on a step)
        can_defer = self.run_dir is not None and not self.dist.active
        with stop.checkpointable() if can_defer else contextlib.nullcontext():
            for step, batch in enumerate(batches, start=acc.done):
                if step >= steps:
                    break
                self._train_step(step, steps, epoch, batch, acc, stage)
                if can_defer and stop.pending() is not None:
                    self._stop_mid_epoch(si, stage, epoch, steps, acc, time.time() - t0, state)
        self._end_epoch(stage, epoch, acc, time.time() - t0, state)

    def _train_step(self, step: int, steps: int, epoch: int, batch, acc: "_EpochSums", stage: Stage) -> None:
        method, prog = self.method, self.method.progress
        prog.step = epoch * steps + step
        prog.epoch_float = epoch + step / steps
        self._set_lrs(prog.epoch_float)
        n_global = batch[0].shape[0] if batch is not None else int(method.synthetic_batch_size)
        if self.dist.active and batch is not None:
            if self.train_loader.sharded:
                n_global *= self.dist.world  # the sampler already gave this process its share
            else:
                batch = distributed.shard(batch, self.dist)
        self._local_n = batch[0].shape[0] if batch is not None else max(n_global, 1)
        batch = self._to_device(batch)
        losses = self.step(batch)
        total = None
        for k, v in losses.items():
            v = v.detach().float()
            acc.sums[k] = acc.sums[k] + v if k in acc.sums else v
            total = v if total is None else total + v
        if total is not None:
            acc.first_bad = torch.where((acc.first_bad < 0) & ~torch.isfinite(total),
                                        torch.full_like(acc.first_bad, prog.step), acc.first_bad)
        acc.images += n_global
        acc.done = step + 1
        if (step + 1) % self.s.log_every == 0:
            self._check_finite(acc.first_bad, acc.sums, stage, epoch, weights=False)
            self.reporter.update(step + 1, {k: v.item() / (step + 1) for k, v in acc.sums.items()})

    def _stop_mid_epoch(self, si: int, stage: Stage, epoch: int, steps: int, acc: "_EpochSums",
                        elapsed: float, state: Dict[str, Any]) -> None:
        """A signal asked the run to stop: checkpoint after this step (unless the weights are no longer
        finite: then the last good checkpoint stays) and raise :class:`RunInterrupted`."""
        self._check_finite(acc.first_bad, acc.sums, stage, epoch, weights=True, last_step=self.method.progress.step)
        mid = {"stage_index": si, "epoch": epoch, "step": acc.done, "sums": {k: v.cpu() for k, v in acc.sums.items()},
               "images": acc.images, "first_bad": acc.first_bad.cpu(), "train_time": elapsed, "rng": _rng_states()}
        self._save(dict(state, mid=mid))
        where = f" after step {acc.done}/{steps} of epoch {epoch + 1}" + \
            (f" of stage '{stage.name}'" if self._n_stages > 1 else "")
        raise stop.RunInterrupted(stop.pending(), at=where + " (checkpoint written)")

    def _end_epoch(self, stage: Stage, epoch: int, acc: "_EpochSums", train_time: float,
                   state: Dict[str, Any]) -> None:
        method, prog = self.method, self.method.progress
        sums, images, first_bad, n_steps = acc.sums, acc.images, acc.first_bad, acc.done
        self._check_finite(first_bad, sums, stage, epoch, weights=True, last_step=prog.step)
        method.on_epoch_end(self)
        distributed.broadcast_buffers([method], self.dist)  # rank 0's BN statistics everywhere, as DDP does
        entry: Dict[str, Any] = {"stage": stage.name, "epoch": epoch + 1, "train_time_s": train_time,
                                 "lr": {n: self.lr(n) for n in self.optimizers}}
        entry.update({f"train/{k}": v.item() / max(n_steps, 1) for k, v in sums.items()})
        entry["train/loss"] = sum(entry[f"train/{k}"] for k in sums)
        state["train_time"] += train_time
        state["images"] += images
        last = epoch + 1 == stage.epochs
        if stage.evaluate and self.val_loader is not None and (last or (epoch + 1) % self.s.eval_every == 0):
            res, sel = self._evaluate_splits()
            sr = state["stage_results"].setdefault(stage.name, {})
            for model_name, r in res.items():
                self._track(sr.setdefault(model_name, {}), r, None if sel is None else sel[model_name], epoch + 1,
                            entry, model_name)
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        shown = {k: v for k, v in entry.items() if k == "train/loss" or k.endswith("/top1")}
        self.reporter.end_epoch(shown)
        if self.log_fn is not None:
            self.log_fn(entry, len(state["history"]))
        self._save(state)

    def _evaluate_splits(self):
        """Test-split results and, with a validation split, validation results, of every eval model."""
        models = self.method.eval_models()
        res = evaluate(models, self.val_loader, self.device, self.autocast, self.s.channels_last, dist_info=self.dist)
        sel = None if self.select_loader is None else evaluate(models, self.select_loader, self.device, self.autocast,
                                                                self.s.channels_last, dist_info=self.dist)
        return res, sel

    @staticmethod
    def _track(cur: Dict[str, Any], r: Dict[str, float], v: Optional[Dict[str, float]], epoch: int,
               entry: Optional[Dict[str, Any]] = None, model_name: str = "student") -> None:
        """Update one model's running results with this epoch's test results ``r`` and validation
        results ``v``: last_* (test, this epoch); best_test_* (max test over epochs, the literature's
        best-on-test convention); best_* (test at the first epoch of highest validation top-1, with
        best_val_top1 and best_epoch) only when there is a validation split."""
        if entry is not None:
            entry.update({f"test/{model_name}/{k}": x for k, x in r.items()})
            if v is not None:
                entry.update({f"val/{model_name}/{k}": x for k, x in v.items()})
        cur.update(last_top1=r["top1"], last_top5=r["top5"], last_epoch=epoch)
        if r["top1"] > cur.get("best_test_top1", -1.0):
            cur.update(best_test_top1=r["top1"], best_test_top5=r["top5"], best_test_epoch=epoch)
        if v is not None and v["top1"] > cur.get("best_val_top1", -1.0):
            cur.update(best_val_top1=v["top1"], best_top1=r["top1"], best_top5=r["top5"], best_epoch=epoch)

    def _check_finite(self, first_bad: torch.Tensor, sums: Dict[str, torch.Tensor], stage: Stage, epoch: int,
                      weights: bool, last_step: Optional[int] = None) -> None:
        """Raise :class:`Diverged` when a loss so far this epoch (or, with ``weights``, a parameter or
        buffer) is not finite; every process of a data-parallel run takes the same decision. The step
        is the first with a non-finite loss, else (weights only) the epoch's last step, by which the
        weights had become non-finite."""
        flags = [(first_bad >= 0).double()]
        if weights:
            tensors = [t for t in list(self.method.parameters()) + list(self.method.buffers()) if t.is_floating_point()]
            finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all() if tensors else torch.tensor(True)
            flags.append((~finite).double().to(self.device))
        flag = distributed.sum_(torch.stack(flags).to(self.device), self.dist)
        if not bool((flag > 0).any()):
            return
        bad_terms = sorted(k for k, v in sums.items() if not torch.isfinite(v))
        step = int(first_bad.item())
        if flag[0] > 0:
            what = f"non-finite loss ({', '.join(bad_terms) or 'total'})"
        else:
            what, step = "non-finite weights", last_step
        raise Diverged({"stage": stage.name, "epoch": epoch + 1, "step": step, "what": what})

    def _result(self, status: str, state: Dict[str, Any], stages: List[Stage]) -> FitResult:
        metrics: Dict[str, Any] = {}
        evaluated = [s.name for s in stages if s.name in state["stage_results"]]
        if not evaluated and status == "finished" and self.val_loader is not None:
            # no training epoch at all (e.g. importing pretrained weights as a teacher): evaluate once
            res, sel = self._evaluate_splits()
            state["stage_results"]["eval"] = {}
            for k, r in res.items():
                self._track(state["stage_results"]["eval"].setdefault(k, {}), r, None if sel is None else sel[k], 0)
            evaluated = ["eval"]
        if evaluated:
            final = state["stage_results"][evaluated[-1]]
            head = final.get("student", next(iter(final.values())))
            metrics.update({k: head[k] for k in ("best_top1", "best_top5", "best_epoch", "best_val_top1",
                                                 "best_test_top1", "best_test_top5", "best_test_epoch",
                                                 "last_top1", "last_top5") if k in head})
            for model_name, r in final.items():
                if model_name != "student":
                    metrics.update({f"{model_name}/{k}": r[k] for k in ("best_top1", "best_test_top1", "last_top1")
                                    if k in r})
        metrics["teacher_top1"] = [t["top1"] for t in state["teacher_eval"]]
        metrics["train_time_s"] = state["train_time"]
        metrics["images_per_s"] = state["images"] / state["train_time"] if state["train_time"] > 0 else None
        return FitResult(status, metrics, state["history"], state["stage_results"])
