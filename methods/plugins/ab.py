"""``ab``: knowledge transfer via distillation of activation boundaries.

Paper: Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of Activation Boundaries Formed by
Hidden Neurons", AAAI 2019 (arXiv 1811.03233). The activation-transfer loss counts neurons whose
activation state (ρ(x) = 1[x > 0]) differs between teacher and student; it is replaced by the
piecewise-differentiable alternative loss (Eq. 6) with margin μ:
    L(I) = ‖ ρ(T(I)) ⊙ σ(μ𝟏 − r(S(I))) + (𝟏 − ρ(T(I))) ⊙ σ(μ𝟏 + r(S(I))) ‖₂²,
σ the ReLU, T and S the *pre-activation* responses of a teacher and student layer, r the connector
(1×1 conv + BN, §"connector"; a 3×3 stride-2 conv, or stride-2 transposed conv, + BN when the student
map is twice, or half, the teacher's size). μ = 1 (the paper and RepDistiller).
Applied at the end of every stage (``stages_pre`` taps). As the authors' code (used by RepDistiller)
the per-stage sums are divided by the batch size, weighted 2^(l−n+1) for stage l of n (the last
stage weighs 1) and scaled by 3/1000.
Procedure (the paper's initialisation, RepDistiller's schedule): a stage ``init`` of ``init_epochs``
(30) trains the student's feature layers (all but the classifier) and the connectors on β·L_AB alone;
the main stage then trains the student on CE (+ ``kd_weight``·T²·KL(teacher‖student), off by default
as RepDistiller's runs) without the AB term.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, OptimGroup, Stage
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method


def connector(s_shape, t_shape) -> nn.Module:
    (sc, sh, sw), (tc, th, tw) = s_shape, t_shape
    if (sh, sw) == (th, tw):
        conv = nn.Conv2d(sc, tc, 1, bias=False)
    elif (sh, sw) == (2 * th, 2 * tw):
        conv = nn.Conv2d(sc, tc, 3, stride=2, padding=1, bias=False)
    elif (2 * sh, 2 * sw) == (th, tw):
        conv = nn.ConvTranspose2d(sc, tc, 4, stride=2, padding=1, bias=False)
    else:
        raise ConfigError(f"method 'ab': no connector maps the student's feature {tuple(s_shape)} to the "
                          f"teacher's {tuple(t_shape)} (maps must be the same size, or differ by a factor 2)")
    return nn.Sequential(conv, nn.BatchNorm2d(tc))


def alternative_loss(r_s: torch.Tensor, t: torch.Tensor, margin: float) -> torch.Tensor:
    """Sum over all elements of the margin-based alternative loss (Eq. 6)."""
    on = (t > 0).to(r_s.dtype)
    return (on * torch.relu(margin - r_s).pow(2) + (1 - on) * torch.relu(margin + r_s).pow(2)).sum()


@register_method
class AB(Distiller):
    name = "ab"
    category = "feature"
    scheme = "offline"
    paper = "Heo et al. 2019, Knowledge Transfer via Distillation of Activation Boundaries Formed by Hidden Neurons (AAAI)"
    equation = "init: β·Σ_l w_l‖ρ(T)⊙σ(μ−r(S)) + (1−ρ(T))⊙σ(μ+r(S))‖²; main: CE (+ KD)"
    hparams = {"beta": HParam(1.0, low=0.0, doc="weight of the AB loss in the initialisation stage"),
               "margin": HParam(1.0, low=0.0, doc="margin μ of the alternative loss"),
               "init_epochs": HParam(30, low=0, doc="epochs of the AB initialisation stage"),
               "kd_weight": HParam(0.0, low=0.0, doc="weight of a KD term in the main stage"),
               "T": HParam(4.0, low=0.0, low_open=True, doc="KD temperature (main stage)")}
    student_taps = ("stages_pre",)
    teacher_taps = ("stages_pre",)
    smoke_hparams = {"init_epochs": 1}
    SCALE = 3.0 / 1000.0

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        s, t = self.student_shapes(), self.teacher_shapes()
        if len(self.s_taps) != len(self.t_taps[0]):
            raise ConfigError(f"method 'ab': the student has {len(self.s_taps)} stages "
                              f"{[s[k] for k in self.s_taps]} and the teacher {len(self.t_taps[0])} "
                              f"{[t[k] for k in self.t_taps[0]]}; AB pairs stages one to one")
        self.connectors = nn.ModuleList(connector(s[ks], t[kt]) for ks, kt in zip(self.s_taps, self.t_taps[0]))
        n = len(self.s_taps)
        self.stage_weights = [2.0 ** (i - n + 1) for i in range(n)]

    def stages(self):
        init = [Stage("init", self.hp.init_epochs, optimizers=["init"], evaluate=False)] if self.hp.init_epochs else []
        return init + [Stage("main", self.ctx.epochs, optimizers=["student"])]

    def optim_groups(self):
        fc = {id(p) for p in self.student.get_classifier().parameters()}
        body = [p for p in self.student.parameters() if id(p) not in fc]
        return {"student": OptimGroup(list(self.student.parameters())),
                "init": OptimGroup(body + list(self.connectors.parameters()))}

    def ab_loss(self, s_feats, t_feats) -> torch.Tensor:
        b = s_feats[0].shape[0]
        total = 0.0
        for w, conn, fs, ft in zip(self.stage_weights, self.connectors, s_feats, t_feats):
            total = total + w * alternative_loss(conn(fs).float(), ft.float(), self.hp.margin) / b
        return self.SCALE * total

    def train_step(self, batch, trainer):
        x, y = batch[0], batch[1]
        if self.progress.stage == "init":
            _, sf = self.student_forward(x)
            _, tf = self.teacher_forward(x)
            out = {"ab": self.hp.beta * self.ab_loss([sf[k] for k in self.s_taps], [tf[k] for k in self.t_taps[0]])}
            trainer.optimize("init", out)
            return out
        out = self.forward_train(x, y)
        trainer.optimize("student", out)
        return out

    def forward_train(self, x, y):
        s_logits = self.student(x)
        out = {"ce": losses.ce(s_logits, y)}
        if self.hp.kd_weight > 0:
            t_logits, _ = self.teacher_forward(x)
            out["kd"] = self.hp.kd_weight * losses.kd_loss(s_logits, t_logits, self.hp.T)
        return out
