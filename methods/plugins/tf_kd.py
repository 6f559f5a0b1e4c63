"""``tf_kd``: teacher-free knowledge distillation with a hand-designed virtual teacher.

Paper: Yuan, Tay, Li, Wang & Feng, "Revisiting Knowledge Distillation via Label Smoothing
Regularization", CVPR 2020 (arXiv 1909.11723), Tf-KD_reg, Eq. (9). The virtual teacher puts
probability ``a`` on the true class and spreads the rest evenly:

    p^d(k) = a if k = y, (1 − a)/(K − 1) otherwise,
    L = (1 − α)·CE(y, q) + α·T²·KL(p^d_T ‖ q_T),

where q_T = softmax(z/T) and, as in the authors' code, p^d_T = softmax(p^d / T) (the temperature is
applied to the virtual teacher's probabilities used as logits). Defaults: a = 0.99 (the paper's
choice) and the authors' CIFAR-100 setting for ResNet-18, α = 0.1, T = 20 (their README lists per-model
values; a grid can override them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


def virtual_teacher(y: torch.Tensor, num_classes: int, a: float) -> torch.Tensor:
    """p^d of Eq. (9): ``a`` on the label, (1 − a)/(K − 1) on every other class."""
    p = torch.full((len(y), num_classes), (1.0 - a) / (num_classes - 1), device=y.device)
    return p.scatter_(1, y[:, None], a)


@register_method
class TfKD(Distiller):
    name = "tf_kd"
    category = "self"
    scheme = "self"
    paper = "Yuan et al. 2020, Revisiting Knowledge Distillation via Label Smoothing Regularization (CVPR)"
    equation = "(1 − α)·CE(y, q) + α·T²·KL(softmax(p^d/T) ‖ softmax(z/T)), p^d = a on y, (1 − a)/(K − 1) elsewhere"
    num_teachers = 0
    hparams = {"a": HParam(0.99, low=0.0, high=1.0, doc="virtual teacher's probability of the true class"),
               "alpha": HParam(0.1, low=0.0, high=1.0, doc="weight of the virtual-teacher term"),
               "T": HParam(20.0, low=0.0, low_open=True, doc="temperature")}
    distill_terms = ("ce", "reg")

    def forward_train(self, x, y):
        z = self.student(x)
        p_d = virtual_teacher(y, z.shape[1], self.hp.a)
        T = self.hp.T
        target = F.softmax(p_d / T, dim=1)
        log_q = F.log_softmax(z / T, dim=1)
        kl = (target * (target.clamp_min(1e-12).log() - log_q)).sum(1).mean()
        return {"ce": (1 - self.hp.alpha) * losses.ce(z, y), "reg": self.hp.alpha * T * T * kl}
