"""``lwf``: Learning without Forgetting on a class-incremental task sequence (lifelong distillation, §5.8).

Paper: Li & Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2017 (arXiv 1606.09282), §3 Eq. (1)–(2).
The classes are split in order into ``tasks`` groups, one trainer stage each; at the start of task t the
student is copied into a frozen *previous model* z° (:mod:`kdsuite.methods.components.incremental`, which
also filters each batch to the task's samples and measures the accuracy matrix, average accuracy and
forgetting). The student's single head covers every class; on task t

    L_t = CE(y, σ(z[C_t])) + λ·T²·KL(σ(z°[C_<t]/T) ‖ σ(z[C_<t]/T)),

C_t the classes of task t, C_<t those of the earlier tasks: the label term is a softmax over the current
task's logits only (LwF's new-task head), the distillation term keeps the old classes' logits where the
previous model put them (LwF's old-task "recorded responses", Eq. 2; its modified cross-entropy with
exponent 1/T differs from this KL by the previous model's entropy, a constant, and by the T² that makes
λ scale-free). Logits of classes not yet seen enter neither term. Defaults as the paper and FACIL
(mmasana/FACIL, ``approach/lwf.py``: CE on the current head, λ = 1, T = 2). ``lam: 0`` is plain
fine-tuning, the forgetting baseline. Not done: LwF's warm-up step (new head alone first).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch

from kdsuite.methods import losses
from kdsuite.methods.components.incremental import ClassIncremental
from kdsuite.methods.hparams import HParam
from kdsuite.methods.scale import ScaleBand
from kdsuite.methods.registry import register_method


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



@register_method
class LwF(ClassIncremental):
    name = "lwf"
    display_name = "LwF"
    category = "lifelong"
    paper = "Li & Hoiem 2017, Learning without Forgetting (TPAMI; ECCV 2016)"
    equation = "task t: CE(y, σ(z[C_t])) + λ·T²·KL(σ(z°[C_<t]/T) ‖ σ(z[C_<t]/T)), z° the frozen model after task t−1"
    # term / CE at step 0 of tasks 2–5 (test_parity_scale, resnet8x4 at 32×32 on 100 classes, 2026-12-04):
    # kd 0.089, 0.042, 0.022, 0.021 (0.264 / 2.96, 0.125 / 3.01, 0.071 / 3.19, 0.078 / 3.68); task 1 has no kd
    # On the digits demo (a 10-class split, 2026-12-04) the same ratios read 0.47-1.97: how far the old model
    # is from the new task's data sets them, not the weight, so the band reaches two decades above
    scale_band = {"kd": ScaleBand(0.004, 4.0, "lam", 0.04)}
    hparams = {"tasks": HParam(5, low=1, doc="number of class-incremental tasks (classes split in order)"),
               "T": HParam(2.0, low=0.0, low_open=True, doc="temperature of the distillation term"),
               "lam": HParam(1.0, low=0.0, doc="weight λ of the distillation term (0: fine-tuning)")}
    smoke_hparams = {"tasks": 2}

    def forward_train(self, x, y):
        z = self.student(x)
        z_prev = self.previous(x).detach() if self.task > 0 else None
        return lwf_loss(z, z_prev, y, self.current_classes(), self.old_classes(), self.hp.lam, self.hp.T)
