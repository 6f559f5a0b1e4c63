"""``tf_kd``: teacher-free knowledge distillation with a hand-designed virtual teacher.

Paper: Yuan, Tay, Li, Wang & Feng, "Revisiting Knowledge Distillation via Label Smoothing
Regularization", CVPR 2020 (arXiv 1909.11723), Tf-KD_reg, Eq. (9). The virtual teacher puts
probability ``a`` on the true class and spreads the rest evenly:

    p^d(k) = a if k = y, (1 − a)/(K − 1) otherwise.

Default (``variant: code``) — the authors' code (github.com/yuanli2333/Teacher-free-Knowledge-Distillation,
my_loss_function.py ``loss_kd_regularization``), which produced the paper's numbers:

    L = (1 − α)·CE(y, q) + α·m·mean_{i,k}[ p^d_T(k)·(log p^d_T(k) − log q(k)) ]
      = (1 − α)·CE(y, q) + α·(m/K)·KL(p^d_T ‖ q),   p^d_T = softmax(p^d / T),  q = softmax(z)

(``nn.KLDivLoss()`` averages over batch *and* classes; the student's logits are not divided by T and
there is no T² factor). Defaults: a = 0.99 and the authors' CIFAR-100 ResNet-18 setting
(experiments/base_experiments/base_resnet18/params.json): α = 0.1, T = 20, m = 100 (their MobileNetV2
and ShuffleNetV2 settings: α 0.95, T 40 / 10, m 1 — a grid can override).

``variant: paper`` — the KD form of Eq. (9) with both sides softened and the usual T² factor:
L = (1 − α)·CE + α·T²·KL(p^d_T ‖ softmax(z/T)) (``multiplier`` unused). At T = 20 this term is
about 400× the code's for the same KL of the student's raw logits; the published numbers come from
the code's form.
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
    display_name = "Tf-KD"
    category = "self"
    scheme = "self"
    paper = "Yuan et al. 2020, Revisiting Knowledge Distillation via Label Smoothing Regularization (CVPR)"
    equation = "(1 − α)·CE(y, q) + α·(m/K)·KL(softmax(p^d/T) ‖ softmax(z)), p^d = a on y, (1 − a)/(K − 1) elsewhere"
    num_teachers = 0
    hparams = {"a": HParam(0.99, low=0.0, high=1.0, doc="virtual teacher's probability of the true class"),
               "alpha": HParam(0.1, low=0.0, high=1.0, doc="weight of the virtual-teacher term"),
               "T": HParam(20.0, low=0.0, low_open=True, doc="temperature of the virtual teacher"),
               "multiplier": HParam(100.0, low=0.0, doc="m: the authors' code scales its class-averaged KL by m"),
               "variant": HParam("code", choices=("code", "paper"),
                                 doc="code: the authors' loss_kd_regularization (default); paper: T²·KL at T")}
    distill_terms = ("ce", "reg")

    def forward_train(self, x, y):
        z = self.student(x)
        p_d = virtual_teacher(y, z.shape[1], self.hp.a)
        T = self.hp.T
        target = F.softmax(p_d / T, dim=1)
        if self.hp.variant == "paper":
            log_q, weight = F.log_softmax(z / T, dim=1), T * T
        else:  # the authors' code: raw student logits, KL averaged over the K classes too, times m
            log_q, weight = F.log_softmax(z, dim=1), self.hp.multiplier / z.shape[1]
        kl = (target * (target.clamp_min(1e-12).log() - log_q)).sum(1).mean()
        return {"ce": (1 - self.hp.alpha) * losses.ce(z, y), "reg": self.hp.alpha * weight * kl}
