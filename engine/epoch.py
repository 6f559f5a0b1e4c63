"""The epoch loop: one epoch of training steps, its on-device sums, divergence checks, the
mid-epoch checkpoint on a stop signal, and the end-of-epoch evaluation, history entry and checkpoint.

Role in the flow: :meth:`kdsuite.engine.trainer.Trainer.fit` runs :meth:`EpochLoop._train_epoch` for
each epoch of each stage; each step sets the learning rates (:mod:`kdsuite.engine.optim`), moves the
batch to the device and calls the plugin through :meth:`kdsuite.engine.trainer.Trainer.step`; each
epoch ends with an evaluation (:mod:`kdsuite.engine.evaluation`) and a checkpoint
(:mod:`kdsuite.engine.checkpoint`); the first step of each stage also goes through the scale check
(:mod:`kdsuite.engine.scale_check`). No per-step host synchronisation: loss terms stay on the device
and are read back only every ``log_every`` steps and at the epoch's end.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import torch

from kdsuite.engine import distributed, scale_check, stop
from kdsuite.engine.batches import BatchSource
from kdsuite.engine.checkpoint import _rng_states, _set_rng_states, derive_seed, seed_everything
from kdsuite.engine.progress import Reporter
from kdsuite.engine.settings import TrainSettings
from kdsuite.methods.base import Distiller, Stage


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


class EpochLoop:
    """The trainer's epoch loop (a mixin of :class:`kdsuite.engine.trainer.Trainer`)."""
    method: Distiller
    s: TrainSettings
    device: torch.device
    dist: distributed.DistInfo
    run_dir: Optional[Path]
    train_loader: Optional[BatchSource]
    test_loader: Optional[Iterable]
    reporter: Reporter
    _n_stages: int
    _local_n: int

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
                losses = self._train_step(step, steps, epoch, batch, acc, stage)
                if step == 0 and epoch == 0 and self.dist.main:
                    self._check_scale(stage, losses, state)
                if can_defer and stop.pending() is not None:
                    self._stop_mid_epoch(si, stage, epoch, steps, acc, time.time() - t0, state)
        self._end_epoch(stage, epoch, acc, time.time() - t0, state)

    def _train_step(self, step: int, steps: int, epoch: int, batch, acc: "_EpochSums", stage: Stage
                    ) -> Dict[str, torch.Tensor]:
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
        return losses

    def _check_scale(self, stage: Stage, losses: Dict[str, torch.Tensor], state: Dict[str, Any]) -> None:
        """The scale check of the stage's first step (:mod:`kdsuite.engine.scale_check`): each term's
        ratio to CE into the run state (and so the checkpoint and the record), one line on stderr when
        a term is outside its method's band."""
        entries = scale_check.step0_scale(self.method, losses, stage.name, self._n_stages)
        state.setdefault("scale", {}).update(entries)
        run = self.run_dir.name if self.run_dir is not None else self.method.name
        line = scale_check.warning(run, self.method, entries)
        if line is not None:
            print(line, file=sys.stderr, flush=True)

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
        if stage.evaluate and self.test_loader is not None and (last or (epoch + 1) % self.s.eval_every == 0):
            test, val = self._evaluate_splits()
            sr = state["stage_results"].setdefault(stage.name, {})
            for model_name, r in test.items():
                self._track(sr.setdefault(model_name, {}), r, None if val is None else val[model_name], epoch + 1,
                            entry, model_name)
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        shown = {k: v for k, v in entry.items() if k == "train/loss" or k.endswith("/top1")}
        self.reporter.end_epoch(shown)
        if self.log_fn is not None:
            self.log_fn(entry, len(state["history"]))
        self._save(state)

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
