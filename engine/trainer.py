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

Splits: the test split (``test_loader``) is what is reported; the validation split
(``validation_loader``), where a run has one, is where the "best" epoch is chosen (records call it
``val``: ``best_val_top1``, ``val/...`` history keys); the training split is ``train_loader``.

Parts: :class:`Trainer` is assembled from one mixin per seam — :mod:`kdsuite.engine.optim` (optimizer
groups, schedules, ``optimize``), :mod:`kdsuite.engine.checkpoint` (seeds, RNG states, checkpoints,
resume state), :mod:`kdsuite.engine.evaluation` (evaluation, best / last results, :class:`FitResult`)
and :mod:`kdsuite.engine.epoch` (the epoch loop, divergence checks, mid-epoch stop); this module holds
set-up, the stage sequence of :meth:`Trainer.fit` and the single-step API, and re-exports the names
callers import from it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch

from kdsuite.core.errors import ConfigError
from kdsuite.engine import cpu_memory, distributed
from kdsuite.engine.batches import BatchSource, as_batch_source
from kdsuite.engine.checkpoint import (CHECKPOINT_FORMAT, Checkpointing, derive_seed,  # noqa: F401 (re-exported)
                                       seed_everything)
from kdsuite.engine.epoch import Diverged, EpochLoop
from kdsuite.engine.evaluation import Evaluation, FitResult, evaluate  # noqa: F401 (re-exported)
from kdsuite.engine.optim import OptimizerGroups, build_optimizer, lr_factor  # noqa: F401 (re-exported)
from kdsuite.engine.progress import Reporter
from kdsuite.engine.settings import (OPTIMIZERS, SCHEDULES, GroupOptim, ScheduleSettings,  # noqa: F401
                                     TrainSettings)
from kdsuite.methods.base import Distiller, OptimGroup, Stage

__all__ = ["Trainer", "TrainSettings", "FitResult", "Diverged", "evaluate", "lr_factor", "build_optimizer",
           "derive_seed", "seed_everything", "CHECKPOINT_FORMAT", "OPTIMIZERS", "SCHEDULES", "GroupOptim",
           "ScheduleSettings"]


def _renamed(new: Any, old: Any, new_name: str, old_name: str) -> Any:
    """The value of a renamed keyword argument given under its new or its old name (not both)."""
    if new is not None and old is not None:
        raise TypeError(f"Trainer: give {new_name} or its old name {old_name}, not both")
    return new if new is not None else old


class Trainer(OptimizerGroups, Checkpointing, Evaluation, EpochLoop):
    def __init__(self, method: Distiller, train_loader: Optional[BatchSource], test_loader: Optional[Iterable],
                 settings: TrainSettings, device: torch.device | str = "cpu", run_dir: Optional[os.PathLike] = None,
                 log_fn: Optional[Callable[[Dict[str, Any], int], None]] = None, reporter: Optional[Reporter] = None,
                 dist_info: Optional[distributed.DistInfo] = None, *, validation_loader: Optional[Iterable] = None,
                 teacher_test_loader: Optional[Iterable] = None, teacher_cache_loader: Optional[Iterable] = None,
                 teacher_cache_size: int = 0, batch_fields: Optional[Sequence[str]] = None,
                 select_loader: Optional[Iterable] = None, teacher_val_loader: Optional[Iterable] = None):
        """``train_loader``: the training batch source (None for data-free methods); ``test_loader``: the test
        split (what is reported); ``validation_loader``: the validation split, on which the "best" epoch is
        chosen (None: no validation split, no "best"); ``teacher_test_loader``: the test split in the teachers'
        own view (paired views); ``select_loader`` / ``teacher_val_loader``: the old names of
        ``validation_loader`` / ``teacher_test_loader``, still accepted; ``teacher_cache_loader``: the training set in order without random
        augmentation, yielding (x, y, index), from which teacher outputs are cached once
        (``teacher_cache_size`` samples; None: no cache); ``batch_fields``: what each training batch holds
        (default: the method's)."""
        self.method = method
        self.dist = distributed.world_of(dist_info)
        self._local_n = 1  # samples of the current step on this process (weights its gradient share)
        self.train_loader = as_batch_source(train_loader) if train_loader is not None else None
        self.test_loader = test_loader
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
        self.teacher_test_loader = _renamed(teacher_test_loader, teacher_val_loader, "teacher_test_loader",
                                            "teacher_val_loader")
        self.batch_fields: Sequence[str] = tuple(batch_fields if batch_fields is not None else method.batch_fields)
        self.validation_loader = _renamed(validation_loader, select_loader, "validation_loader", "select_loader")

    # the trainer's names before test / validation were named as in records (``val`` = validation):
    # ``val_loader`` was the test split, ``select_loader`` the validation split; plugins may still read them
    @property
    def val_loader(self) -> Optional[Iterable]:
        """Old name of :attr:`test_loader` (the test split, not the validation split)."""
        return self.test_loader

    @val_loader.setter
    def val_loader(self, loader: Optional[Iterable]) -> None:
        self.test_loader = loader

    @property
    def select_loader(self) -> Optional[Iterable]:
        """Old name of :attr:`validation_loader`."""
        return self.validation_loader

    @select_loader.setter
    def select_loader(self, loader: Optional[Iterable]) -> None:
        self.validation_loader = loader

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

    # ---- what plugins call (besides optimize, reset_optimizer and lr: kdsuite.engine.optim) ----------
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
        state = self._resume_state(ckpt, stages)
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
