"""``simkd``: Knowledge Distillation with the Reused Teacher Classifier (SimKD).

Paper: Chen, Mei, Zhang, Wang, Wang & Feng, "Knowledge Distillation with the Reused Teacher Classifier",
CVPR 2022 (arXiv 2203.14001), §3 (equation numbers not re-checked against the PDF here): a projector P maps the student's final feature map onto the
teacher's, L = ‖P(f_s) − f_t‖² (mean over elements), and at test time the student predicts with the
teacher's own classifier on the projected feature, ŷ = W_t·avgpool(P(f_s)) — the teacher's classifier is
part of the deployed model.

The default follows the authors' code (github.com/DefangChen/SimKD): ``models/util.py`` ``SimKD`` and
``helper/loops.py`` as ``scripts/run_distill.sh`` runs it (``--distill simkd -c 0 -d 0 -b 1``, factor 2):
- features: the last stage's output before pooling (``feat_s[-2]`` of RepDistiller's models; tap ``feat-1``);
- spatial alignment: the larger of the two maps is average-pooled to the smaller's size;
- projector (``transfer``), a bottleneck: 1×1 conv C_s→C_t/f, BN, ReLU, 3×3 conv C_t/f→C_t/f, BN, ReLU,
  1×1 conv C_t/f→C_t, BN, ReLU (convs without bias), f = ``factor`` (2);
- loss: ``beta``·MSE(P(f_s), f_t) (``nn.MSELoss``, mean over every element); no cross-entropy and no KD
  term (``-c 0 -d 0``): the student's own classifier is never trained (not in this method's optimizer);
- inference: student body → projector → average pool → the teacher's classifier (frozen).
:meth:`deployed_student` is that model; the record's ``inference_parts`` names the projector and the
borrowed ``teacher0.<classifier>``, and ``student_params`` counts student body + projector + teacher head
(the student's own, unused classifier is not part of it for the zoo's CIFAR family).
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods.base import Distiller, OptimGroup
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method
from kdsuite.zoo import taps as ztaps
from kdsuite.zoo.cifar.common import CifarNet


def simkd_projector(s_channels: int, t_channels: int, factor: int) -> nn.Sequential:
    """SimKD's ``transfer`` bottleneck (models/util.py)."""
    mid = t_channels // factor
    return nn.Sequential(
        nn.Conv2d(s_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Conv2d(mid, t_channels, 1, bias=False), nn.BatchNorm2d(t_channels), nn.ReLU(inplace=True))


def align(feat_s: torch.Tensor, feat_t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """SimKD's spatial alignment: the larger map average-pooled to the smaller's size."""
    if feat_s.shape[2] > feat_t.shape[2]:
        return F.adaptive_avg_pool2d(feat_s, feat_t.shape[2:]), feat_t
    return feat_s, F.adaptive_avg_pool2d(feat_t, feat_s.shape[2:])


class _CifarBody(nn.Module):
    """The zoo CIFAR student up to its last stage (its classifier not included): the same modules."""

    def __init__(self, net: CifarNet):
        super().__init__()
        self.stem, self.stages, self.stage_acts = net.stem, net.stages, net.stage_acts

    def forward(self, x):
        x = self.stem(x)
        for stage, act in zip(self.stages, self.stage_acts):
            x = act(stage(x))
        return x


class _TappedBody(nn.Module):
    """Any other student: its ``tap`` feature (the whole network runs, its classifier included)."""

    def __init__(self, net: nn.Module, tap: str):
        super().__init__()
        self.net, self.tap = net, tap

    def forward(self, x):
        return ztaps.extract(self.net, x, [self.tap])[1][self.tap]


class SimKDStudent(nn.Module):
    """The deployed SimKD model: student body → projector (after pooling to ``size``) → avgpool → teacher head."""

    def __init__(self, body: nn.Module, projector: nn.Module, head: nn.Module, size: Tuple[int, int]):
        super().__init__()
        self.body, self.projector, self.head = body, projector, head
        self.size = tuple(size)

    def forward(self, x):
        f = self.body(x)
        if tuple(f.shape[2:]) != self.size:
            f = F.adaptive_avg_pool2d(f, self.size)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.projector(f), 1), 1))


@register_method
class SimKD(Distiller):
    name = "simkd"
    display_name = "SimKD"
    category = "feature"
    scheme = "offline"
    paper = "Chen et al. 2022, Knowledge Distillation with the Reused Teacher Classifier (CVPR)"
    equation = "β·MSE(P(f_s), f_t); prediction W_t·avgpool(P(f_s)) with the teacher's classifier W_t"
    hparams = {
        "factor": HParam(2, low=1, doc="bottleneck factor f of the projector (C_t/f middle channels)"),
        "beta": HParam(1.0, low=0.0, low_open=True, doc="weight of the feature MSE (-b)"),
    }
    student_taps = ("feat-1",)
    teacher_taps = ("feat-1",)
    distill_terms = ("sim",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.key_s, self.key_t = self.s_taps[0], self.t_taps[0][0]
        s_shape, t_shape = self.student_shapes()[self.key_s], self.teacher_shapes()[self.key_t]
        if len(s_shape) != 3 or len(t_shape) != 3:
            raise ConfigError(f"method 'simkd': needs (C, H, W) feature maps; the student's last stage is {s_shape}, "
                              f"the teacher's {t_shape}")
        if t_shape[0] // hp.factor < 1:
            raise ConfigError(f"method 'simkd': hparams.factor = {hp.factor} leaves no channel of the teacher's "
                              f"{t_shape[0]}; expected at most {t_shape[0]}")
        if not hasattr(self.teacher, "get_classifier"):
            raise ConfigError(f"method 'simkd': the teacher {type(self.teacher).__name__} exposes no classifier "
                              f"(get_classifier) to reuse")
        self.size = tuple(min(a, b) for a, b in zip(s_shape[1:], t_shape[1:]))
        self.projector = simkd_projector(s_shape[0], t_shape[0], hp.factor)

    def optim_groups(self):
        """The student without its classifier (nothing reaches it: the teacher's is used) and the projector."""
        head = {id(p) for p in self.student.get_classifier().parameters()} if hasattr(self.student, "get_classifier") else set()
        params = [p for p in self.student.parameters() if p.requires_grad and id(p) not in head]
        return {"student": OptimGroup(params + list(self.projector.parameters()))}

    def forward_train(self, x, y):
        _, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        source, target = align(sf[self.key_s], tf[self.key_t])
        return {"sim": self.hp.beta * F.mse_loss(self.projector(source), target)}

    def deployed_student(self):
        body = _CifarBody(self.student) if isinstance(self.student, CifarNet) else _TappedBody(self.student, self.key_s)
        return SimKDStudent(body, self.projector, self.teacher.get_classifier(), self.size)
