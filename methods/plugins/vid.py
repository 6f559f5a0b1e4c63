"""``vid``: variational information distillation.

Paper: Ahn, Hu, Damianou, Lawrence & Dai, "Variational Information Distillation for Knowledge
Transfer", CVPR 2019 (arXiv 1904.05835). The mutual information between a teacher feature t and a
student feature s is bounded from below with a Gaussian variational distribution q(t | s) whose mean
is a regressor μ(s) and whose variance is one learned value per teacher channel (Eq. 2–4):

    −log q(t | s) = Σ_{c,h,w} [ ½·log σ_c² + (t_{c,h,w} − μ_{c,h,w}(s))² / (2σ_c²) ] + const,
    σ_c² = log(1 + exp(α_c)) + ε.

The student minimises it (Eq. 6, with the CE of the task): L = CE + β·Σ_layers mean_{b,c,h,w}(NLL).
As in RepDistiller (β = 1 on CIFAR-100), μ is conv1×1 → ReLU → conv1×1 → ReLU → conv1×1 with as many
hidden channels as the teacher feature, σ² starts at ``init_var`` = 5 (α_c = log(exp(5 − ε) − 1)),
the NLL is averaged over every element (the constant dropped), and the layer pairs are the stage
outputs feat1 … featN of both networks. Maps of different resolutions are average-pooled to the
smaller one; a student with another number of stages than the teacher raises ConfigError.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.components.features import match_resolution
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand

EPS = 1e-5


class VariationalHead(nn.Module):
    """μ(s) (three 1×1 convolutions) and the per-channel variance σ² = softplus(α) + ε."""

    def __init__(self, c_in: int, c_out: int, init_var: float):
        super().__init__()
        self.mean = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.ReLU(),
                                  nn.Conv2d(c_out, c_out, 1, bias=False), nn.ReLU(),
                                  nn.Conv2d(c_out, c_out, 1, bias=False))
        self.alpha = nn.Parameter(torch.full((c_out,), math.log(math.expm1(init_var - EPS))))

    def variance(self) -> torch.Tensor:
        return F.softplus(self.alpha) + EPS

    def nll(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean over batch, channels and positions of ½·log σ² + (t − μ)²/(2σ²)."""
        mu = self.mean(s)
        var = self.variance().view(1, -1, 1, 1)
        return (0.5 * (t - mu) ** 2 / var + 0.5 * torch.log(var)).mean()


@register_method
class VID(Distiller):
    name = "vid"
    display_name = "VID"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "feature"
    scheme = "offline"
    paper = "Ahn et al. 2019, Variational Information Distillation for Knowledge Transfer (CVPR)"
    equation = "CE + β·Σ_layers mean(½·log σ_c² + (t − μ(s))²/(2σ_c²)), σ_c² = softplus(α_c) + ε"
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): vid 0.775 (3.67 / 4.73)
    scale_band = {"vid": ScaleBand.around(0.775, "beta")}
    hparams = {"beta": HParam(1.0, low=0.0, doc="weight of the variational term"),
               "init_var": HParam(5.0, low=0.0, low_open=True, doc="initial variance σ² of every channel")}
    student_taps = ("stages",)
    teacher_taps = ("stages",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.require_paired_stages()
        s_shapes, t_shapes = self.student_shapes(), self.teacher_shapes()
        self.heads = nn.ModuleList(VariationalHead(s_shapes[ks][0], t_shapes[kt][0], hp.init_var)
                                   for ks, kt in zip(self.s_taps, self.t_taps[0]))

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        total = 0.0
        for head, ks, kt in zip(self.heads, self.s_taps, self.t_taps[0]):
            s, t = match_resolution(sf[ks], tf[kt])
            total = total + head.nll(s, t)
        return {"ce": losses.ce(s_logits, y), "vid": self.hp.beta * total}
