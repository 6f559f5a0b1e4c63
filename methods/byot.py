"""``byot``: be your own teacher — self-distillation from the deepest exit to shallow ones.

Paper: Zhang, Song, Gao, Chen, Bao & Ma, "Be Your Own Teacher: Improve the Performance of
Convolutional Neural Networks via Self Distillation", ICCV 2019 (arXiv 1905.08094), §3.2. The network
is cut after each stage; every shallow section i gets a bottleneck b_i and a classifier h_i (an
auxiliary exit) and learns from (1) the labels, (2) the deepest classifier's soft outputs and (3) the
deepest section's features (Eq. 1–3 of §3.2):

    L = CE(q_C, y) + Σ_{i<C} [ (1 − α)·CE(q_i, y) + α·T²·KL(q_C^T ‖ q_i^T) + λ·‖F_i − F_C‖₂² ],

with q_C and F_C (the deepest exit's output and pooled feature) held constant in the shallow terms.
Defaults of the authors' code: α = 0.3, λ = 0.03, T = 3. Here b_i is a 1×1 conv + BN + ReLU to the last
stage's width followed by global average pooling (the paper uses ResNet bottleneck blocks; a lighter
exit on CIFAR-sized models), F_i the pooled bottleneck output, and the hint term the batch mean of the
squared L2 distance. Every exit is evaluated and recorded (``exit1/…``); the student itself (the
deepest exit) is the model of the run. Needs a zoo CIFAR model (its traversal stops at any stage).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from methods import losses
from methods.base import Distiller
from methods.hparams import ConfigError, HParam
from methods.registry import register_method
from zoo.cifar.common import CifarNet


class Exit(nn.Module):
    """Bottleneck (1×1 conv + BN + ReLU to ``width`` channels) + global pooling + classifier."""

    def __init__(self, c_in: int, width: int, num_classes: int):
        super().__init__()
        self.bottleneck = nn.Sequential(nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.fc = nn.Linear(width, num_classes)

    def forward(self, f):
        feat = self.bottleneck(f).mean((2, 3))
        return self.fc(feat), feat


class ExitModel(nn.Module):
    """The student cut after stage ``stage`` plus that stage's exit: a standalone classifier to evaluate."""

    def __init__(self, student: CifarNet, head: Exit, stage: int):
        super().__init__()
        self.student, self.head, self.stage = student, head, stage

    def forward(self, x):
        _, post, _, _ = self.student.traverse(x, stop_at=self.stage)
        return self.head(post[self.stage])[0]


@register_method
class BYOT(Distiller):
    name = "byot"
    category = "self"
    scheme = "self"
    paper = "Zhang et al. 2019, Be Your Own Teacher (ICCV)"
    equation = "CE(q_C, y) + Σ_i [(1−α)·CE(q_i, y) + α·T²·KL(q_C^T ‖ q_i^T) + λ·‖F_i − F_C‖²]"
    num_teachers = 0
    hparams = {"alpha": HParam(0.3, low=0.0, high=1.0, doc="weight of the deepest exit's soft targets"),
               "lam": HParam(0.03, low=0.0, doc="weight of the feature hint"),
               "T": HParam(3.0, low=0.0, low_open=True, doc="temperature")}
    student_taps = ("stages", "pool")
    # the deepest exit starts near uniform, so the shallow exits' KD terms first grow as it learns; what
    # must fall is the whole objective (for the 3-stage models of the contract test)
    distill_terms = ("ce", "ce1", "kd1", "hint1", "ce2", "kd2", "hint2")

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if not isinstance(student, CifarNet):
            raise ConfigError(f"method 'byot' cuts the student after each stage: it needs a zoo CIFAR model "
                              f"(cifar_*), not {type(student).__name__}")
        shapes = self.student_shapes()
        stages = [k for k in self.s_taps if k.startswith("feat")]
        width = shapes["pool"][0]
        self.exit_taps = stages[:-1]
        self.exits = nn.ModuleList(Exit(shapes[k][0], width, ctx.num_classes) for k in self.exit_taps)

    def forward_train(self, x, y):
        z, f = self.student_forward(x)
        z_t, f_t = z.detach(), f["pool"].detach()
        T, a = self.hp.T, self.hp.alpha
        out = {"ce": losses.ce(z, y)}
        for i, (k, head) in enumerate(zip(self.exit_taps, self.exits), start=1):
            zi, fi = head(f[k])
            out[f"ce{i}"] = (1 - a) * losses.ce(zi, y)
            out[f"kd{i}"] = a * losses.kd_loss(zi, z_t, T)
            out[f"hint{i}"] = self.hp.lam * ((fi - f_t) ** 2).sum(1).mean()
        return out

    def eval_models(self):
        models = {"student": self.student}
        for i, (k, head) in enumerate(zip(self.exit_taps, self.exits), start=1):
            models[f"exit{i}"] = ExitModel(self.student, head, int(k[len("feat"):]))
        return models
