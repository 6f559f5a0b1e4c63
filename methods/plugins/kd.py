"""``kd``: vanilla knowledge distillation with soft targets.

Paper: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015 (arXiv 1503.02531);
survey Gou et al. 2021, Eq. (1)–(3).
Equation: L = α·CE(y, σ(z_s)) + (1 − α)·T²·KL(σ(z_t/T) ‖ σ(z_s/T)), KL summed over classes and
averaged over the batch. Defaults follow RepDistiller's CIFAR-100 recipe: T = 4, α = 0.1 (its -r 0.1,
-b 0.9 as α / 1 − α). ``ce_weight`` / ``kd_weight`` (mdistiller's CE_WEIGHT / KD_WEIGHT) set either weight
on its own, e.g. logit standardisation's 0.1 CE + 9 KD; unset, each is derived from α as above.
With ``standardize=True`` both logit vectors are z-scored first (Sun et al. 2024, logit
standardisation), the option every logit-based method of this suite shares.
"""
from __future__ import annotations

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.scale import ScaleBand
from kdsuite.methods.registry import register_method


@register_method
class KD(Distiller):
    name = "kd"
    display_name = "KD"
    category = "response"
    scheme = "offline"
    paper = "Hinton et al. 2015, Distilling the Knowledge in a Neural Network"
    equation = "α·CE(y, σ(z_s)) + (1−α)·T²·KL(σ(z_t/T) ‖ σ(z_s/T)); ce_weight / kd_weight replace α / 1−α"
    # term / CE at step 0, test_parity_scale (resnet32x4→8x4, 32×32, 2026-12-04):
    # kd 63 (29.95 / 0.473: 0.9·T²·KL over 0.1·CE)
    scale_band = {"kd": ScaleBand.around(63.0, "kd_weight")}
    hparams = {
        "T": HParam(4.0, low=0.0, low_open=True, doc="softmax temperature"),
        "alpha": HParam(0.1, low=0.0, high=1.0, doc="weight of the hard-label cross-entropy"),
        "standardize": HParam(False, doc="z-score logits before the softmax (Sun et al. 2024)"),
        "ce_weight": HParam(None, kind=float, low=0.0, hash_neutral=True,
                            doc="weight of the cross-entropy (mdistiller's CE_WEIGHT); unset: α"),
        "kd_weight": HParam(None, kind=float, low=0.0, hash_neutral=True,
                            doc="weight of the KD term (mdistiller's KD_WEIGHT); unset: 1 − α"),
    }

    def forward_train(self, x, y):
        # teacher first: its activations are freed before the student's are kept for backward
        t_logits, _ = self.teacher_forward(x)
        s_logits = self.student(x)
        s_kd, t_kd = s_logits, t_logits
        if self.hp.standardize:
            s_kd, t_kd = losses.standardize_logits(s_logits), losses.standardize_logits(t_logits)
        ce_w = self.hp.alpha if self.hp.ce_weight is None else self.hp.ce_weight
        kd_w = 1.0 - self.hp.alpha if self.hp.kd_weight is None else self.hp.kd_weight
        out = {"kd": kd_w * losses.kd_loss(s_kd, t_kd, self.hp.T)}
        if ce_w > 0:
            out["ce"] = ce_w * losses.ce(s_logits, y)
        return out
