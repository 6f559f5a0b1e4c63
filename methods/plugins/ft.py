"""``ft``: factor transfer (paraphraser + translator).

Paper: Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor Transfer",
NeurIPS 2018 (arXiv 1802.04977), §3. A *paraphraser* P — a convolutional autoencoder on the
teacher's last feature map whose code has k·C_T channels (paraphrase rate k = 0.5) — is first trained
unsupervised on the reconstruction loss (Eq. 1) L_rec = ‖x − P(x)‖² (here the mean squared error, as
RepDistiller) and then frozen; its encoder's output is the teacher factor F_T. A *translator* (a
convolutional encoder on the student's last feature map, k·C_T output channels) gives the student
factor F_S, and the student minimises (Eq. 2) L = CE + β·L_FT with (Eq. 3)
    L_FT = ‖ F_T/‖F_T‖₂ − F_S/‖F_S‖₂ ‖_p,  p = 1,
on the vectorised factors. Reduction: the p-norm of each sample's difference divided by D^{1/p}
(D = the factor's size, i.e. the mean absolute difference for p = 1, as RepDistiller's criterion),
averaged over the batch; β = 200 (RepDistiller's CIFAR-100 weight). Both factors keep the spatial size
of their maps; when these differ, the larger factor is average-pooled to the smaller size.
Layers follow the authors' design as RepDistiller reproduces it: three 3×3 convolutions with
LeakyReLU(0.1) in the paraphraser's encoder (mirrored by 3×3 transposed convolutions in its decoder,
no BN), and three 3×3 convolutions + BN + LeakyReLU(0.1) in the translator.
Stages: ``Stage("paraphraser", paraphraser_epochs)`` steps only the paraphraser (the student is not
run); the main stage steps the student and the translator, the paraphraser staying frozen.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, OptimGroup, Stage
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


def _convs(channels, transpose: bool = False, bn: bool = False) -> nn.Sequential:
    layers = []
    for cin, cout in zip(channels[:-1], channels[1:]):
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        layers.append(conv(cin, cout, 3, 1, 1))
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    def __init__(self, channels: int, rate: float):
        super().__init__()
        factor = max(1, int(channels * rate))
        self.encoder = _convs([channels, channels, factor, factor])
        self.decoder = _convs([factor, factor, channels, channels], transpose=True)

    def forward(self, x):
        return self.decoder(self.encoder(x))


def factor_transfer_loss(f_s: torch.Tensor, f_t: torch.Tensor, p: int = 1) -> torch.Tensor:
    if f_s.shape[-2:] != f_t.shape[-2:]:
        size = tuple(min(a, b) for a, b in zip(f_s.shape[-2:], f_t.shape[-2:]))
        f_s, f_t = F.adaptive_avg_pool2d(f_s, size), F.adaptive_avg_pool2d(f_t, size)
    s, t = F.normalize(f_s.flatten(1), dim=1), F.normalize(f_t.flatten(1), dim=1)
    d = s.shape[1]
    return ((t - s).norm(p=p, dim=1) / d ** (1.0 / p)).mean()


@register_method
class FT(Distiller):
    name = "ft"
    category = "feature"
    scheme = "offline"
    paper = "Kim et al. 2018, Paraphrasing Complex Network: Network Compression via Factor Transfer (NeurIPS)"
    equation = "paraphraser: ‖x − P(x)‖²; main: CE + β·‖F_T/‖F_T‖₂ − F_S/‖F_S‖₂‖_p (p = 1, per element)"
    hparams = {"beta": HParam(200.0, low=0.0, doc="weight of the factor-transfer term"),
               "rate": HParam(0.5, low=0.0, low_open=True, doc="paraphrase rate k (factor channels / teacher channels)"),
               "p": HParam(1, choices=(1, 2), doc="norm of the factor difference"),
               "paraphraser_epochs": HParam(30, low=0, doc="epochs of the paraphraser's reconstruction stage")}
    student_taps = ("feat-1",)
    teacher_taps = ("feat-1",)
    smoke_hparams = {"paraphraser_epochs": 1}

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.key_s, self.key_t = self.s_taps[0], self.t_taps[0][0]
        sc, tc = self.student_shapes()[self.key_s][0], self.teacher_shapes()[self.key_t][0]
        self.paraphraser = Paraphraser(tc, hp.rate)
        factor = max(1, int(tc * hp.rate))
        self.translator = _convs([sc, sc, factor, factor], bn=True)

    def stages(self):
        pre = [Stage("paraphraser", self.hp.paraphraser_epochs, optimizers=["paraphraser"], evaluate=False)] \
            if self.hp.paraphraser_epochs else []
        return pre + [Stage("main", self.ctx.epochs, optimizers=["student"])]

    def optim_groups(self):
        return {"student": OptimGroup(list(self.student.parameters()) + list(self.translator.parameters())),
                "paraphraser": OptimGroup(list(self.paraphraser.parameters()))}

    def train_step(self, batch, trainer):
        x, y = batch[0], batch[1]
        if self.progress.stage == "paraphraser":
            _, tf = self.teacher_forward(x)
            t = tf[self.key_t].float()
            out = {"rec": losses.mse(self.paraphraser(t), t)}
            trainer.optimize("paraphraser", out)
            return out
        out = self.forward_train(x, y)
        trainer.optimize("student", out)
        return out

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        with torch.no_grad():
            f_t = self.paraphraser.encoder(tf[self.key_t].float())
        f_s = self.translator(sf[self.key_s]).float()
        return {"ce": losses.ce(s_logits, y), "ft": self.hp.beta * factor_transfer_loss(f_s, f_t, self.hp.p)}
