"""``deepinversion``: data-free distillation by inverting the teacher's batch-norm statistics.

Paper: Yin, Molchanov, Li, Alvarez, Mallya, Hoiem, Jha & Kautz, "Dreaming to Distill: Data-free
Knowledge Transfer via DeepInversion", CVPR 2020 (arXiv 1912.08795), §3.2, Eq. (2)–(4). A batch of
images x̂ (parameters, from noise) and target labels ŷ is optimised so that the frozen teacher
classifies them as ŷ and the statistics of every batch-norm layer's input match that layer's running
statistics:

    R_feature(x̂) = Σ_l ‖μ_l(x̂) − BN_l.running_mean‖₂ + ‖σ²_l(x̂) − BN_l.running_var‖₂       (Eq. 4)
    L(x̂) = CE(t(x̂), ŷ) + α_tv·R_TV(x̂) + α_l2·‖x̂‖₂² + α_f·R_feature(x̂)                      (Eq. 2–3)

with R_TV the mean absolute difference of neighbouring pixels. The student then learns the teacher
on the synthesised images, T²·KL(σ(t/T) ‖ σ(s/T)). How this fits the shared trainer: each step makes
``inner`` Adam updates of the current synthetic batch (group ``images``) and one student update on
it; every ``refresh`` steps the batch starts again from noise with new labels (and fresh Adam state).
The paper optimises each batch for 2k iterations before any student sees it; here batches are
refined while the student learns (a simplification that keeps every step equally long; with
``inner`` × ``refresh`` iterations per batch). The statistics are read by forward hooks on the
teacher's BatchNorm2d layers, registered for the inversion pass only. The student never sees a real
training image: the trainer gives this method no training loader.
Reference followed: the paper's Eq. 2–4. Known differences from the authors' CIFAR script (NVlabs/
DeepInversion cifar10/deepinversion_cifar10.py: TV as the L2 norm of neighbour differences, no ‖x‖² term,
2k iterations per batch) are listed in docs/fidelity/others.md.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, OptimGroup
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method


@contextlib.contextmanager
def bn_statistics(model: nn.Module):
    """Collect, for every BatchNorm2d of ``model``, its input's batch mean/variance and running ones."""
    stats = []

    def hook(module, inputs, _output):
        x = inputs[0]
        stats.append((x.mean((0, 2, 3)), x.permute(1, 0, 2, 3).flatten(1).var(1, unbiased=False),
                      module.running_mean, module.running_var))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


def feature_regulariser(stats) -> torch.Tensor:
    """Eq. (4): Σ_l ‖μ_l − μ_l^BN‖₂ + ‖σ²_l − σ²_l^BN‖₂."""
    return sum(torch.norm(mu - rm, 2) + torch.norm(var - rv, 2) for mu, var, rm, rv in stats)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontally and vertically neighbouring pixels."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


@register_method
class DeepInversion(Distiller):
    name = "deepinversion"
    display_name = "DeepInversion"
    category = "data_free"
    scheme = "data_free"
    paper = "Yin et al. 2020, Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion (CVPR)"
    equation = "x̂: CE(t(x̂), ŷ) + α_tv·TV + α_l2·‖x̂‖² + α_f·Σ_l(‖μ_l − μ_l^BN‖ + ‖σ²_l − σ²_l^BN‖); S: T²·KL(t ‖ s) on x̂"
    needs_train_data = False
    hparams = {"batch": HParam(128, low=2, doc="synthetic images per batch"),
               "inner": HParam(2, low=1, doc="image updates per step"),
               "refresh": HParam(10, low=1, doc="steps before the batch restarts from noise"),
               "lr_images": HParam(0.1, low=0.0, low_open=True, doc="Adam learning rate of the images"),
               "bn_weight": HParam(10.0, low=0.0, doc="α_f, weight of the batch-norm statistics term"),
               "tv_weight": HParam(1e-3, low=0.0, doc="α_tv"), "l2_weight": HParam(1e-5, low=0.0, doc="α_l2"),
               "T": HParam(3.0, low=0.0, low_open=True, doc="temperature of the student's KD")}
    smoke_hparams = {"batch": 64, "refresh": 5}
    distill_terms = ("kd",)
    # its images are optimised batch by batch (no generator to draw new ones from): the kit measures KL to the
    # teacher on the batches the student trained on last. On a fresh batch, 30 tiny steps raise it (the
    # student fits its six batches of barely-inverted noise and does not generalise to a seventh)
    check_synthetic = "trained"

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if not any(isinstance(m, nn.BatchNorm2d) for m in self.teacher.modules()):
            raise ConfigError("method 'deepinversion' inverts the teacher's batch-norm statistics: the teacher "
                              "has no BatchNorm2d layer")
        self.images = nn.Parameter(torch.randn(hp.batch, *ctx.input_shape))
        self.register_buffer("targets", torch.randint(0, ctx.num_classes, (hp.batch,)))
        self.synthetic_batch_size = hp.batch

    def optim_groups(self):
        return {"student": OptimGroup(list(self.student.parameters())),
                "images": OptimGroup([self.images], defaults={"name": "adam", "lr": self.hp.lr_images,
                                                              "weight_decay": 0.0, "betas": (0.5, 0.99)},
                                     schedule={"name": "constant"})}

    def inversion_loss(self, x: torch.Tensor, y: torch.Tensor):
        with bn_statistics(self.teacher) as stats:
            t = self.teacher(x)
        return {"img_ce": F.cross_entropy(t, y), "img_bn": self.hp.bn_weight * feature_regulariser(stats),
                "img_tv": self.hp.tv_weight * total_variation(x), "img_l2": self.hp.l2_weight * x.pow(2).sum(1).mean()}

    def train_step(self, batch, trainer):
        if self.progress.step % self.hp.refresh == 0:
            with torch.no_grad():
                self.images.normal_()
                self.targets.random_(0, self.ctx.num_classes)
            trainer.reset_optimizer("images")
        for _ in range(self.hp.inner):
            inv = self.inversion_loss(self.images, self.targets)
            trainer.optimize("images", inv)
        x = self.images.detach()
        with torch.no_grad():
            t = self.teacher(x)
        kd = losses.kd_loss(self.student(x), t, self.hp.T)
        trainer.optimize("student", {"kd": kd})
        return {"kd": kd.detach(), **{k: v.detach() for k, v in inv.items()}}
