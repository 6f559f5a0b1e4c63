"""Class-incremental task sequences for the lifelong-distillation methods (``lwf``, ``icarl``; survey §5.8).

Role in the flow: a lifelong method subclasses :class:`ClassIncremental`. The classes are split in order
into ``tasks`` near-equal groups (the first groups get one more class when ``tasks`` does not divide the
class count); task t is one trainer stage, and at its start the student is copied into the frozen
``previous`` model (the model after task t − 1) the methods distil from.

Task data: :meth:`ClassIncremental.task_batch` filters each training batch to the current task's classes
(no trainer or data-layer change). Batches shrink to about batch_size/tasks samples while each epoch still
reads the whole training set (a full pass of loading, only the task's samples' compute); a batch with no
sample of the task is skipped (no optimizer step). A larger ``dataset.batch_size`` keeps steps full.

Evaluation: the student predicts among the classes seen so far (unseen logits masked). At the end of each
task's last epoch the accuracy on each task's test classes, A[t][i] (after task t, on task i), goes into a
buffer (checkpoints carry it). The record's ``metrics`` gain ``acc_matrix`` (rows: after task t; tasks not
yet seen are ``None``), ``avg_acc`` (mean of the last row) and ``forgetting`` (mean over i < T of
max_{t<T} A[t][i] − A[T][i], Chaudhry et al. 2018). Each task's accuracy over all test classes is in
``stage_results.task<k>``; ``last_top1`` is the final model's, on every class. In a data-parallel run
every process measures the matrix on the whole test split.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from kdsuite.core.errors import ConfigError
from kdsuite.methods.base import Distiller, Stage

MASKED = -1e4  # finite, so evaluation losses stay finite; far below any trained logit


def task_classes(num_classes: int, tasks: int) -> List[List[int]]:
    """Classes 0..C−1 split in order into ``tasks`` near-equal groups."""
    return [g.tolist() for g in np.array_split(np.arange(num_classes), tasks)]


def lifelong_metrics(acc: Sequence[Sequence[float]]) -> Dict[str, Any]:
    """``acc_matrix`` (None above the diagonal), ``avg_acc`` and ``forgetting`` from the T×T matrix
    A[t][i] (entries with i > t are ignored)."""
    n = len(acc)
    matrix = [[float(acc[t][i]) if i <= t else None for i in range(n)] for t in range(n)]
    last = matrix[-1]
    forgetting = [max(matrix[t][i] for t in range(i, n - 1)) - last[i] for i in range(n - 1)]
    return {"acc_matrix": matrix, "avg_acc": sum(last) / n,
            "forgetting": sum(forgetting) / len(forgetting) if forgetting else 0.0}


class SeenClasses(nn.Module):
    """The student predicting among the first ``n`` classes (the others masked)."""

    def __init__(self, student: nn.Module, n: int):
        super().__init__()
        self.student, self.n = student, n

    def forward(self, x):
        z = self.student(x)
        if self.n < z.shape[1]:
            z = z.clone()
            z[:, self.n:] = MASKED
        return z



class ClassIncremental(Distiller):
    """A student trained on ``hp.tasks`` class-incremental tasks, one stage each, with a frozen copy of
    itself from the end of the previous task (``previous``). Subclasses implement :meth:`task_loss`."""

    scheme = "self"
    num_teachers = 0
    # each task's loss starts at the previous model (distillation terms 0) and the new task is learnt
    # against them; the objective that must fall is the whole loss
    distill_terms = ("ce", "kd")

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if hp.tasks > ctx.num_classes:
            raise ConfigError(f"method '{self.name}': method.hparams.tasks = {hp.tasks} exceeds the data set's "
                              f"{ctx.num_classes} classes; allowed: 1 to {ctx.num_classes}")
        self.task_groups = task_classes(ctx.num_classes, hp.tasks)
        self.previous = copy.deepcopy(student).requires_grad_(False).eval()
        self.register_buffer("acc", torch.full((hp.tasks, hp.tasks), -1.0, dtype=torch.float64))

    def train(self, mode: bool = True):
        super().train(mode)
        self.previous.eval()  # the frozen previous model always predicts in eval mode
        return self

    # ---- tasks ---------------------------------------------------------------------------
    def stages(self):
        return [Stage(f"task{k}", self.ctx.epochs) for k in range(1, self.hp.tasks + 1)]

    @property
    def task(self) -> int:
        return self.progress.stage_index

    def current_classes(self) -> List[int]:
        return self.task_groups[self.task]

    def old_classes(self) -> List[int]:
        return [c for g in self.task_groups[: self.task] for c in g]

    def seen(self) -> int:
        return sum(len(g) for g in self.task_groups[: self.task + 1])

    def on_stage_start(self, stage, trainer) -> None:
        self.previous.load_state_dict(self.student.state_dict())

    def task_batch(self, x: torch.Tensor, y: torch.Tensor):
        """The samples of ``(x, y)`` that belong to the current task."""
        cur = self.current_classes()
        keep = (y >= cur[0]) & (y <= cur[-1])
        return x[keep], y[keep]

    def train_step(self, batch, trainer):
        x, y = self.task_batch(batch[0], batch[1])
        if len(y) == 0:  # no sample of this task in the batch: nothing to learn from
            zero = torch.zeros((), device=batch[1].device)
            return {k: zero for k in self.distill_terms if k != "kd" or self.task > 0}
        out = self.forward_train(x, y)
        trainer.optimize("student", out)
        return out

    # ---- evaluation ----------------------------------------------------------------------
    def classifier(self) -> nn.Module:
        """The student as it classifies after the current task (default: its outputs over the seen classes)."""
        return SeenClasses(self.student, self.seen())

    def deployed_student(self) -> nn.Module:
        return self.classifier()

    @torch.no_grad()
    def task_accuracies(self, loader, device: torch.device, autocast: Optional[Callable] = None) -> List[float]:
        """Accuracy (%) of the student, among the classes seen so far, on each task's test samples."""
        model = self.classifier()
        was = self.student.training
        self.student.eval()
        hits = torch.zeros(self.ctx.num_classes, dtype=torch.float64)
        count = torch.zeros(self.ctx.num_classes, dtype=torch.float64)
        try:
            for batch in loader:
                x, y = batch[0].to(device), batch[1]
                with autocast() if autocast is not None else torch.autocast(device.type, enabled=False):
                    pred = model(x).float().argmax(dim=1).cpu()
                y = y.cpu()
                hits += torch.bincount(y[pred == y], minlength=self.ctx.num_classes).double()
                count += torch.bincount(y, minlength=self.ctx.num_classes).double()
        finally:
            self.student.train(was)
        return [100.0 * hits[g].sum().item() / max(count[g].sum().item(), 1.0) for g in self.task_groups]

    def on_epoch_end(self, trainer) -> None:
        p = self.progress
        if p.epoch + 1 == p.total_epochs and trainer.test_loader is not None:
            row = self.task_accuracies(trainer.test_loader, trainer.device, trainer.autocast)
            self.acc[self.task] = torch.tensor(row, dtype=torch.float64)

    def record_metrics(self, parts) -> Dict[str, Any]:
        acc = self.acc.cpu().tolist()
        if any(acc[t][i] < 0 for t in range(len(acc)) for i in range(t + 1)):
            return {}  # some task was not evaluated (no test data, or a stage of 0 epochs)
        return {"tasks": self.hp.tasks, **lifelong_metrics(acc)}
