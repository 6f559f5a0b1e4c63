"""``ban``: born-again networks — generations of the same architecture, each taught by the last.

Paper: Furlanello, Lipton, Tschannen, Itti & Anandkumar, "Born-Again Neural Networks", ICML 2018
(arXiv 1805.04770), §3. Generation 1 learns from the labels; generation k + 1, a freshly initialised
network of the *same* architecture, learns from the outputs of generation k (Eq. 1 with the teacher
replaced by the previous generation):

    L_1 = CE(y, σ(z_1)),    L_{k+1} = T²·KL(σ(z_k/T) ‖ σ(z_{k+1}/T)) + w·CE(y, σ(z_{k+1})),

with T = 1 and w = 0 by default (the paper's BAN trains on the teacher's outputs alone; w > 0 adds the
label term as in its variants). A run of G generations (``generations``) is one grid entry: each
generation is one training stage of ``epochs`` epochs; at the start of generation k + 1 the student's
weights are copied into a frozen module holding generation k and the student is re-initialised (every
layer's own ``reset_parameters``, then the zoo's He initialisation for convolutions, from the stage's
derived seed). Every generation's accuracy is in the record (``stage_results.gen<k>``), the last
generation's is the run's. Simplification: only the last generation teaches (no ensemble of all past
generations, the paper's BAN+ensemble variant).
Reference followed: the paper (teacher outputs alone, T 1); generation losses use ``losses.kd_loss``.
"""
from __future__ import annotations

import copy

import torch.nn as nn

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller, Stage
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method
from kdsuite.zoo.cifar.common import init_weights


def reinitialise(model: nn.Module) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    init_weights(model)


@register_method
class BAN(Distiller):
    name = "ban"
    display_name = "BAN"
    category = "self"
    scheme = "self"
    paper = "Furlanello et al. 2018, Born-Again Neural Networks (ICML)"
    equation = "gen 1: CE(y, σ(z_1)); gen k+1: T²·KL(σ(z_k/T) ‖ σ(z_{k+1}/T)) + w·CE(y, σ(z_{k+1}))"
    num_teachers = 0
    hparams = {"generations": HParam(3, low=1, doc="number of generations G (generation 1 learns from labels)"),
               "T": HParam(1.0, low=0.0, low_open=True, doc="temperature of the born-again term"),
               "label_weight": HParam(0.0, low=0.0, doc="weight w of the label term from generation 2 on")}
    distill_terms = ("kd",)
    smoke_hparams = {"generations": 2}

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.previous = copy.deepcopy(student).requires_grad_(False).eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.previous.eval()  # the frozen previous generation always predicts in eval mode
        return self

    def stages(self):
        return [Stage(f"gen{k}", self.ctx.epochs) for k in range(1, self.hp.generations + 1)]

    def on_stage_start(self, stage, trainer) -> None:
        if stage.name == "gen1":
            return
        self.previous.load_state_dict(self.student.state_dict())
        reinitialise(self.student)

    def forward_train(self, x, y):
        z = self.student(x)
        if self.progress.stage == "gen1":
            return {"ce": losses.ce(z, y)}
        z_prev = self.previous(x).detach()
        out = {"kd": losses.kd_loss(z, z_prev, self.hp.T)}
        if self.hp.label_weight > 0:
            out["ce"] = self.hp.label_weight * losses.ce(z, y)
        return out
