"""``fsp``: flow of solution procedure (FSP matrices).

Paper: Yim, Joo, Bae & Kim, "A Gift from Knowledge Distillation: Fast Optimization, Network
Minimization and Transfer Learning", CVPR 2017. Eq. (1): the FSP matrix between two feature maps
F¹ ∈ R^{h×w×m} and F² ∈ R^{h×w×n} is G_{i,j} = Σ_{s,t} F¹_{s,t,i} · F²_{s,t,j} / (h·w);
Eq. (2): L_FSP = 1/N Σ_x Σ_i λ_i ‖G_i^T(x) − G_i^S(x)‖₂².

Default: what RepDistiller runs (github.com/HobbitLong/RepDistiller: ``distiller_zoo/FSP.py``,
``train_student.py``, ``helper/pretrain.py``, ``helper/loops.py``), the code behind the CIFAR-100
numbers the ``cifar100_repdistiller`` grid is compared with:
- features: the stem output and every stage output (RepDistiller's ``feat[:-1]``), one FSP matrix per
  pair of consecutive features; when the two maps of a pair differ in size the larger is
  average-pooled to the smaller; λ_i = 1/(m_i·n_i), i.e. the mean over the batch and the matrix entries
  of the squared difference, summed over the pairs (no other weight);
- stage ``init`` (``init_epochs`` = 30): the student's feature modules (stem + stages, not the
  classifier) are trained on L_FSP alone, with their own SGD optimizer at the run's learning rate,
  held constant (``kdsuite.methods.components.init_stage``);
- stage ``main``: CE alone. RepDistiller's ``-b 50`` never enters the loss for FSP (its ``loss_kd`` is 0
  in the main loop), hence ``beta`` = 0. This is also the paper's two-stage procedure.
Options: ``beta`` > 0 adds β·L_FSP to CE in the main stage; ``init_epochs: 0, beta: 50`` is a
one-stage variant that neither the paper nor RepDistiller ran (at initialisation on resnet32x4 →
resnet8x4 the unweighted L_FSP is ~1e4 × CE, so 50·L_FSP swamps the task loss).
FSP needs the teacher's and student's channel counts to agree pair by pair; otherwise it cannot be
applied (RepDistiller raises too) and a ConfigError names both shapes.
"""
from __future__ import annotations

from typing import List

import torch

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, Stage
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.components.features import match_resolution
from kdsuite.methods.components.init_stage import feature_params, head_to_eval, init_group
from kdsuite.methods.registry import register_method


def fsp_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, m, n) FSP matrix of maps ``a`` (B, m, h, w) and ``b`` (B, n, h', w'); the larger map is
    average-pooled to the smaller's size first."""
    a, b = match_resolution(a, b)
    return torch.einsum("bihw,bjhw->bij", a, b) / (a.shape[-2] * a.shape[-1])


def fsp_loss(s_feats: List[torch.Tensor], t_feats: List[torch.Tensor]) -> torch.Tensor:
    total = 0.0
    for i in range(len(s_feats) - 1):
        gs = fsp_matrix(s_feats[i], s_feats[i + 1])
        gt = fsp_matrix(t_feats[i], t_feats[i + 1])
        total = total + (gs - gt).pow(2).mean()
    return total


@register_method
class FSP(Distiller):
    name = "fsp"
    display_name = "FSP"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "relation"
    scheme = "offline"
    paper = "Yim et al. 2017, A Gift from Knowledge Distillation (CVPR)"
    equation = "init: Σ_i mean((G_i^T − G_i^S)²), G_i = F_iᵀF_{i+1}/(h·w) between consecutive stages; main: CE"
    hparams = {"beta": HParam(0.0, low=0.0, doc="weight of an FSP term added to CE in the main stage "
                                                "(0: RepDistiller and the paper, CE alone)"),
               "init_epochs": HParam(30, low=0, doc="epochs of the initialisation stage (FSP loss only)")}
    student_taps = ("feat0", "stages")
    teacher_taps = ("feat0", "stages")
    same_family_only = ("FSP matrices are Gram matrices between consecutive stage maps (stem → stage 1 → …, one per "
                        "resolution change) that must match in channels stage by stage; the flow between another "
                        "family's consecutive stages (a ViT's or MLP's blocks keep one grid and width) has no "
                        "counterpart for them")
    smoke_hparams = {"init_epochs": 1}

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        s, t = self.student_shapes(), self.teacher_shapes()
        ss, ts = [s[k] for k in self.s_taps], [t[k] for k in self.t_taps[0]]
        if len(ss) != len(ts):
            raise ConfigError(f"method 'fsp': the student has {len(ss)} features (stem + stages) with shapes {ss} "
                              f"and the teacher {len(ts)} with shapes {ts}; FSP pairs them one to one")
        for i in range(len(ss) - 1):
            if (ss[i][0], ss[i + 1][0]) != (ts[i][0], ts[i + 1][0]):
                raise ConfigError(f"method 'fsp': the FSP matrix of student features {ss[i]} → {ss[i + 1]} is "
                                  f"{ss[i][0]}×{ss[i + 1][0]} but the teacher's, of {ts[i]} → {ts[i + 1]}, is "
                                  f"{ts[i][0]}×{ts[i + 1][0]}; FSP needs equal channel counts (student shapes "
                                  f"{ss}, teacher shapes {ts})")

    def stages(self):
        init = [Stage("init", self.hp.init_epochs, optimizers=["init"], evaluate=False,
                       step=self.init_step)] if self.hp.init_epochs else []
        return init + [Stage("main", self.ctx.epochs, optimizers=["student"])]

    def optim_groups(self):
        groups = super().optim_groups()
        groups["init"] = init_group(feature_params(self.student))
        return groups

    def _fsp(self, x):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        loss = fsp_loss([sf[k].float() for k in self.s_taps], [tf[k].float() for k in self.t_taps[0]])
        return s_logits, loss

    def init_step(self, batch, trainer):
        """The init stage's step: the FSP loss alone trains the student's feature layers."""
        head_to_eval(self.student)
        _, loss = self._fsp(batch[0])
        out = {"fsp": loss}
        trainer.optimize("init", out)
        return out

    def forward_train(self, x, y):
        if self.hp.beta == 0:  # RepDistiller's main stage: CE alone, no teacher forward needed
            return {"ce": losses.ce(self.student(x), y)}
        s_logits, loss = self._fsp(x)
        return {"ce": losses.ce(s_logits, y), "fsp": self.hp.beta * loss}
