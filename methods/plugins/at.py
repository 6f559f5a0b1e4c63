"""``at``: attention transfer.

Paper: Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017 (arXiv 1612.03928).
Equation (2) with the activation-based map of §3.1, F(A) = Σ_c |A_c|^p (p = 2), flattened and
ℓ2-normalised per sample: L = CE + β/2 · Σ_j ‖Q_S^j/‖Q_S^j‖ − Q_T^j/‖Q_T^j‖‖_2. We follow
RepDistiller's weighting, which squares the distance and averages it over the map's positions
(β = 1000 on CIFAR-100) and uses the channel mean instead of the sum (a constant absorbed by the
normalisation). Applied on every stage; maps of different sizes are average-pooled to the smaller.
"""
from __future__ import annotations

import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.components.features import match_resolution
from kdsuite.methods.hparams import HParam
from kdsuite.methods.scale import ScaleBand
from kdsuite.methods.registry import register_method


def attention_map(f, p: float = 2.0):
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


@register_method
class AT(Distiller):
    name = "at"
    display_name = "AT"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "attention"
    scheme = "offline"
    paper = "Zagoruyko & Komodakis 2017, Paying More Attention to Attention (ICLR)"
    equation = "CE + β·Σ_stages mean((Q_s/‖Q_s‖ − Q_t/‖Q_t‖)²), Q = mean_c |A|^p"
    # term / CE at step 0, test_parity_scale (resnet32x4→8x4, 32×32, 2026-12-04):
    # at 0.51 (2.39 / 4.73 at β 1000; the term scales as 1/(H·W) of the maps)
    scale_band = {"at": ScaleBand.around(0.51, "beta")}
    hparams = {"beta": HParam(1000.0, low=0.0, doc="weight of the attention term"),
               "p": HParam(2.0, low=0.0, low_open=True, doc="power of the attention map")}
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
            a, b = match_resolution(sf[ks], tf[kt])
            total = total + (attention_map(a, self.hp.p) - attention_map(b, self.hp.p)).pow(2).mean()
        return {"ce": losses.ce(s_logits, y), "at": self.hp.beta * total}
