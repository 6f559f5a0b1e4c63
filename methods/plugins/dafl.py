"""``dafl``: data-free learning of student networks with a generator.

Paper: Chen, Wang, Xu, Yang, Liu, Shi, Xu, Xu & Tian, "DAFL: Data-Free Learning of Student Networks",
ICCV 2019 (arXiv 1904.01186). The generator G(z) is trained through the frozen teacher with
Eq. (3) L_oh = (1/n)·Σ CE(y_T^i, t^i) (pseudo-labels t = argmax of the teacher's output),
Eq. (4) L_a = −(1/n)·Σ ‖f_T^i‖₁ (activations of the teacher's pooled features),
Eq. (5) L_ie = −H((1/n)·Σ y_T^i) (balanced classes), total Eq. (6) L_oh + α·L_a + β·L_ie
(CIFAR: α 0.1, β 5); the student learns KD on the generated images (Eq. 8, KL with T = 1 as the
authors' code). Both update every step.
Reference: the authors' DAFL_train.py (huawei-noah, Data-Efficient-Model-Compression/DAFL). Its
information-entropy term is Σ p̄·log10 p̄ — base-10, i.e. the paper's −H(p̄) in nats divided by ln 10 —
and the default (``entropy_log: log10``) follows it, so β = 5 weighs the term as the authors' runs did;
``entropy_log: ln`` is the paper's Eq. (5) in nats (β then acts 2.3× stronger). One-hot weight 1 and
α = 0.1, β = 5 are the authors' script defaults. The student never sees a real training image: the trainer
gives this method no training loader at all.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.components.generators import Generator
from kdsuite.methods.base import Distiller, OptimGroup
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method
from kdsuite.zoo import taps as ztaps


def generator_losses(t_logits, t_pool, entropy_log: str = "log10"):
    """(L_oh, L_a, L_ie) of Eq. (3)–(5); L_ie = Σ p̄·log p̄ in base 10 (authors' code) or e (paper)."""
    l_oh = F.cross_entropy(t_logits, t_logits.argmax(1))
    l_a = -t_pool.abs().mean()
    p = F.softmax(t_logits, dim=1).mean(0)
    l_ie = (p * p.clamp_min(1e-12).log()).sum()  # = −H(p̄) in nats
    if entropy_log == "log10":
        l_ie = l_ie / math.log(10.0)
    return l_oh, l_a, l_ie


@register_method
class DAFL(Distiller):
    name = "dafl"
    display_name = "DAFL"
    category = "data_free"
    scheme = "data_free"
    paper = "Chen et al. 2019, DAFL: Data-Free Learning of Student Networks (ICCV)"
    equation = "G: CE(t, argmax t) − α‖f_T‖₁ − β·H(mean σ(t)); S: KL(σ(t) ‖ σ(s)) on G(z)"
    needs_train_data = False
    teacher_taps = ("pool",)
    hparams = {"alpha": HParam(0.1, low=0.0), "beta": HParam(5.0, low=0.0), "nz": HParam(100, low=1),
               "batch": HParam(256, low=2, doc="generated images per step"), "T": HParam(1.0, low=0.0, low_open=True),
               "lr_generator": HParam(1e-3, low=0.0, low_open=True),
               "entropy_log": HParam("log10", choices=("log10", "ln"),
                                     doc="log of the entropy term: log10 (authors' code) or ln (paper, nats)")}
    smoke_hparams = {"batch": 64}
    distill_terms = ("kd",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.generator = Generator(hp.nz, ctx.input_shape[0], ctx.input_shape[-1])
        self.synthetic_batch_size = hp.batch

    def optim_groups(self):
        return {"student": OptimGroup(list(self.student.parameters())),
                "generator": OptimGroup(list(self.generator.parameters()),
                                        defaults={"name": "adam", "lr": self.hp.lr_generator, "weight_decay": 0.0})}

    def train_step(self, batch, trainer):
        dev = next(self.generator.parameters()).device
        z = torch.randn(self.hp.batch, self.hp.nz, device=dev)
        images = self.generator(z)
        # gradients flow through the frozen teacher into the generator
        t_logits, tf = ztaps.extract(self.teacher, images, self.t_taps[0])
        l_oh, l_a, l_ie = generator_losses(t_logits, tf["pool"], self.hp.entropy_log)
        g = {"oh": l_oh, "act": self.hp.alpha * l_a, "ie": self.hp.beta * l_ie}
        s_logits = self.student(images.detach())
        kd = losses.kd_loss(s_logits, t_logits.detach(), self.hp.T)
        trainer.optimize("generator", g)
        trainer.optimize("student", {"kd": kd})
        return {**g, "kd": kd}
