"""``ps_kd``: self-knowledge distillation with progressive refinement of targets.

Paper: Kim, Ji, Yoon & Hwang, "Self-Knowledge Distillation with Progressive Refinement of Targets",
ICCV 2021 (arXiv 2006.12000), Eq. (6)–(7). The model's own predictions for a sample from the previous
epoch soften that sample's target, more and more as training goes on:

    y_t = (1 − α_t)·y + α_t·P_{t−1}(x),   α_t = α_T · t / T,   L = CE(y_t, P_t(x)),

with t the epoch (0-based; epoch 0 trains on the plain labels) and α_T = 0.8 (the paper's value). The
past predictions live in a buffer of one row per training sample (found by the sample index the loader
provides, ``batch_fields`` "index"), written as each sample is seen — so the target of a sample in
epoch t is its prediction from epoch t − 1, as in the authors' code — and saved in checkpoints. A sample
without a past prediction (its epoch was capped before reaching it) keeps its plain label.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method


@register_method
class PSKD(Distiller):
    name = "ps_kd"
    display_name = "PS-KD"
    category = "self"
    scheme = "self"
    paper = "Kim et al. 2021, Self-Knowledge Distillation with Progressive Refinement of Targets (ICCV)"
    equation = "CE((1 − α_t)·y + α_t·P_{t−1}(x), P_t(x)), α_t = α_T·t/T"
    num_teachers = 0
    batch_fields = ("x", "y", "index")
    hparams = {"alpha_T": HParam(0.8, low=0.0, high=1.0, doc="α of the last epoch")}
    distill_terms = ("ps",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if ctx.num_train <= 0:
            raise ConfigError(f"method 'ps_kd': the training-set size (num_train = {ctx.num_train}) must be > 0; "
                              f"past predictions are kept one row per training sample")
        self.register_buffer("past", torch.zeros(ctx.num_train, ctx.num_classes))
        self.register_buffer("seen", torch.zeros(ctx.num_train, dtype=torch.bool))

    def alpha(self) -> float:
        p = self.progress
        return self.hp.alpha_T * p.epoch / max(p.total_epochs, 1)

    def forward_train(self, x, y):
        index = self.batch_extras.get("index")
        if index is None:
            raise ConfigError("method 'ps_kd' needs each sample's dataset index (batch_fields 'index')")
        z = self.student(x)
        a = self.alpha()
        onehot = F.one_hot(y, z.shape[1]).float()
        target = onehot
        if a > 0:
            # a sample not predicted yet (a capped epoch) keeps its plain label
            mixed = (1 - a) * onehot + a * self.past[index]
            target = torch.where(self.seen[index][:, None], mixed, onehot)
        with torch.no_grad():
            self.past[index] = F.softmax(z.detach().float(), dim=1)
            self.seen[index] = True
        return {"ps": losses.ce(z, target)}
