"""``nst``: neuron selectivity transfer.

Paper: Huang & Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer", 2017
(arXiv 1707.01219). Each channel's spatial map is one sample of the layer's "neuron selectivity"
distribution; the student matches the teacher's distribution under the squared maximum mean
discrepancy (Eq. 4–5), with each map ℓ2-normalised over positions (f = F_c / ‖F_c‖₂):

    MMD² = 1/C_T² Σ_{i,i'} k(t_i, t_i') + 1/C_S² Σ_{j,j'} k(s_j, s_j') − 2/(C_T·C_S) Σ_{i,j} k(t_i, s_j),

with the polynomial kernel k(x, y) = (xᵀy + c)^d, d = 2, c = 0 (the paper's best variant). Channel
counts may differ (the maps are the samples); maps of different resolutions are average-pooled to the
smaller. As RepDistiller does (β = 50 on CIFAR-100), the term is applied to every stage output
(feat1 … featN) and averaged over the batch: L = CE + β·Σ_stages mean_b MMD²_b.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.components.features import match_resolution
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand


def poly_mmd2(s: torch.Tensor, t: torch.Tensor, degree: int = 2, c: float = 0.0) -> torch.Tensor:
    """Batch mean of the squared MMD between the ℓ2-normalised channel maps of ``s`` (B, Cs, H, W) and
    ``t`` (B, Ct, H, W) under k(x, y) = (xᵀy + c)^degree."""
    fs = F.normalize(s.flatten(2), dim=2)
    ft = F.normalize(t.flatten(2), dim=2)
    k_tt = (ft @ ft.transpose(1, 2) + c).pow(degree).mean((1, 2))
    k_ss = (fs @ fs.transpose(1, 2) + c).pow(degree).mean((1, 2))
    k_ts = (ft @ fs.transpose(1, 2) + c).pow(degree).mean((1, 2))
    return (k_tt + k_ss - 2 * k_ts).mean()


@register_method
class NST(Distiller):
    name = "nst"
    display_name = "NST"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "feature"
    scheme = "offline"
    paper = "Huang & Wang 2017, Like What You Like: Knowledge Distill via Neuron Selectivity Transfer (arXiv)"
    equation = "CE + β·Σ_stages MMD²(channel maps of S, of T), k(x, y) = (xᵀy + c)^d, d = 2, c = 0"
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): nst 1.72 (8.12 / 4.73)
    scale_band = {"nst": ScaleBand.around(1.72, "beta")}
    hparams = {"beta": HParam(50.0, low=0.0, doc="weight of the MMD term"),
               "degree": HParam(2, low=1, doc="degree d of the polynomial kernel"),
               "c": HParam(0.0, low=0.0, doc="constant c of the polynomial kernel")}
    student_taps = ("stages",)
    teacher_taps = ("stages",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.require_paired_stages()

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        total = 0.0
        for ks, kt in zip(self.s_taps, self.t_taps[0]):
            s, t = match_resolution(sf[ks], tf[kt])
            total = total + poly_mmd2(s.float(), t.float(), self.hp.degree, self.hp.c)
        return {"ce": losses.ce(s_logits, y), "nst": self.hp.beta * total}
