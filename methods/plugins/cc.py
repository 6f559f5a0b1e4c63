"""``cc``: correlation congruence knowledge distillation (CCKD).

Paper: Peng, Jin, Liu, Zhou, Wu, Liu, Li & Zhang, "Correlation Congruence for Knowledge
Distillation", ICCV 2019 (arXiv 1904.01802), §3.

Default (``variant: repdistiller``) follows the code behind the published CIFAR-100 numbers:
RepDistiller's ``distiller_zoo/CC.py`` (class ``Correlation``, restructured there from the authors'
code) as ``train_student.py`` wires it (github.com/HobbitLong/RepDistiller). The pooled pre-logit
features of student and teacher each pass a trainable linear embedding (``LinearEmbed``: no
normalisation) to ``feat_dim`` = 128; with Δ_i = |e_S(s_i) − e_T(t_i)| (element-wise, per sample i of
the batch in loader order),
    L_CC = 1/(b − 1) · Σ_{i=1..b−1} Σ_d Δ_{i,d} · Δ_{i+1,d},    L = CE + β·L_CC,
β = 0.02 (RepDistiller's CIFAR-100 weight, tuned on this term; no KD term, α = 0). Both embeddings
are trained with the student (RepDistiller puts both in its trainable list).

``variant: paper`` is the paper's correlation congruence with its generalised kernel: the student
matches the teacher's correlation matrix over the batch, C = [k(f_i, f_j)] ∈ R^{b×b},
    L_CC = 1/b² · ‖C_T − C_S‖_F²,
with the Gaussian RBF k(a, b) = exp(−γ‖a − b‖²) approximated by its P-order Taylor series; for
ℓ2-normalised embeddings ‖a − b‖² = 2 − 2aᵀb, so k(a, b) ≈ Σ_{p=0..P} e^{−2γ}(2γ)^p/p! · (aᵀb)^p.
γ = 0.4, P = 2; only the student's pooled feature passes a trainable embedding (a trainable teacher-side
one would let both matrices collapse together), the teacher's is only ℓ2-normalised. Beware: with
β = 0.02 this term is ~1e-6 of CE at initialisation — β was tuned for the default variant.
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
from kdsuite.methods.scale import ScaleBand

VARIANTS = ("repdistiller", "paper")


def consecutive_delta_loss(e_s: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    """RepDistiller's correlation term: mean over consecutive sample pairs of Σ_d |Δ_i|·|Δ_{i+1}|
    (0 for a one-sample batch, which has no pair, instead of the mean of nothing)."""
    delta = (e_s - e_t).abs()
    return (delta[:-1] * delta[1:]).sum() / max(len(delta) - 1, 1)


def taylor_rbf_correlation(e: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """(b, b) correlation matrix of ℓ2-normalised rows ``e`` under the P-order Taylor expansion of
    exp(−γ‖e_i − e_j‖²)."""
    sim = e @ e.t()
    out = torch.zeros_like(sim)
    for p in range(order + 1):
        out = out + (math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p)) * sim.pow(p)
    return out


def cc_loss(e_s: torch.Tensor, e_t: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """The paper's variant: ‖C_T − C_S‖_F² / b² with Taylor-RBF correlation matrices."""
    b = e_s.shape[0]
    return (taylor_rbf_correlation(e_t, gamma, order) - taylor_rbf_correlation(e_s, gamma, order)).pow(2).sum() / (b * b)


@register_method
class CC(Distiller):
    name = "cc"
    display_name = "CC"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "relation"
    scheme = "offline"
    paper = "Peng et al. 2019, Correlation Congruence for Knowledge Distillation (ICCV)"
    equation = "CE + β·mean_i Σ_d |e_S(s_i)−e_T(t_i)|_d·|e_S(s_{i+1})−e_T(t_{i+1})|_d (RepDistiller; variant paper: Taylor-RBF ‖C_T−C_S‖²/b²)"
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): cc 0.369 (1.75 / 4.73)
    scale_band = {"cc": ScaleBand.around(0.369, "beta")}
    hparams = {"beta": HParam(0.02, low=0.0, doc="weight of the correlation-congruence term"),
               "variant": HParam("repdistiller", choices=VARIANTS,
                                 doc="repdistiller: two linear embeddings, product of consecutive differences "
                                     "(RepDistiller's CC.py); paper: Taylor-RBF correlation matrices"),
               "gamma": HParam(0.4, low=0.0, low_open=True, doc="RBF kernel parameter γ (variant paper)"),
               "order": HParam(2, low=0, doc="order P of the kernel's Taylor expansion (variant paper)"),
               "feat_dim": HParam(128, low=1, doc="dimension of the embeddings")}
    student_taps = ("pool",)
    teacher_taps = ("pool",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.embed_s = nn.Linear(self.student_shapes()["pool"][0], hp.feat_dim)
        if hp.variant == "repdistiller":
            self.embed_t = nn.Linear(self.teacher_shapes()["pool"][0], hp.feat_dim)

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        if self.hp.variant == "repdistiller":
            term = consecutive_delta_loss(self.embed_s(sf["pool"]).float(), self.embed_t(tf["pool"]).float())
        else:
            e_s = F.normalize(self.embed_s(sf["pool"]).float(), dim=1)
            e_t = F.normalize(tf["pool"].float(), dim=1)
            term = cc_loss(e_s, e_t, self.hp.gamma, self.hp.order)
        return {"ce": losses.ce(s_logits, y), "cc": self.hp.beta * term}
