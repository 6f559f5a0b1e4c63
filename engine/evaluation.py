"""Evaluation and the results a run records: top-1 / top-5 / CE of each model on a split, the running
best / last results per model and stage, and the :class:`FitResult` a fit returns.

Role in the flow: the epoch loop (:mod:`kdsuite.engine.epoch`) evaluates every ``eval_every`` epochs on
the test split (what is reported) and, where the run has one, the validation split (on which the
"best" epoch is chosen); :meth:`Evaluation._result` turns the run state into the metrics that
``kdsuite.experiments.run`` writes into the record (field names such as ``best_val_top1`` are the
record's and do not change here).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch
import torch.nn as nn

from kdsuite.engine import distributed
from kdsuite.engine.settings import TrainSettings
from kdsuite.methods.base import Distiller, Stage


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

@dataclass
class FitResult:
    status: str                      # finished | stopped | diverged
    metrics: Dict[str, Any]
    history: List[Dict[str, Any]]
    stage_results: Dict[str, Dict[str, Any]]
    divergence: Optional[Dict[str, Any]] = None  # {"stage", "epoch", "step", "what"} when diverged
    # each distillation term's ratio to CE at step 0 and its band (kdsuite.engine.scale_check)
    scale: Dict[str, Any] = field(default_factory=dict)


class Evaluation:
    """The trainer's evaluation side (a mixin of :class:`kdsuite.engine.trainer.Trainer`)."""
    method: Distiller
    s: TrainSettings
    device: torch.device
    dist: distributed.DistInfo
    test_loader: Optional[Iterable]
    validation_loader: Optional[Iterable]
    teacher_test_loader: Optional[Iterable]
    autocast: Callable[[], contextlib.AbstractContextManager]

    def _eval_teachers(self) -> List[Dict[str, float]]:
        if not self.method.teachers or self.test_loader is None:
            return []
        loader = self.teacher_test_loader if self.teacher_test_loader is not None else self.test_loader
        res = evaluate({f"teacher{i}": t for i, t in enumerate(self.method.teachers)}, loader,
                       self.device, self.autocast, self.s.channels_last, dist_info=self.dist)
        return [res[f"teacher{i}"] for i in range(len(self.method.teachers))]

    def _evaluate_splits(self):
        """Test-split results and, with a validation split, validation results, of every eval model."""
        models = self.method.eval_models()
        test = evaluate(models, self.test_loader, self.device, self.autocast, self.s.channels_last, dist_info=self.dist)
        val = None if self.validation_loader is None else evaluate(models, self.validation_loader, self.device,
                                                                   self.autocast, self.s.channels_last,
                                                                   dist_info=self.dist)
        return test, val

    @staticmethod
    def _track(cur: Dict[str, Any], test: Dict[str, float], val: Optional[Dict[str, float]], epoch: int,
               entry: Optional[Dict[str, Any]] = None, model_name: str = "student") -> None:
        """Update one model's running results with this epoch's test results ``test`` and validation
        results ``val``: last_* (test, this epoch); best_test_* (max test over epochs, the literature's
        best-on-test convention); best_* (test at the first epoch of highest validation top-1, with
        best_val_top1 and best_epoch) only when there is a validation split."""
        if entry is not None:
            entry.update({f"test/{model_name}/{k}": x for k, x in test.items()})
            if val is not None:
                entry.update({f"val/{model_name}/{k}": x for k, x in val.items()})
        cur.update(last_top1=test["top1"], last_top5=test["top5"], last_epoch=epoch)
        if test["top1"] > cur.get("best_test_top1", -1.0):
            cur.update(best_test_top1=test["top1"], best_test_top5=test["top5"], best_test_epoch=epoch)
        if val is not None and val["top1"] > cur.get("best_val_top1", -1.0):
            cur.update(best_val_top1=val["top1"], best_top1=test["top1"], best_top5=test["top5"], best_epoch=epoch)

    def _result(self, status: str, state: Dict[str, Any], stages: List[Stage]) -> FitResult:
        metrics: Dict[str, Any] = {}
        evaluated = [s.name for s in stages if s.name in state["stage_results"]]
        if not evaluated and status == "finished" and self.test_loader is not None:
            # no training epoch at all (e.g. importing pretrained weights as a teacher): evaluate once
            test, val = self._evaluate_splits()
            state["stage_results"]["eval"] = {}
            for k, r in test.items():
                self._track(state["stage_results"]["eval"].setdefault(k, {}), r, None if val is None else val[k], 0)
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
        return FitResult(status, metrics, state["history"], state["stage_results"], scale=state.get("scale", {}))
