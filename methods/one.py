"""``one``: on-the-fly native ensemble — online distillation between the branches of one network.

Paper: Lan, Zhu & Gong, "Knowledge Distillation On the Fly Native Ensemble", NeurIPS 2018 (arXiv
1806.04606), §3. The student's low-level layers are shared; its last stage and classifier are
repeated as m branches (branch 0 *is* the student, so the trained student stands alone). A gate on the
shared features weights the branches into an ensemble teacher that teaches every branch:

    g = softmax(W_g · GAP(shared features))                                   (Eq. 1)
    z_e = Σ_i g_i · z_i                                                        (Eq. 2)
    L = Σ_i CE(z_i, y) + CE(z_e, y) + T²·Σ_i KL(σ(z_e/T) ‖ σ(z_i/T))           (Eq. 5)

with the ensemble's soft targets held constant in the KL (as in the authors' code), T = 3 and m = 3
(the paper's CIFAR settings). The extra branches are copies of the student's last stage, final block
and classifier, re-initialised with the zoo's initialisation so that the branches start apart. The
run records the student (branch 0), every other branch and the gated ensemble (``ensemble/…``). Needs
a zoo CIFAR model (the branches split at its last stage).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods import losses
from methods.base import Distiller
from methods.hparams import ConfigError, HParam
from methods.registry import register_method
from zoo.cifar.common import CifarNet, init_weights


class Branch(nn.Module):
    """The last stage (+ its activation and final block), pooling and a classifier."""

    def __init__(self, stage: nn.Module, act: nn.Module, final: nn.Module, fc: nn.Module):
        super().__init__()
        self.stage, self.act, self.final, self.fc = stage, act, final, fc

    def forward(self, shared: torch.Tensor) -> torch.Tensor:
        x = self.final(self.act(self.stage(shared)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def shared_features(student: CifarNet, x: torch.Tensor) -> torch.Tensor:
    """Output of every stage but the last (the part all branches share)."""
    _, post, _, _ = student.traverse(x, stop_at=len(student.stages) - 1)
    return post[-1]


class EnsembleModel(nn.Module):
    """The gated ensemble as a standalone classifier (for evaluation)."""

    def __init__(self, method: "ONE"):
        super().__init__()
        self.method = method

    def forward(self, x):
        return self.method.branch_logits(x)[1]


class BranchModel(nn.Module):
    def __init__(self, method: "ONE", index: int):
        super().__init__()
        self.method, self.index = method, index

    def forward(self, x):
        return self.method.branches_all[self.index](shared_features(self.method.student, x))


@register_method
class ONE(Distiller):
    name = "one"
    category = "online"
    scheme = "online"
    paper = "Lan et al. 2018, Knowledge Distillation On the Fly Native Ensemble (NeurIPS)"
    equation = "Σ_i CE(z_i, y) + CE(z_e, y) + T²·Σ_i KL(σ(z_e/T) ‖ σ(z_i/T)), z_e = Σ_i softmax(W_g·GAP)_i·z_i"
    num_teachers = 0
    hparams = {"branches": HParam(3, low=2, doc="number of branches m (the student is one of them)"),
               "T": HParam(3.0, low=0.0, low_open=True, doc="temperature")}
    # branches start alike (KL ≈ 0) and first diverge: what must fall is the whole objective
    distill_terms = ("ce", "ce_branches", "ce_ensemble", "kl")

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if not isinstance(student, CifarNet) or len(student.stages) < 2:
            raise ConfigError(f"method 'one' splits the student into shared layers and branches at its last "
                              f"stage: it needs a zoo CIFAR model (cifar_*), not {type(student).__name__}")
        s = student
        self.extra = nn.ModuleList()
        for _ in range(hp.branches - 1):
            b = Branch(copy.deepcopy(s.stages[-1]), copy.deepcopy(s.stage_acts[-1]), copy.deepcopy(s.final),
                       copy.deepcopy(s.fc))
            init_weights(b)
            for m in b.modules():
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
            self.extra.append(b)
        c_shared = s.feature_info[-2]["num_chs"]
        self.gate = nn.Linear(c_shared, hp.branches)

    @property
    def branches_all(self):
        s = self.student
        return [Branch(s.stages[-1], s.stage_acts[-1], s.final, s.fc), *self.extra]

    def branch_logits(self, x):
        shared = shared_features(self.student, x)
        zs = [b(shared) for b in self.branches_all]
        g = F.softmax(self.gate(torch.flatten(F.adaptive_avg_pool2d(shared, 1), 1)), dim=1)  # (B, m)
        z_e = (torch.stack(zs, dim=2) * g[:, None, :]).sum(2)
        return zs, z_e

    def forward_train(self, x, y):
        zs, z_e = self.branch_logits(x)
        T = self.hp.T
        target = z_e.detach()
        return {"ce": losses.ce(zs[0], y), "ce_branches": sum(losses.ce(z, y) for z in zs[1:]),
                "ce_ensemble": losses.ce(z_e, y), "kl": sum(losses.kd_loss(z, target, T) for z in zs)}

    def eval_models(self):
        models = {"student": self.student, "ensemble": EnsembleModel(self)}
        for i in range(1, self.hp.branches):
            models[f"branch{i}"] = BranchModel(self, i)
        return models
