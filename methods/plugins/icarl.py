"""``icarl``: iCaRL's representation learning — distillation from the previous model plus an exemplar memory.

Paper: Rebuffi, Kolesnikov, Sperl & Lampert, "iCaRL: Incremental Classifier and Representation Learning",
CVPR 2017 (arXiv 1611.07725), Alg. 3 (update representation) and Alg. 4 (herding selection). Tasks as in
:mod:`kdsuite.methods.components.incremental` (one stage each, frozen previous model z°, per-task batches,
accuracy matrix). Each step's task samples are joined by exemplars of the old classes; on that union, with
sigmoid outputs over the classes seen so far,

    L = −1/(B·|C_≤t|) Σ_x [ Σ_{y∈C_t} (δ_{y=label} log σ(z_y) + (1−δ) log(1−σ(z_y)))
                           + Σ_{y∈C_<t} (σ(z°_y) log σ(z_y) + (1−σ(z°_y)) log(1−σ(z_y))) ],

logged as ``bce`` (the current classes' label term) and ``kd`` (the old classes' distillation term, Eq.
of Alg. 3 with targets q_y = σ(z°_y)); the paper's sigmoid/BCE, not the CE + KD of later reimplementations
(e.g. PyCIL). Averaging over samples and seen classes is a scale choice (the paper writes a sum).

Memory: ``memory`` exemplars in all (paper: 2000 for CIFAR-100's 100 classes, 20 a class; default 200 for
digits' 10), m = ⌊memory / classes seen⌋ per class. At the end of each task's last epoch the old classes
keep the first m of theirs (herding order, so the prefix is the best subset) and each new class gets m by
herding on the current model's ℓ2-normalised pooled features: p_k = argmin_x ‖μ − (φ(x) + Σ_{j<k} φ(p_j))/k‖
over the class's training samples not yet chosen (μ their mean). The samples are read from the training
loader as it yields them (with its augmentation, if any). Each step adds as many exemplars as the batch
has task samples (uniform draw without replacement; the paper shuffles the union). A data-parallel run
is refused at its first step (each process would herd from its own share of the data).

Classification (``classifier``): ``nme`` (default, the paper's Alg. 1) assigns the class whose exemplars'
mean ℓ2-normalised feature (normalised again) is nearest to the sample's normalised feature (no flipped
copies of the exemplars, which the paper adds); ``network`` uses the network's own outputs over the seen
classes (the paper's "hybrid1"). The memory is therefore also updated after the last task.
Reference: the paper (no line-by-line comparison with the authors' Theano code).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.core.errors import ConfigError
from kdsuite.methods.components.incremental import MASKED, ClassIncremental
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


def icarl_loss(z: torch.Tensor, z_prev: Optional[torch.Tensor], y: torch.Tensor, current: Sequence[int],
               old: Sequence[int]) -> Dict[str, torch.Tensor]:
    """The label (``bce``) and distillation (``kd``) parts of iCaRL's loss on logits ``z`` (B, C)."""
    n = z.shape[0] * (len(current) + len(old))
    cur = torch.as_tensor(list(current), device=z.device)
    target = (y[:, None] == cur[None, :]).to(z.dtype)
    out = {"bce": F.binary_cross_entropy_with_logits(z[:, cur], target, reduction="sum") / n}
    if z_prev is not None and len(old):
        o = torch.as_tensor(list(old), device=z.device)
        q = torch.sigmoid(z_prev[:, o].detach().to(z.dtype))
        out["kd"] = F.binary_cross_entropy_with_logits(z[:, o], q, reduction="sum") / n
    return out


def herding(features: torch.Tensor, m: int) -> List[int]:
    """Indices of ``m`` rows of ``features`` (ℓ2-normalised) chosen by iCaRL's herding, in order."""
    mu = features.mean(dim=0)
    chosen: List[int] = []
    total = torch.zeros_like(mu)
    free = torch.ones(len(features), dtype=torch.bool, device=features.device)
    for k in range(1, min(m, len(features)) + 1):
        dist = (mu[None, :] - (total[None, :] + features) / k).norm(dim=1)
        dist[~free] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        free[i] = False
        total += features[i]
    return chosen


class NearestMean(nn.Module):
    """iCaRL's nearest-mean-of-exemplars classifier: scores −‖φ(x) − μ_y‖ for classes with exemplars, the
    class means taken from the memory when the classifier is built (the student in eval mode)."""

    def __init__(self, method: "ICaRL"):
        super().__init__()
        self.student = method.student
        object.__setattr__(self, "_features", method.features)
        n = method.ctx.num_classes
        was = self.student.training
        self.student.eval()
        with torch.no_grad():
            means = torch.zeros(n, self.student_dim(method), device=method.mem_y.device)
            has = torch.zeros(n, dtype=torch.bool, device=method.mem_y.device)
            for c in range(method.seen()):
                idx = (method.mem_y == c).nonzero().flatten()
                if len(idx):
                    means[c] = F.normalize(self._features(method.mem_x[idx]).mean(dim=0), dim=0)
                    has[c] = True
        self.student.train(was)
        self.register_buffer("means", means)
        self.register_buffer("has", has)

    @staticmethod
    def student_dim(method) -> int:
        return int(method.student_shapes()["pool"][-1])

    def forward(self, x):
        d = torch.cdist(self._features(x), self.means)
        return torch.where(self.has[None, :], -d, torch.full_like(d, MASKED))


@register_method
class ICaRL(ClassIncremental):
    name = "icarl"
    display_name = "iCaRL"
    category = "lifelong"
    paper = "Rebuffi et al. 2017, iCaRL: Incremental Classifier and Representation Learning (CVPR)"
    equation = ("BCE over seen classes on task data ∪ exemplars: one-hot targets for C_t, σ(z°) for C_<t; "
                "exemplars by herding, memory/|C_≤t| a class")
    hparams = {"tasks": HParam(5, low=1, doc="number of class-incremental tasks (classes split in order)"),
               "memory": HParam(200, low=0, doc="exemplars kept in all (over every class seen)"),
               "classifier": HParam("nme", choices=("nme", "network"),
                                    doc="nearest mean of exemplars, or the network's outputs")}
    smoke_hparams = {"tasks": 2, "memory": 20}
    student_taps = ("pool",)
    distill_terms = ("bce", "kd")

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.register_buffer("mem_x", torch.zeros(hp.memory, *ctx.input_shape))
        self.register_buffer("mem_y", torch.full((hp.memory,), -1, dtype=torch.long))

    def train_step(self, batch, trainer):
        if trainer.dist.active:
            raise ConfigError("method 'icarl' runs in one process only (tasks_per_node = 1): each process would "
                              "herd its exemplars from its own share of the data")
        x, y = self.task_batch(batch[0], batch[1])
        if len(y) == 0:  # no sample of this task in the batch: nothing to learn from
            zero = torch.zeros((), device=batch[1].device)
            return {k: zero for k in self.distill_terms if k != "kd" or self.task > 0}
        filled = (self.mem_y >= 0).nonzero().flatten()
        if len(filled):
            pick = filled[torch.randperm(len(filled), device=filled.device)[: len(y)]]
            x = torch.cat([x, self.mem_x[pick].to(x.dtype)])
            y = torch.cat([y, self.mem_y[pick]])
        out = self.forward_train(x, y)
        trainer.optimize("student", out)
        return out

    def forward_train(self, x, y):
        z = self.student(x)
        z_prev = self.previous(x).detach() if self.task > 0 else None
        return icarl_loss(z, z_prev, y, self.current_classes(), self.old_classes())

    # ---- memory --------------------------------------------------------------------------
    @torch.no_grad()
    def update_memory(self, loader, device) -> None:
        """Shrink the old classes' exemplar sets and select the current task's classes' by herding."""
        seen = self.seen()
        m = self.hp.memory // seen if seen else 0
        keep_x, keep_y = [], []
        for c in self.old_classes():
            idx = (self.mem_y == c).nonzero().flatten()[:m]
            keep_x.append(self.mem_x[idx])
            keep_y.append(self.mem_y[idx])
        cur = self.current_classes()
        xs, ys = [], []
        for batch in loader:
            x, y = batch[0].to(device), batch[1].to(device)
            keep = (y >= cur[0]) & (y <= cur[-1])
            xs.append(x[keep].float())
            ys.append(y[keep])
        xs_all, ys_all = torch.cat(xs), torch.cat(ys)
        was = self.student.training
        self.student.eval()
        try:
            feats = torch.cat([self.features(xb) for xb in xs_all.split(256)])
        finally:
            self.student.train(was)
        for c in cur:
            idx = (ys_all == c).nonzero().flatten()
            chosen = idx[herding(feats[idx], m)] if len(idx) and m else idx[:0]
            keep_x.append(xs_all[chosen])
            keep_y.append(ys_all[chosen])
        new_x, new_y = torch.cat(keep_x), torch.cat(keep_y)
        self.mem_y.fill_(-1)
        self.mem_x.zero_()
        self.mem_x[: len(new_y)] = new_x.to(self.mem_x.dtype)
        self.mem_y[: len(new_y)] = new_y

    def on_epoch_end(self, trainer) -> None:
        p = self.progress
        if p.epoch + 1 == p.total_epochs and trainer.train_loader is not None:
            self.update_memory(trainer.train_loader, trainer.device)
        super().on_epoch_end(trainer)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.student_forward(x)[1]["pool"].float().flatten(1), dim=1)

    def classifier(self):
        if self.hp.classifier == "network":
            return super().classifier()
        return NearestMean(self)

    def record_metrics(self, parts):
        out = super().record_metrics(parts)
        return {**out, "memory": self.hp.memory} if out else out
