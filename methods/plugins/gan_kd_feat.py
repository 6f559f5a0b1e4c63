"""``gan_kd_feat``: adversarial distillation on features.

The feature-level counterpart of ``gan_kd`` (survey §5.1, Fig. 10c): a discriminator tells the
teacher's features from the student's, following Chung, Park, Kim & Kwak, "Feature-map-level Online
Adversarial Knowledge Distillation", ICML 2020 (arXiv 2002.01775), §3.2, here in the offline setting
(the teacher frozen) and on the pooled last-stage features. A learnable connector c (linear) maps the
student's pooled feature f_s to the teacher's width; the discriminator D (an MLP) and the student are
trained alternately with the non-saturating GAN losses of their Eq. (2)–(3):

    D: BCE(D(f_t), 1) + BCE(D(c(f_s)), 0)                         (student feature detached)
    S: α·CE + (1 − α)·T²·KL(σ(z_t/T) ‖ σ(z_s/T)) + λ·BCE(D(c(f_s)), 1)

combined with KD as the adversarial KD papers do (Wang et al. 2018, KDGAN; Xu et al. 2018). The
discriminator has its own optimizer (Adam, lr 1e-4, betas (0.5, 0.999)) and never steps the student;
the connector learns with the student.
Reference followed: as ``gan_kd`` (no authors' code); λ 0.1 is this suite's choice.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, OptimGroup
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand


@register_method
class GanKDFeat(Distiller):
    name = "gan_kd_feat"
    display_name = "GAN-KD (features)"
    category = "adversarial"
    scheme = "offline"
    paper = "Chung et al. 2020, Feature-map-level Online Adversarial Knowledge Distillation (ICML); offline, pooled features"
    equation = "D: BCE(D(f_t),1)+BCE(D(c(f_s)),0); S: α·CE + (1−α)·T²·KL + λ·BCE(D(c(f_s)),1)"
    scale_exempt = ("d_real", "d_fake")  # the discriminator's own losses
    hparams = {"T": HParam(4.0, low=0.0, low_open=True), "alpha": HParam(0.1, low=0.0, high=1.0),
               "lam": HParam(0.1, low=0.0, doc="weight of the adversarial term"), "hidden": HParam(256, low=1),
               "standardize": HParam(False, doc="z-score logits before the softmax (Sun et al. 2024)")}
    student_taps = ("pool",)
    teacher_taps = ("pool",)
    distill_terms = ("kd",)
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): kd 63.3 (30.0 / weighted CE 0.473), adv 0.143 (0.0676 / 0.473)
    scale_band = {"kd": ScaleBand.around(63.3, "alpha"), "adv": ScaleBand.around(0.143, "lam")}

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        d_s, d_t = self.student_shapes()["pool"][0], self.teacher_shapes()["pool"][0]
        self.connector = nn.Linear(d_s, d_t)
        self.discriminator = nn.Sequential(nn.Linear(d_t, hp.hidden), nn.LeakyReLU(0.2),
                                           nn.Linear(hp.hidden, hp.hidden), nn.LeakyReLU(0.2), nn.Linear(hp.hidden, 1))

    def soft_loss(self, s, t):
        if self.hp.standardize:
            s, t = losses.standardize_logits(s), losses.standardize_logits(t)
        return losses.kd_loss(s, t, self.hp.T)

    def optim_groups(self):
        return {"student": OptimGroup(list(self.student.parameters()) + list(self.connector.parameters())),
                "discriminator": OptimGroup(list(self.discriminator.parameters()),
                                            defaults={"name": "adam", "lr": 1e-4, "betas": (0.5, 0.999),
                                                      "weight_decay": 0.0})}

    def disc(self, f):
        return self.discriminator(f).squeeze(1)

    def train_step(self, batch, trainer):
        x, y = batch[0], batch[1]
        t, tf = self.teacher_forward(x)
        s, sf = self.student_forward(x)
        fs = self.connector(sf["pool"])
        real, fake = self.disc(tf["pool"]), self.disc(fs.detach())
        d = {"d_real": F.binary_cross_entropy_with_logits(real, torch.ones_like(real)),
             "d_fake": F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))}
        trainer.optimize("discriminator", d)
        adv = self.disc(fs)
        out = {"ce": self.hp.alpha * losses.ce(s, y), "kd": (1 - self.hp.alpha) * self.soft_loss(s, t),
               "adv": self.hp.lam * F.binary_cross_entropy_with_logits(adv, torch.ones_like(adv))}
        trainer.optimize("student", out)
        return {**out, **{k: v.detach() for k, v in d.items()}}
