"""``dkd``: Decoupled Knowledge Distillation.

Paper: Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR 2022 (arXiv 2203.08679).
Equations (1)–(7): with p = σ(z/T), the binary target/non-target probabilities b = [p_t, 1 − p_t] and
the non-target distribution p̂ (softmax over the non-target classes),
    TCKD = KL(b^T ‖ b^S),  NCKD = KL(p̂^T ‖ p̂^S),  KD = TCKD + (1 − p_t^T)·NCKD,
DKD weights the two parts freely: L = CE + w(e)·T²·(α·TCKD + β·NCKD).

The default follows the code behind the published numbers, mdistiller
(github.com/megvii-research/mdistiller, ``mdistiller/distillers/DKD.py`` with the defaults of
``mdistiller/engine/cfg.py``: CE weight 1, α 1, β 8, T 4, warm-up 20). Its warm-up is
w(e) = min(e / warmup, 1) with e the 1-based epoch its trainer passes (``kwargs["epoch"]``, counted
from 1 in ``engine/trainer.py``), constant within an epoch: 1/20 in the first epoch, 1 from epoch 20
on. Here e = ``progress.epoch`` + 1 (the trainer's epoch is 0-based within the stage).

β differs per teacher–student pair in mdistiller's ``configs/cifar100/dkd/*.yaml`` (2 for
resnet56→resnet20 and resnet110→resnet32; 6 for vgg13→vgg8, vgg13→MobileNetV2, wrn_40_2→wrn_16_2 and
wrn_40_2→wrn_40_1; the default 8 elsewhere, including the resnet32x4 pairs, wrn_40_2→ShuffleV1 and
ResNet50→MobileNetV2): grids set ``beta`` per pair. ``standardize`` z-scores logits first
(Sun et al. 2024).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.scale import ScaleBand
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
    display_name = "DKD"
    category = "response"
    scheme = "offline"
    paper = "Zhao et al. 2022, Decoupled Knowledge Distillation (CVPR)"
    equation = "CE + min(e/warmup,1)·T²·(α·KL(b_t‖b_s) + β·KL(p̂_t‖p̂_s)), e the 1-based epoch"
    # term / CE at step 0, test_parity_scale (resnet32x4→8x4, 32×32, 2026-12-04):
    # dkd 2.8 (13.35 / 4.73, warm-up weight 1/20 in epoch 1)
    scale_band = {"dkd": ScaleBand.around(2.8, "beta")}
    hparams = {
        "alpha": HParam(1.0, low=0.0, doc="weight of TCKD"),
        "beta": HParam(8.0, low=0.0, doc="weight of NCKD"),
        "T": HParam(4.0, low=0.0, low_open=True, doc="temperature"),
        "ce_weight": HParam(1.0, low=0.0, doc="weight of the cross-entropy"),
        "warmup": HParam(20.0, low=0.0, doc="epochs of warm-up: weight min(e/warmup, 1), e the 1-based epoch "
                                            "(constant within an epoch, as mdistiller); 0: no warm-up"),
        "standardize": HParam(False, doc="z-score logits before the softmax (Sun et al. 2024)"),
    }
    smoke_hparams = {"warmup": 0.0}  # the warm-up would make the logged term grow by design

    def warmup_weight(self) -> float:
        """mdistiller's min(epoch / warmup, 1) with its 1-based epoch; the same for every step of an epoch."""
        return min((self.progress.epoch + 1) / self.hp.warmup, 1.0) if self.hp.warmup > 0 else 1.0

    def forward_train(self, x, y):
        s, _ = self.student_forward(x)
        t, _ = self.teacher_forward(x)
        s_kd, t_kd = (losses.standardize_logits(s), losses.standardize_logits(t)) if self.hp.standardize else (s, t)
        tckd, nckd = dkd_terms(s_kd, t_kd, y, self.hp.T)
        w = self.warmup_weight()
        return {"ce": self.hp.ce_weight * losses.ce(s, y),
                "dkd": w * self.hp.T ** 2 * (self.hp.alpha * tckd + self.hp.beta * nckd)}
