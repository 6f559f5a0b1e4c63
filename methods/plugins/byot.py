"""``byot``: Be Your Own Teacher — self-distillation from the deepest exit into shallow exits.

Paper: Linfeng Zhang, Jiebo Song, Anni Gao, Jingwei Chen, Chenglong Bao & Kaisheng Ma, "Be Your Own
Teacher: Improve the Performance of Convolutional Neural Networks via Self Distillation", ICCV 2019
(arXiv 1905.08094), §3.2. The network is cut after each stage; the output of every shallow stage i
(i = 1 .. C−1) goes through a bottleneck b_i and a classifier (an auxiliary exit) giving logits z_i and
the pooled bottleneck features F_i. The deepest section — the student's own classifier, logits z_C and
features F_C — teaches the exits with three losses (§3.2, the three sources of supervision):

    L = CE(z_C, y) + Σ_{i<C} [ (1 − α)·CE(z_i, y)                       (labels)
                               + α·T²·KL(σ(z_C/T) ‖ σ(z_i/T))            (deepest exit's soft targets)
                               + λ·‖F_i − F_C‖²₂ ]                       (feature hint)

with z_C and F_C held constant in the shallow terms (as in the authors' code), so the deepest exit
learns from the labels only and the exits' terms train the exits and the stages below them.
Defaults: α = 0.3, λ = 0.03, T = 3 — the values of the authors' released CIFAR code (the paper gives
no numbers).

Layout here:
- exit i's bottleneck brings stage i's map to the last stage's channels and resolution with one
  depthwise-separable block per factor-2 downsampling (3×3 depthwise, stride 2 → 1×1 → BN → ReLU →
  3×3 depthwise → 1×1 → BN → ReLU, as the authors' ``SepConv``; a single stride-1 block when the
  resolution already matches), channels growing geometrically from stage i's to the last stage's;
  then global average pooling (F_i) and a linear classifier. The authors' ResNet code also puts an
  attention branch on the exits; it is left out.
- F_C is the global average of the last stage's output. For the zoo's ResNets and VGGs that is
  exactly the student's classifier input; for models whose final block changes it (pre-activation
  WRNs, MobileNetV2, ShuffleNetV2) it is the last stage's output before that block.
- the hint is the squared L2 distance per sample, averaged over the batch, as written in the paper
  (the authors' code uses the unsquared norm of the whole batch's difference); the KD term carries
  T² as above (the authors' code uses the soft cross-entropy without T²). The deepest CE has weight 1
  (the authors' code; read literally, the paper's sum would give it 1 − α).
Every exit is evaluated and recorded (``exit1/…``); the student (the deepest exit) is the run's
headline model. Needs a zoo CIFAR model (``cifar_*``) with at least two stages.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method
from kdsuite.zoo.cifar.common import CifarNet, init_weights


def sep_conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Depthwise-separable block: dw3×3(stride) → pw1×1 → BN → ReLU → dw3×3 → pw1×1 → BN → ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_in, 1, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(),
        nn.Conv2d(c_in, c_in, 3, stride=1, padding=1, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class Exit(nn.Module):
    """Bottleneck to the last stage's shape, global average pooling, classifier."""

    def __init__(self, c_in: int, c_out: int, downsample: int, num_classes: int):
        super().__init__()
        steps = max(int(round(math.log2(downsample))), 0)
        if steps == 0:
            blocks = [sep_conv(c_in, c_out, 1)]
        else:
            inner = [max(1, int(round(c_in * (c_out / c_in) ** (k / steps)))) for k in range(1, steps)]
            widths = [c_in] + inner + [c_out]
            blocks = [sep_conv(widths[k], widths[k + 1], 2) for k in range(steps)]
        self.bottleneck = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_out, num_classes)
        init_weights(self)

    def forward(self, f: torch.Tensor):
        """``(logits, pooled bottleneck features F_i)``."""
        feat = torch.flatten(nn.functional.adaptive_avg_pool2d(self.bottleneck(f), 1), 1)
        return self.fc(feat), feat


class ExitNet(nn.Module):
    """The student up to stage ``stage`` plus that stage's exit, as a standalone classifier. Starts in
    the plugin's train/eval mode so that the evaluator's mode restore is a no-op."""

    def __init__(self, student: CifarNet, head: Exit, stage: int, training: bool):
        super().__init__()
        self.student, self.head, self.stage = student, head, stage
        self.training = training

    def forward(self, x):
        _, post, _, _ = self.student.traverse(x, stop_at=self.stage)
        return self.head(post[self.stage])[0]


@register_method
class BYOT(Distiller):
    name = "byot"
    display_name = "BYOT"
    category = "self"
    scheme = "self"
    paper = ("Zhang et al. 2019, Be Your Own Teacher: Improve the Performance of Convolutional Neural Networks "
             "via Self Distillation (ICCV)")
    equation = "CE(z_C, y) + Σ_{i<C} [(1−α)·CE(z_i, y) + α·T²·KL(σ(z_C/T) ‖ σ(z_i/T)) + λ·‖F_i − F_C‖²] (§3.2)"
    num_teachers = 0
    hparams = {"alpha": HParam(0.3, low=0.0, high=1.0, doc="weight of the deepest exit's soft targets (code: 0.3)"),
               "lam": HParam(0.03, low=0.0, doc="weight of the feature hint (code: 0.03)"),
               "T": HParam(3.0, low=0.0, low_open=True, doc="temperature (code: 3)")}
    student_taps = ("stages",)
    # the deepest exit starts near uniform, so the exits' KD terms first grow as it learns; what must
    # fall is the whole objective
    distill_terms = ("ce", "ce_exits", "kd", "hint")

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if not isinstance(student, CifarNet):
            raise ConfigError(f"student: method 'byot' cuts the student after each stage, which needs a zoo CIFAR "
                              f"model (cifar_*); {type(student).__name__} is not one")
        if len(student.stages) < 2:
            raise ConfigError(f"student: method 'byot' needs a student with at least 2 stages (one exit per "
                              f"stage before the last); {type(student).__name__} has {len(student.stages)}")
        info = student.feature_info
        last = len(info) - 1
        self.exit_stages = list(range(1, last))  # feature indices of the shallow stages
        c_last, r_last = int(info[last]["num_chs"]), int(info[last]["reduction"])
        self.exits = nn.ModuleList(
            Exit(int(info[i]["num_chs"]), c_last, r_last // int(info[i]["reduction"]), ctx.num_classes)
            for i in self.exit_stages)

    def exit_outputs(self, x):
        """``(deepest logits z_C, deepest features F_C, [(z_i, F_i) per exit])``."""
        z, feats = self.student_forward(x)
        deepest = feats[self.s_taps[-1]]
        f_c = torch.flatten(nn.functional.adaptive_avg_pool2d(deepest, 1), 1)
        outs = [head(feats[f"feat{i}"]) for i, head in zip(self.exit_stages, self.exits)]
        return z, f_c, outs

    def forward_train(self, x, y):
        z, f_c, outs = self.exit_outputs(x)
        z_t, f_t = z.detach(), f_c.detach()
        a, T = self.hp.alpha, self.hp.T
        return {"ce": losses.ce(z, y),
                "ce_exits": (1 - a) * sum(losses.ce(zi, y) for zi, _ in outs),
                "kd": a * sum(losses.kd_loss(zi, z_t, T) for zi, _ in outs),
                "hint": self.hp.lam * sum((fi - f_t).pow(2).sum(dim=1).mean() for _, fi in outs)}

    def eval_models(self):
        models = {"student": self.deployed_student()}
        for k, (i, head) in enumerate(zip(self.exit_stages, self.exits), start=1):
            models[f"exit{k}"] = ExitNet(self.student, head, i, self.training)
        return models
