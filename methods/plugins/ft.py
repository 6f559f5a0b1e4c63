"""``ft``: factor transfer (paraphraser + translator).

Paper: Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor Transfer",
NeurIPS 2018 (arXiv 1802.04977), §3. A *paraphraser* P — a convolutional autoencoder on the
teacher's last feature map whose code has k·C_T channels (paraphrase rate k = 0.5) — is first trained
unsupervised on the reconstruction loss (Eq. 1) L_rec = ‖x − P(x)‖² and then frozen; its encoder's
output is the teacher factor F_T. A *translator* (a convolutional encoder on the student's last
feature map, k·C_T output channels) gives the student factor F_S, and the student minimises
(Eq. 2) L = CE + β·L_FT with (Eq. 3) L_FT = ‖ F_T/‖F_T‖₂ − F_S/‖F_S‖₂ ‖_p, p = 1.

Default (``variant: repdistiller``): what RepDistiller runs (github.com/HobbitLong/RepDistiller:
``distiller_zoo/FT.py``, ``models/util.py``, ``train_student.py``, ``helper/pretrain.py``), the code
behind the CIFAR-100 numbers the ``cifar100_repdistiller`` grid is compared with. Its factor is not the
paper's vectorised one but the channel mean of the squared factor, flattened and L2-normalised per
sample, q(F) = normalize(vec(1/C Σ_c F_c²)), and
    L_FT = mean over the batch and the h·w positions of |q(F_T) − q(F_S)|   (p = 1;  p = 2: of the square),
with β = 200 (its CIFAR-100 weight, tuned on this form). When the factors' spatial sizes differ the
larger is average-pooled to the smaller.
``variant: authors``: the paper's and its authors' code's (github.com/Jangho-Kim/Factor-Transfer-pytorch,
``utils.FT`` + ``nn.L1Loss``) form, L_FT = mean |F_T/‖F_T‖₂ − F_S/‖F_S‖₂| over the batch and the
vectorised factor (p = 2: the p-norm per sample divided by √D). β is not re-tuned for it (the authors
use 500 on CIFAR-10).

Modules, as RepDistiller: the paraphraser's encoder is three 3×3 convolutions + LeakyReLU(0.1), its
decoder three 3×3 transposed convolutions + LeakyReLU(0.1) (no BN); the translator is three 3×3
convolutions + BN + LeakyReLU(0.1).
Stages, as RepDistiller: ``Stage("paraphraser", paraphraser_epochs = 30)`` trains only the paraphraser
on the mean squared reconstruction error of the teacher's last feature map (the student is not run),
with its own SGD optimizer at a constant learning rate of 0.01 when the student is a CIFAR ResNet or
WRN (RepDistiller's rule in ``helper/pretrain.py``), the run's learning rate otherwise; override with
the run's ``optimizers.paraphraser`` section. The main stage steps the student and the translator on
CE + β·L_FT, the paraphraser frozen.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, OptimGroup, Stage
from kdsuite.methods.hparams import HParam
from kdsuite.methods.components.features import match_resolution
from kdsuite.methods.components.init_stage import init_group
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand

# RepDistiller pre-trains the paraphraser at lr 0.01 when the student is one of these families
# (resnet8 … resnet110, resnet8x4/32x4, wrn_*); the run's learning rate otherwise
PARAPHRASER_LR_SMALL = 0.01


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


def factor_transfer_loss(f_s: torch.Tensor, f_t: torch.Tensor, p: int = 1, variant: str = "repdistiller") -> torch.Tensor:
    f_s, f_t = match_resolution(f_s, f_t)
    if variant == "repdistiller":
        s = F.normalize(f_s.pow(2).mean(1).flatten(1), dim=1)
        t = F.normalize(f_t.pow(2).mean(1).flatten(1), dim=1)
        return losses.l1(s, t) if p == 1 else losses.l2(s, t)
    s, t = F.normalize(f_s.flatten(1), dim=1), F.normalize(f_t.flatten(1), dim=1)
    d = s.shape[1]
    return ((t - s).norm(p=p, dim=1) / d ** (1.0 / p)).mean()


def repdistiller_small_lr_family(student: nn.Module) -> bool:
    from kdsuite.zoo.cifar.resnet import CifarResNet
    from kdsuite.zoo.cifar.wrn import WideResNet

    return isinstance(student, (CifarResNet, WideResNet))


@register_method
class FT(Distiller):
    name = "ft"
    display_name = "FT"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "feature"
    scheme = "offline"
    paper = "Kim et al. 2018, Paraphrasing Complex Network: Network Compression via Factor Transfer (NeurIPS)"
    equation = ("paraphraser: ‖x − P(x)‖²; main: CE + β·mean|q(F_T) − q(F_S)|, q(F) = normalize(vec(mean_c F²)) "
                "(RepDistiller); variant authors: mean|F_T/‖F_T‖ − F_S/‖F_S‖|")
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): main/ft 1.2 (5.68 / 4.73)
    scale_band = {"ft": ScaleBand.around(1.2, "beta")}
    hparams = {"beta": HParam(200.0, low=0.0, doc="weight of the factor-transfer term"),
               "variant": HParam("repdistiller", choices=("repdistiller", "authors"),
                                 doc="factor form: RepDistiller's channel mean of squares, or the paper's/authors' "
                                     "vectorised factor"),
               "rate": HParam(0.5, low=0.0, low_open=True, doc="paraphrase rate k (factor channels / teacher channels)"),
               "p": HParam(1, choices=(1, 2), doc="power (repdistiller) or norm (authors) of the factor difference"),
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
        pre = [Stage("paraphraser", self.hp.paraphraser_epochs, optimizers=["paraphraser"], evaluate=False,
                     step=self.paraphraser_step)] \
            if self.hp.paraphraser_epochs else []
        return pre + [Stage("main", self.ctx.epochs, optimizers=["student"])]

    def optim_groups(self):
        lr = PARAPHRASER_LR_SMALL if repdistiller_small_lr_family(self.student) else None
        return {"student": OptimGroup(list(self.student.parameters()) + list(self.translator.parameters())),
                "paraphraser": init_group(self.paraphraser.parameters(), lr=lr)}

    def paraphraser_step(self, batch, trainer):
        """The paraphraser stage's step: the paraphraser learns to reconstruct the teacher's factor."""
        _, tf = self.teacher_forward(batch[0])
        t = tf[self.key_t].float()
        out = {"rec": losses.mse(self.paraphraser(t), t)}
        trainer.optimize("paraphraser", out)
        return out

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        with torch.no_grad():
            f_t = self.paraphraser.encoder(tf[self.key_t].float())
        f_s = self.translator(sf[self.key_s]).float()
        ft = factor_transfer_loss(f_s, f_t, self.hp.p, self.hp.variant)
        return {"ce": losses.ce(s_logits, y), "ft": self.hp.beta * ft}
