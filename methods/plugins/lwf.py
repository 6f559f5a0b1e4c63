"""``lwf``: Learning without Forgetting on a class-incremental task sequence (lifelong distillation, §5.8).

Paper: Li & Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2017 (arXiv 1606.09282), §3 Eq. (1)–(2).
The classes are split in order into ``tasks`` groups (near-equal: ``tasks`` need not divide the class
count; the first groups get one more class). Task t is one trainer stage; at its start the student is
copied into a frozen *previous model* z°. The student's single head covers every class; on task t

    L_t = CE(y, σ(z[C_t])) + λ·T²·KL(σ(z°[C_<t]/T) ‖ σ(z[C_<t]/T)),

C_t the classes of task t, C_<t those of the earlier tasks: the label term is a softmax over the current
task's logits only (LwF's new-task head), the distillation term keeps the old classes' logits where the
previous model put them (LwF's old-task "recorded responses", Eq. 2; its modified cross-entropy with
exponent 1/T differs from this KL by the previous model's entropy, a constant, and by the T² that makes
λ scale-free). Logits of classes not yet seen enter neither term. Defaults as the paper and FACIL
(mmasana/FACIL, ``approach/lwf.py``): T = 2, λ = 1. ``lam: 0`` is plain fine-tuning, the forgetting
baseline.

Task data: the plugin filters each training batch to the current task's classes (no trainer or data-layer
change). Batches shrink to about batch_size/tasks samples, and each epoch still reads the whole training
set, so a task epoch costs a full pass of loading but only its own samples' compute; a batch with no sample
of the task is skipped (no optimizer step). Use a larger ``dataset.batch_size`` to keep steps full.

Evaluation: the student predicts among the classes seen so far (unseen logits masked). At the end of each
task's last epoch the plugin measures accuracy on each task's test classes, A[t][i] (after task t, on task
i), held in a buffer so checkpoints carry it. The record's ``metrics`` gain ``acc_matrix`` (rows: after
task t; entries for tasks not yet seen are ``None``), ``avg_acc`` (mean of the last row) and ``forgetting``
(mean over i < T of max_{t<T} A[t][i] − A[T][i]), as in Chaudhry et al. 2018. Each task's accuracy over
all test classes is in ``stage_results.task<k>``; ``last_top1`` is the final model's, on every class.
In a data-parallel run every process measures the matrix on the whole test split.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from kdsuite.core.errors import ConfigError
from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, Stage
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method

MASKED = -1e4  # finite, so evaluation losses stay finite; far below any trained logit


def task_classes(num_classes: int, tasks: int) -> List[List[int]]:
    """Classes 0..C−1 split in order into ``tasks`` near-equal groups."""
    return [g.tolist() for g in np.array_split(np.arange(num_classes), tasks)]


def lwf_loss(z: torch.Tensor, z_prev: Optional[torch.Tensor], y: torch.Tensor, current: Sequence[int],
             old: Sequence[int], lam: float, T: float) -> Dict[str, torch.Tensor]:
    """The two terms of L_t on student logits ``z`` (B, C), previous-model logits ``z_prev`` and labels
    ``y`` (all in ``current``)."""
    cur = torch.as_tensor(list(current), device=z.device)
    remap = torch.full((z.shape[1],), -1, dtype=torch.long, device=z.device)
    remap[cur] = torch.arange(len(cur), device=z.device)
    out = {"ce": losses.ce(z[:, cur], remap[y])}
    if z_prev is not None and len(old) and lam > 0:
        o = torch.as_tensor(list(old), device=z.device)
        out["kd"] = lam * losses.kd_loss(z[:, o], z_prev[:, o].detach(), T)
    elif z_prev is not None and len(old):
        out["kd"] = z.sum() * 0.0  # logged as 0 for λ = 0 (fine-tuning), same keys every task
    return out


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


@register_method
class LwF(Distiller):
    name = "lwf"
    category = "lifelong"
    scheme = "self"
    paper = "Li & Hoiem 2017, Learning without Forgetting (TPAMI; ECCV 2016)"
    equation = "task t: CE(y, σ(z[C_t])) + λ·T²·KL(σ(z°[C_<t]/T) ‖ σ(z[C_<t]/T)), z° the frozen model after task t−1"
    num_teachers = 0
    hparams = {"tasks": HParam(5, low=1, doc="number of class-incremental tasks (classes split in order)"),
               "T": HParam(2.0, low=0.0, low_open=True, doc="temperature of the distillation term"),
               "lam": HParam(1.0, low=0.0, doc="weight λ of the distillation term (0: fine-tuning)")}
    smoke_hparams = {"tasks": 2}
    # the distillation term starts at 0 each task (previous model = student) and grows as the new task is
    # learnt; the objective that must fall is the whole loss
    distill_terms = ("ce", "kd")

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if hp.tasks > ctx.num_classes:
            raise ConfigError(f"method 'lwf': tasks = {hp.tasks} exceeds the data set's {ctx.num_classes} classes")
        self.task_groups = task_classes(ctx.num_classes, hp.tasks)
        self.previous = copy.deepcopy(student).requires_grad_(False).eval()
        self.register_buffer("acc", torch.full((hp.tasks, hp.tasks), -1.0, dtype=torch.float64))

    def train(self, mode: bool = True):
        super().train(mode)
        self.previous.eval()
        return self

    # ---- tasks ---------------------------------------------------------------------------
    def stages(self):
        return [Stage(f"task{k}", self.ctx.epochs) for k in range(1, self.hp.tasks + 1)]

    @property
    def task(self) -> int:
        return self.progress.stage_index

    def seen(self) -> int:
        return sum(len(g) for g in self.task_groups[: self.task + 1])

    def on_stage_start(self, stage, trainer) -> None:
        self.previous.load_state_dict(self.student.state_dict())

    def train_step(self, batch, trainer):
        x, y = batch[0], batch[1]
        cur = self.task_groups[self.task]
        keep = (y >= cur[0]) & (y <= cur[-1])
        if not bool(keep.any()):  # no sample of this task in the batch: nothing to learn from
            zero = torch.zeros((), device=y.device)
            return {"ce": zero, **({"kd": zero} if self.task > 0 else {})}
        losses_ = self.forward_train(x[keep], y[keep])
        trainer.optimize("student", losses_)
        return losses_

    def forward_train(self, x, y):
        old = [c for g in self.task_groups[: self.task] for c in g]
        z = self.student(x)
        z_prev = self.previous(x) if self.task > 0 else None
        if z_prev is not None:
            z_prev = z_prev.detach()
        return lwf_loss(z, z_prev, y, self.task_groups[self.task], old, self.hp.lam, self.hp.T)

    # ---- evaluation ----------------------------------------------------------------------
    def eval_models(self):
        return {"student": SeenClasses(self.student, self.seen())}

    @torch.no_grad()
    def task_accuracies(self, loader, device, autocast=None) -> List[float]:
        """Accuracy (%) of the student, among the classes seen so far, on each task's test samples."""
        model = SeenClasses(self.student, self.seen())
        was = self.student.training
        self.student.eval()
        hits = torch.zeros(self.ctx.num_classes, dtype=torch.float64)
        count = torch.zeros(self.ctx.num_classes, dtype=torch.float64)
        try:
            for batch in loader:
                x, y = batch[0].to(device), batch[1].to(device)
                with autocast() if autocast is not None else torch.autocast(device.type, enabled=False):
                    pred = model(x).float().argmax(dim=1)
                y = y.cpu()
                hits += torch.bincount(y[pred.cpu() == y], minlength=self.ctx.num_classes).double()
                count += torch.bincount(y, minlength=self.ctx.num_classes).double()
        finally:
            self.student.train(was)
        return [100.0 * hits[g].sum().item() / max(count[g].sum().item(), 1.0) for g in self.task_groups]

    def on_epoch_end(self, trainer) -> None:
        p = self.progress
        if p.epoch + 1 == p.total_epochs and trainer.val_loader is not None:
            row = self.task_accuracies(trainer.val_loader, trainer.device, trainer.autocast)
            self.acc[self.task] = torch.tensor(row, dtype=torch.float64)

    def record_metrics(self, parts) -> Dict[str, Any]:
        acc = self.acc.cpu().tolist()
        if any(acc[t][i] < 0 for t in range(len(acc)) for i in range(t + 1)):
            return {}  # some task was not evaluated (no test data, or a stage of 0 epochs)
        return {"tasks": self.hp.tasks, **lifelong_metrics(acc)}
