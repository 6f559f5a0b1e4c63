"""``dkd``: Decoupled Knowledge Distillation.

Paper: Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR 2022 (arXiv 2203.08679).
Equations (1)–(7): with p = σ(z/T), the binary target/non-target probabilities b = [p_t, 1 − p_t] and
the non-target distribution p̂ (softmax over the non-target classes),
    TCKD = KL(b^T ‖ b^S),  NCKD = KL(p̂^T ‖ p̂^S),  KD = TCKD + (1 − p_t^T)·NCKD,
DKD weights the two parts freely: L = CE + w(e)·T²·(α·TCKD + β·NCKD), with a linear warm-up
w(e) = min(e / warmup, 1) of the distillation term over the first epochs (mdistiller's recipe:
α 1, β 8, T 4, warm-up 20 epochs). ``standardize`` z-scores logits first (Sun et al. 2024).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


def dkd_terms(s_logits, t_logits, target, T):
    """(TCKD, NCKD), each summed over classes and averaged over the batch, without the T² factor."""
    gt = F.one_hot(target, s_logits.shape[1]).bool()
    p_s, p_t = F.softmax(s_logits / T, dim=1), F.softmax(t_logits / T, dim=1)
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], dim=1).clamp_min(1e-12)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], dim=1)
    tckd = (b_t * (b_t.clamp_min(1e-12).log() - b_s.log())).sum(1).mean()
    # masking the target logit with a large negative value gives the softmax over non-target classes
    log_q_s = F.log_softmax(s_logits / T - 1000.0 * gt, dim=1)
    q_t = F.softmax(t_logits / T - 1000.0 * gt, dim=1)
    nckd = (q_t * (q_t.clamp_min(1e-12).log() - log_q_s)).sum(1).mean()
    return tckd, nckd


@register_method
class DKD(Distiller):
    name = "dkd"
    category = "response"
    scheme = "offline"
    paper = "Zhao et al. 2022, Decoupled Knowledge Distillation (CVPR)"
    equation = "CE + min(e/warmup,1)·T²·(α·KL(b_t‖b_s) + β·KL(p̂_t‖p̂_s))"
    hparams = {
        "alpha": HParam(1.0, low=0.0, doc="weight of TCKD"),
        "beta": HParam(8.0, low=0.0, doc="weight of NCKD"),
        "T": HParam(4.0, low=0.0, low_open=True, doc="temperature"),
        "ce_weight": HParam(1.0, low=0.0, doc="weight of the cross-entropy"),
        "warmup": HParam(20.0, low=0.0, doc="epochs of linear warm-up of the distillation term"),
        "standardize": HParam(False, doc="z-score logits before the softmax (Sun et al. 2024)"),
    }
    smoke_hparams = {"warmup": 0.0}  # the warm-up would make the logged term grow by design

    def forward_train(self, x, y):
        s = self.student(x)
        t, _ = self.teacher_forward(x)
        s_kd, t_kd = (losses.standardize_logits(s), losses.standardize_logits(t)) if self.hp.standardize else (s, t)
        tckd, nckd = dkd_terms(s_kd, t_kd, y, self.hp.T)
        w = min(self.progress.epoch_float / self.hp.warmup, 1.0) if self.hp.warmup > 0 else 1.0
        return {"ce": self.hp.ce_weight * losses.ce(s, y),
                "dkd": w * self.hp.T ** 2 * (self.hp.alpha * tckd + self.hp.beta * nckd)}
