"""``ab``: knowledge transfer via distillation of activation boundaries.

Paper: Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of Activation Boundaries Formed by
Hidden Neurons", AAAI 2019 (arXiv 1811.03233). The activation-transfer loss counts neurons whose
activation state (ρ(x) = 1[x > 0]) differs between teacher and student; it is replaced by the
piecewise-differentiable alternative loss (Eq. 6) with margin μ:
    L(I) = ‖ ρ(T(I)) ⊙ σ(μ𝟏 − r(S(I))) + (𝟏 − ρ(T(I))) ⊙ σ(μ𝟏 + r(S(I))) ‖₂²,
σ the ReLU, T and S the *pre-activation* responses of a teacher and student layer, r the connector.
μ = 1 (the paper and RepDistiller).

Default (``variant: repdistiller``): what RepDistiller runs (github.com/HobbitLong/RepDistiller:
``distiller_zoo/AB.py``, ``models/util.py::Connector``, ``train_student.py``, ``helper/pretrain.py``,
``helper/loops.py``), the code behind the CIFAR-100 numbers the ``cifar100_repdistiller`` grid is
compared with:
- applied at the end of every stage (``stages_pre`` taps, RepDistiller's ``feat[1:-1]`` with
  ``preact=True``); the per-stage sums are divided by the batch size, weighted 2^(l−n+1) for stage l of n
  (the last stage weighs 1), scaled by 3/1000 and summed (as the authors' CIFAR code);
- connector r: none (the identity) when the student's map has the teacher's channels and height;
  otherwise RepDistiller's ``ConvReg`` without its ReLU — a 3×3 stride-2 conv when the student's map is
  twice the teacher's size, a 4×4 stride-2 transposed conv when half, else a conv of kernel
  (1 + h_S − h_T) × (1 + w_S − w_T) (1×1 for equal sizes), each with a bias, then BN;
- stage ``init`` (``init_epochs`` = 30): the student's feature modules (stem + stages, not the
  classifier) and the connectors are trained on β·L_AB alone (β = 1: RepDistiller's init loss carries no
  weight), with their own SGD optimizer at the run's learning rate, held constant, the rest of the
  student in eval mode (``kdsuite.methods.components.init_stage``);
- stage ``main``: CE alone (RepDistiller's ``loss_kd`` is 0 for AB; ``-b 1`` never enters), the
  connectors frozen; ``kd_weight`` > 0 adds kd_weight·T²·KL(teacher‖student) (off, as RepDistiller's runs).
``variant: authors``: the authors' connector (github.com/bhheo/AB_distillation,
``models/distillation_module.py``): none when the channel counts agree, otherwise a bias-free 1×1 conv
+ BN with He-normal weights; maps must then be of equal size.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, OptimGroup, Stage
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.components.init_stage import feature_params, head_to_eval, init_group
from kdsuite.methods.registry import register_method


def _no_connector(s_shape, t_shape, variant: str) -> bool:
    (sc, sh, _), (tc, th, _) = s_shape, t_shape
    return sc == tc and (variant == "authors" or sh == th)


def connector(s_shape, t_shape, variant: str = "repdistiller") -> nn.Module:
    (sc, sh, sw), (tc, th, tw) = s_shape, t_shape
    if _no_connector(s_shape, t_shape, variant):
        if (sh, sw) != (th, tw):
            raise ConfigError(f"method 'ab' (variant authors): the student's feature {tuple(s_shape)} and the "
                              f"teacher's {tuple(t_shape)} differ in size; this variant's connector keeps the size")
        return nn.Identity()
    if variant == "authors":
        if (sh, sw) != (th, tw):
            raise ConfigError(f"method 'ab' (variant authors): no 1×1 connector maps the student's feature "
                              f"{tuple(s_shape)} to the teacher's {tuple(t_shape)} (sizes must agree)")
        conv = nn.Conv2d(sc, tc, 1, bias=False)
        nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / tc))
        return nn.Sequential(conv, nn.BatchNorm2d(tc))
    if sh == 2 * th:
        conv = nn.Conv2d(sc, tc, 3, stride=2, padding=1)
    elif 2 * sh == th:
        conv = nn.ConvTranspose2d(sc, tc, 4, stride=2, padding=1)
    elif sh >= th and sw >= tw:
        conv = nn.Conv2d(sc, tc, (1 + sh - th, 1 + sw - tw))
    else:
        raise ConfigError(f"method 'ab': no connector maps the student's feature {tuple(s_shape)} to the "
                          f"teacher's {tuple(t_shape)} (the student's map must be at least the teacher's size, "
                          f"or half of it)")
    return nn.Sequential(conv, nn.BatchNorm2d(tc))


def alternative_loss(r_s: torch.Tensor, t: torch.Tensor, margin: float) -> torch.Tensor:
    """Sum over all elements of the margin-based alternative loss (Eq. 6)."""
    on = (t > 0).to(r_s.dtype)
    return (on * torch.relu(margin - r_s).pow(2) + (1 - on) * torch.relu(margin + r_s).pow(2)).sum()


@register_method
class AB(Distiller):
    name = "ab"
    display_name = "AB"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "feature"
    scheme = "offline"
    paper = "Heo et al. 2019, Knowledge Transfer via Distillation of Activation Boundaries Formed by Hidden Neurons (AAAI)"
    equation = "init: β·(3/1000)·Σ_l 2^(l−n+1)/B·‖ρ(T)⊙σ(μ−r(S)) + (1−ρ(T))⊙σ(μ+r(S))‖²; main: CE (+ KD)"
    hparams = {"beta": HParam(1.0, low=0.0, doc="weight of the AB loss in the initialisation stage"),
               "margin": HParam(1.0, low=0.0, doc="margin μ of the alternative loss"),
               "variant": HParam("repdistiller", choices=("repdistiller", "authors"),
                                 doc="connector: RepDistiller's (none for equal shapes, else ConvReg) or the "
                                     "authors' (none for equal channels, else 1×1 conv + BN)"),
               "init_epochs": HParam(30, low=0, doc="epochs of the AB initialisation stage"),
               "kd_weight": HParam(0.0, low=0.0, doc="weight of a KD term in the main stage"),
               "T": HParam(4.0, low=0.0, low_open=True, doc="KD temperature (main stage)")}
    student_taps = ("stages_pre",)
    teacher_taps = ("stages_pre",)
    same_family_only = ("AB transfers the teacher's activation boundaries, the signs of its pre-activation (before-ReLU) "
                        "stage features, which only the zoo's CIFAR CNNs expose and which have no counterpart in "
                        "another family's blocks (a ViT or MLP block ends in a residual sum, not an activation)")
    smoke_hparams = {"init_epochs": 1}
    SCALE = 3.0 / 1000.0

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        s, t = self.student_shapes(), self.teacher_shapes()
        if len(self.s_taps) != len(self.t_taps[0]):
            raise ConfigError(f"method 'ab': the student has {len(self.s_taps)} stages "
                              f"{[s[k] for k in self.s_taps]} and the teacher {len(self.t_taps[0])} "
                              f"{[t[k] for k in self.t_taps[0]]}; AB pairs stages one to one")
        self.connectors = nn.ModuleList(connector(s[ks], t[kt], hp.variant)
                                        for ks, kt in zip(self.s_taps, self.t_taps[0]))
        n = len(self.s_taps)
        self.stage_weights = [2.0 ** (i - n + 1) for i in range(n)]

    def stages(self):
        init = [Stage("init", self.hp.init_epochs, optimizers=["init"], evaluate=False,
                       step=self.init_step)] if self.hp.init_epochs else []
        return init + [Stage("main", self.ctx.epochs, optimizers=["student"])]

    def optim_groups(self):
        return {"student": OptimGroup(list(self.student.parameters())),
                "init": init_group(feature_params(self.student) + list(self.connectors.parameters()))}

    def ab_loss(self, s_feats, t_feats) -> torch.Tensor:
        b = s_feats[0].shape[0]
        total = 0.0
        for w, conn, fs, ft in zip(self.stage_weights, self.connectors, s_feats, t_feats):
            total = total + w * alternative_loss(conn(fs).float(), ft.float(), self.hp.margin) / b
        return self.SCALE * total

    def init_step(self, batch, trainer):
        """The init stage's step: the AB loss alone trains the student's layers up to the taps."""
        x = batch[0]
        head_to_eval(self.student)
        _, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        out = {"ab": self.hp.beta * self.ab_loss([sf[k] for k in self.s_taps], [tf[k] for k in self.t_taps[0]])}
        trainer.optimize("init", out)
        return out

    def forward_train(self, x, y):
        s_logits = self.student(x)
        out = {"ce": losses.ce(s_logits, y)}
        if self.hp.kd_weight > 0:
            t_logits, _ = self.teacher_forward(x)
            out["kd"] = self.hp.kd_weight * losses.kd_loss(s_logits, t_logits, self.hp.T)
        return out
