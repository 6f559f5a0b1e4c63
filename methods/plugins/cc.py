"""``cc``: correlation congruence knowledge distillation (CCKD).

Paper: Peng, Jin, Liu, Zhou, Wu, Liu, Li & Zhang, "Correlation Congruence for Knowledge
Distillation", ICCV 2019 (arXiv 1904.01802), §3. Besides instance congruence, the student matches
the teacher's correlation matrix over the batch, C = [k(f_i, f_j)] ∈ R^{b×b}:
    L_CC = 1/b² · ‖C_T − C_S‖_F²,   L = CE + β·L_CC,
with the Gaussian-RBF kernel k(a, b) = exp(−γ‖a − b‖²) approximated by its P-order Taylor series
(the paper's generalised kernel). For ℓ2-normalised embeddings ‖a − b‖² = 2 − 2aᵀb, so
    k(a, b) = e^{−2γ} · e^{2γ·aᵀb} ≈ Σ_{p=0..P} e^{−2γ} · (2γ)^p / p! · (aᵀb)^p.
Choices (documented, overridable): γ = 0.4 and P = 2 (the paper's CIFAR setting as we read it), the
embeddings are ℓ2-normalised so the expansion is that of the true RBF kernel; the student's pooled
feature passes a trainable linear embedding (``feat_dim`` 128) before normalisation, while the
teacher's pooled feature is only ℓ2-normalised — the b×b matrices need no dimension matching, and a
trainable teacher-side embedding would let both correlation matrices collapse together.
β = 0.02 is RepDistiller's CIFAR-100 weight. (RepDistiller itself implements a simplified
instance-wise product of linear embeddings instead of the kernel correlation; we follow the paper.)
No KD term by default, as RepDistiller's runs (α = 0).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


def taylor_rbf_correlation(e: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """(b, b) correlation matrix of ℓ2-normalised rows ``e`` under the P-order Taylor expansion of
    exp(−γ‖e_i − e_j‖²)."""
    sim = e @ e.t()
    out = torch.zeros_like(sim)
    for p in range(order + 1):
        out = out + (math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p)) * sim.pow(p)
    return out


def cc_loss(e_s: torch.Tensor, e_t: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    b = e_s.shape[0]
    return (taylor_rbf_correlation(e_t, gamma, order) - taylor_rbf_correlation(e_s, gamma, order)).pow(2).sum() / (b * b)


@register_method
class CC(Distiller):
    name = "cc"
    category = "relation"
    scheme = "offline"
    paper = "Peng et al. 2019, Correlation Congruence for Knowledge Distillation (ICCV)"
    equation = "CE + β·(1/b²)·‖C_T − C_S‖_F², C_ij = Σ_{p≤P} e^{−2γ}(2γ)^p/p!·(f_iᵀf_j)^p (Taylor RBF)"
    hparams = {"beta": HParam(0.02, low=0.0, doc="weight of the correlation-congruence term"),
               "gamma": HParam(0.4, low=0.0, low_open=True, doc="RBF kernel parameter γ"),
               "order": HParam(2, low=0, doc="order P of the kernel's Taylor expansion"),
               "feat_dim": HParam(128, low=1, doc="dimension of the student's embedding")}
    student_taps = ("pool",)
    teacher_taps = ("pool",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.embed_s = nn.Linear(self.student_shapes()["pool"][0], hp.feat_dim)

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        e_s = F.normalize(self.embed_s(sf["pool"]).float(), dim=1)
        e_t = F.normalize(tf["pool"].float(), dim=1)
        return {"ce": losses.ce(s_logits, y), "cc": self.hp.beta * cc_loss(e_s, e_t, self.hp.gamma, self.hp.order)}
