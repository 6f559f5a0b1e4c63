"""``aver``: distillation from the averaged soft targets of several teachers.

Paper: the multi-teacher baseline of the survey (Gou et al. 2021, §5.3, Fig. 12; Hinton et al. 2015's
ensemble soft targets; used as "AVER" by You et al. 2017 and Fukuda et al. 2017).
Equation: p̄ = (1/N)·Σ_i σ(z_t,i / T); L = α·CE(y, σ(z_s)) + (1 − α)·T²·KL(p̄ ‖ σ(z_s / T)).
Teachers may have different architectures; only their logits are used.
Reference followed: the equation (no authors' code); weights and T are RepDistiller's KD recipe (0.1·CE, 0.9·KD, T 4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.scale import ScaleBand
from kdsuite.methods.registry import register_method


@register_method
class Aver(Distiller):
    name = "aver"
    display_name = "AVER"
    category = "multi_teacher"
    scheme = "offline"
    paper = "Averaged soft targets of N teachers (Hinton et al. 2015; survey §5.3)"
    equation = "α·CE + (1−α)·T²·KL(mean_i σ(z_t,i/T) ‖ σ(z_s/T))"
    # term / CE at step 0, test_parity_scale (resnet32x4→8x4, 32×32, + wrn_40_2, 2026-12-04):
    # kd 36 (16.99 / 0.473: 0.9·T²·KL over 0.1·CE)
    scale_band = {"kd": ScaleBand.around(36.0, "alpha")}
    num_teachers = (2, None)
    hparams = {"T": HParam(4.0, low=0.0, low_open=True), "alpha": HParam(0.1, low=0.0, high=1.0),
               "standardize": HParam(False, doc="z-score logits before the softmax (Sun et al. 2024)")}

    def forward_train(self, x, y):
        s = self.student(x)
        ts = [self.teacher_forward(x, i)[0] for i in range(len(self.teachers))]
        s_kd = losses.standardize_logits(s) if self.hp.standardize else s
        if self.hp.standardize:
            ts = [losses.standardize_logits(t) for t in ts]
        target = torch.stack([F.softmax(t / self.hp.T, dim=1) for t in ts]).mean(0)
        kd = losses.ce(s_kd / self.hp.T, target) + (target * target.clamp_min(1e-12).log()).sum(1).mean()
        out = {"kd": (1 - self.hp.alpha) * self.hp.T ** 2 * kd}
        if self.hp.alpha > 0:
            out["ce"] = self.hp.alpha * losses.ce(s, y)
        return out
