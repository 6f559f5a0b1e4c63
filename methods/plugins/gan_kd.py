"""``gan_kd``: adversarial distillation with a conditional discriminator on the logits.

Paper: Xu, Hsu & Huang, "Training Shallow and Thin Networks for Acceleration via Knowledge
Distillation with Conditional Adversarial Networks", ICLR-W 2018 (arXiv 1709.00513); the survey's
§5.1 (Fig. 10b). A discriminator D(σ(z), y) — an MLP on the class probabilities concatenated with
the one-hot label (the conditional variant of §3.2 of the paper) — tells teacher outputs (real)
from student outputs (fake); the two are trained alternately:
    D: BCE(D(σ(z_t), y), 1) + BCE(D(σ(z_s), y), 0)           (student output detached)
    S: CE + KD (α·CE + (1−α)·T²·KL, as ``kd``) + λ·BCE(D(σ(z_s), y), 1)   (non-saturating GAN loss)
combining the adversarial term with KD as the paper does (its Eq. 6 with the L1/KD term).
The discriminator has its own optimizer (Adam, lr 1e-4, betas (0.5, 0.999)); it never steps the student.
Reference followed: the paper's conditional discriminator with the KD term (no authors' code);
λ 0.1 is this suite's choice.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, OptimGroup
from kdsuite.methods.hparams import HParam
from kdsuite.methods.scale import ScaleBand
from kdsuite.methods.registry import register_method


@register_method
class GanKD(Distiller):
    name = "gan_kd"
    display_name = "GAN-KD"
    category = "adversarial"
    scheme = "offline"
    paper = "Xu et al. 2018, KD with Conditional Adversarial Networks (ICLR-W)"
    equation = "D: BCE(D(t,y),1)+BCE(D(s,y),0); S: α·CE + (1−α)·T²·KL + λ·BCE(D(s,y),1)"
    # term / CE at step 0, test_parity_scale (resnet32x4→8x4, 32×32, 2026-12-04):
    # kd 63 (29.95 / 0.473), adv 0.14 (0.067 / 0.473)
    scale_band = {"kd": ScaleBand.around(63.0, "alpha"), "adv": ScaleBand.around(0.14, "lam")}
    scale_exempt = ("d_real", "d_fake")  # the discriminator's own losses
    hparams = {"T": HParam(4.0, low=0.0, low_open=True), "alpha": HParam(0.1, low=0.0, high=1.0),
               "lam": HParam(0.1, low=0.0, doc="weight of the adversarial term"), "hidden": HParam(256, low=1),
               "standardize": HParam(False, doc="z-score logits before the softmax (Sun et al. 2024)")}
    distill_terms = ("kd",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        k = ctx.num_classes
        self.discriminator = nn.Sequential(nn.Linear(2 * k, hp.hidden), nn.LeakyReLU(0.2),
                                           nn.Linear(hp.hidden, hp.hidden), nn.LeakyReLU(0.2), nn.Linear(hp.hidden, 1))

    def disc(self, logits, y):
        return self.discriminator(torch.cat([F.softmax(logits, 1), F.one_hot(y, logits.shape[1]).float()], 1)).squeeze(1)

    def soft_loss(self, s, t):
        if self.hp.standardize:
            s, t = losses.standardize_logits(s), losses.standardize_logits(t)
        return losses.kd_loss(s, t, self.hp.T)

    def optim_groups(self):
        return {"student": OptimGroup(list(self.student.parameters())),
                "discriminator": OptimGroup(list(self.discriminator.parameters()),
                                            defaults={"name": "adam", "lr": 1e-4, "betas": (0.5, 0.999),
                                                      "weight_decay": 0.0})}

    def train_step(self, batch, trainer):
        x, y = batch[0], batch[1]
        s = self.student(x)
        t, _ = self.teacher_forward(x)
        real, fake = self.disc(t, y), self.disc(s.detach(), y)
        d = {"d_real": F.binary_cross_entropy_with_logits(real, torch.ones_like(real)),
             "d_fake": F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))}
        trainer.optimize("discriminator", d)
        adv = self.disc(s, y)
        out = {"ce": self.hp.alpha * losses.ce(s, y), "kd": (1 - self.hp.alpha) * self.soft_loss(s, t),
               "adv": self.hp.lam * F.binary_cross_entropy_with_logits(adv, torch.ones_like(adv))}
        trainer.optimize("student", out)
        return {**out, **{k: v.detach() for k, v in d.items()}}
