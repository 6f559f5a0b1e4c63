"""``supervision_transfer``: cross-modal distillation at a feature layer (Gupta et al.'s supervision transfer).

Paper: Gupta, Hoffman & Malik, "Cross Modal Distillation for Supervision Transfer", CVPR 2016 (arXiv
1507.00448), Eq. (1): the student network ψ for a new modality d is trained so that its mid-level
features on image I_d reproduce those of the teacher φ (trained on the labelled modality s) on the paired
image I_s,
    min_{W_d} Σ_{(I_s, I_d)} f(t(φ(I_s; W_s*)), g(ψ(I_d; W_d))),   f = L2 distance,
on paired images without labels, as a pre-training; the network is then fine-tuned on the labelled images
of its modality. The authors' code (github.com/s-gupta/fast-rcnn, branch ``distillation``) regresses
AlexNet/VGG pool5 features with Caffe's Euclidean loss, (1/2N)·Σ_i ‖a_i − b_i‖².
Here:
- Stage ``transfer`` (``transfer_epochs``, no labels): L = β·(1/2N)·Σ_i ‖φ_t(x_i^A) − g(ψ_s(x_i^B))‖², at the
  teacher's and student's ``layer``-th feature (``feat-1``: the last stage, the analogue of pool5). t is
  the identity; g is the identity when the two maps have the same shape (the paper's same-architecture
  case) and otherwise the suite's ConvReg connector (conv + BN + ReLU, as FitNets'), trained with the
  student's feature layers. The classifier is not trained in this stage.
- Stage ``main``: the whole student fine-tuned on its view's labels, L = CE(y, σ(z_s(x^B))).
The teacher's view arrives in the batch field ``teacher_x`` (``dataset.views.teacher``); with one view it
is the student's own input (a FitNets-style hint pre-training at the last stage).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, OptimGroup, Stage
from kdsuite.methods.components.connectors import conv_regressor
from kdsuite.methods.components.init_stage import feature_params
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


def transfer_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Caffe's Euclidean loss: ½‖a_i − b_i‖² per sample, averaged over the batch."""
    return 0.5 * (student_feat - teacher_feat).pow(2).flatten(1).sum(1).mean()


@register_method
class SupervisionTransfer(Distiller):
    name = "supervision_transfer"
    display_name = "Supervision transfer"
    check_discrepancy = "terms"  # the kit measures its own term (teacher on another view)
    category = "cross_modal"
    scheme = "offline"
    paper = "Gupta, Hoffman & Malik 2016, Cross Modal Distillation for Supervision Transfer (CVPR)"
    equation = "stage 1: β·(1/2N)·Σ‖φ_t(x^A) − g(ψ_s(x^B))‖² (Eq. 1, f = L2); stage 2: CE(y, σ(z_s(x^B)))"
    hparams = {
        "layer": HParam(-1, doc="feature index of the transfer layer (feat<i>; -1 = last stage, pool5's analogue)"),
        "transfer_epochs": HParam(30, low=0, doc="epochs of the label-free transfer stage"),
        "beta": HParam(1.0, low=0.0, low_open=True, doc="weight of the transfer loss"),
    }
    smoke_hparams = {"transfer_epochs": 1}
    batch_fields = ("x", "y", "teacher_x")
    stage_hparams = ("layer",)

    def __init__(self, student, teachers, hp, ctx):
        self.student_taps = (f"feat{hp.layer}",)
        self.teacher_taps = ()  # paired below: the same stage number in one family, nearest relative depth across
        super().__init__(student, teachers, hp, ctx)
        self.t_taps[0] = [self.paired_teacher_tap(self.s_taps[0])]
        self.key_s, self.key_t = self.s_taps[0], self.t_taps[0][0]
        s_shape, t_shape = self.student_shapes()[self.key_s], self.teacher_shapes()[self.key_t]
        self.connector = nn.Identity() if tuple(s_shape) == tuple(t_shape) else \
            conv_regressor(s_shape, t_shape, self.name)

    def stages(self):
        transfer = [Stage("transfer", self.hp.transfer_epochs, optimizers=["transfer"], evaluate=False)] \
            if self.hp.transfer_epochs else []
        return transfer + [Stage("main", self.ctx.epochs, optimizers=["student"])]

    def optim_groups(self):
        groups = {"student": OptimGroup([p for p in self.student.parameters() if p.requires_grad])}
        if self.hp.transfer_epochs:
            groups["transfer"] = OptimGroup(feature_params(self.student) + list(self.connector.parameters()))
        return groups

    def transfer_losses(self, x):
        x_teacher = self.batch_extras.get("teacher_x", x)  # the same samples in the teacher's view
        _, tf = self.teacher_forward(x_teacher)
        _, sf = self.student_forward(x)
        return {"transfer": self.hp.beta * transfer_loss(self.connector(sf[self.key_s]), tf[self.key_t])}

    def forward_train(self, x, y):
        return {"ce": losses.ce(self.student(x), y)}

    def train_step(self, batch, trainer):
        if self.progress.stage == "transfer":
            out = self.transfer_losses(batch[0])
            trainer.optimize("transfer", out)
            return out
        out = self.forward_train(batch[0], batch[1])
        trainer.optimize("student", out)
        return out
