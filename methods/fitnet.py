"""``fitnet``: FitNets hints.

Paper: Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep Nets", ICLR 2015
(arXiv 1412.6550). Equation (3): L_HT = ½‖u_h(x; W_guided) − r(v_g(x; W_guided); W_r)‖², a regressor r
mapping the student's guided layer to the teacher's hint layer (here the middle stage, RepDistiller's
hint layer 2). Stage 1 of the paper (``hint_epochs`` > 0) trains only the student's layers up to the
guided layer plus the regressor on L_HT. The main stage is RepDistiller's one-stage variant:
L = CE + β·MSE(r(v_g), u_h), β = 100 (the paper's own stage 2 is plain KD; run ``kd`` from the stage-1
weights for that). The regressor is RepDistiller's ConvReg: a 3×3 stride-2 conv when the student map
is twice the teacher's size, a stride-2 transposed conv when half, else a valid conv; then BN + ReLU.
"""
from __future__ import annotations

import torch.nn as nn

from methods import losses
from methods.base import Distiller, OptimGroup, Stage
from methods.hparams import ConfigError, HParam
from methods.registry import register_method


def conv_regressor(s_shape, t_shape) -> nn.Module:
    (sc, sh, sw), (tc, th, tw) = s_shape, t_shape
    if sh == 2 * th:
        conv = nn.Conv2d(sc, tc, 3, stride=2, padding=1)
    elif 2 * sh == th:
        conv = nn.ConvTranspose2d(sc, tc, 4, stride=2, padding=1)
    elif sh >= th and sw - tw == sh - th:
        conv = nn.Conv2d(sc, tc, (1 + sh - th, 1 + sw - tw))
    else:
        raise ConfigError(f"method 'fitnet': no regressor maps the student's guided feature {tuple(s_shape)} "
                          f"to the teacher's hint {tuple(t_shape)} (student maps must be as large as the "
                          f"teacher's, or half as large)")
    return nn.Sequential(conv, nn.BatchNorm2d(tc), nn.ReLU(inplace=True))


@register_method
class FitNet(Distiller):
    name = "fitnet"
    category = "feature"
    scheme = "offline"
    paper = "Romero et al. 2015, FitNets: Hints for Thin Deep Nets (ICLR)"
    equation = "stage 1: ½‖u_h − r(v_g)‖²; main: CE + β·MSE(r(v_g), u_h)"
    hparams = {"beta": HParam(100.0, low=0.0, doc="weight of the hint term"),
               "hint_layer": HParam(2, low=1, doc="stage index of the guided/hint layers"),
               "hint_epochs": HParam(0, low=0, doc="epochs of the paper's stage 1 (0: one-stage variant)")}
    smoke_hparams = {"hint_epochs": 1}

    def __init__(self, student, teachers, hp, ctx):
        self.student_taps = (f"feat{hp.hint_layer}",)
        self.teacher_taps = (f"feat{hp.hint_layer}",)
        super().__init__(student, teachers, hp, ctx)
        self.key_s, self.key_t = self.s_taps[0], self.t_taps[0][0]
        self.regressor = conv_regressor(self.student_shapes()[self.key_s], self.teacher_shapes()[self.key_t])

    def stages(self):
        hint = [Stage("hint", self.hp.hint_epochs, optimizers=["hint"], evaluate=False)] if self.hp.hint_epochs else []
        return hint + [Stage("main", self.ctx.epochs, optimizers=["student"])]

    def optim_groups(self):
        groups = super().optim_groups()
        k = self.hp.hint_layer
        lower = list(self.student.stem.parameters()) + [p for st in self.student.stages[:k] for p in st.parameters()]
        groups["hint"] = OptimGroup(lower + list(self.regressor.parameters()))
        return groups

    def train_step(self, batch, trainer):
        x, y = batch[0], batch[1]
        if self.progress.stage == "hint":
            _, post, _, _ = self.student.traverse(x, stop_at=self.hp.hint_layer)
            _, tf = self.teacher_forward(x)
            out = {"hint": 0.5 * (self.regressor(post[self.hp.hint_layer]) - tf[self.key_t]).pow(2).sum() / x.shape[0]}
            trainer.optimize("hint", out)
            return out
        out = self.forward_train(x, y)
        trainer.optimize("student", out)
        return out

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        return {"ce": losses.ce(s_logits, y), "hint": self.hp.beta * losses.mse(self.regressor(sf[self.key_s]), tf[self.key_t])}
