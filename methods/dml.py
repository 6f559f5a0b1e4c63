"""``dml``: deep mutual learning — K peers teach each other while they all learn.

Paper: Zhang, Xiang, Hospedales & Lu, "Deep Mutual Learning", CVPR 2018 (arXiv 1706.00384).
Equations (1)–(2) and (9) for K peers: L_Θk = CE(y, p_k) + 1/(K−1)·Σ_{l≠k} KL(p_l ‖ p_k).
We use the simultaneous variant: every peer's loss is computed from one forward pass of all peers,
the other peers' predictions treated as constants, and each peer steps its own optimizer (group
``peer<k>``, so each can have its own optimizer and schedule through ``optimizers.peer<k>``). The
paper alternates (recomputing predictions after each peer's update); the simultaneous form is the
common implementation and costs one forward per peer instead of K.
The run's student is peer 0; ``peers`` names the architectures of the others. Every peer is
evaluated and recorded (``peer1/best_top1`` …).
"""
from __future__ import annotations

import torch.nn as nn

from methods import losses
from methods.base import Distiller, OptimGroup
from methods.hparams import HParam
from methods.registry import register_method


@register_method
class DML(Distiller):
    name = "dml"
    category = "online"
    scheme = "online"
    paper = "Zhang et al. 2018, Deep Mutual Learning (CVPR)"
    equation = "L_k = CE(y, p_k) + 1/(K−1)·Σ_{l≠k} KL(p_l ‖ p_k), each peer its own optimizer"
    num_teachers = 0
    hparams = {"peers": HParam(["cifar_resnet8"], kind=list, doc="architectures of the other peers"),
               "T": HParam(1.0, low=0.0, low_open=True, doc="temperature of the mutual KL (paper: 1)")}
    distill_terms = ("kl0",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if not hp.peers:
            from methods.hparams import ConfigError
            raise ConfigError("method.hparams.peers = []: deep mutual learning needs at least one other peer")
        self.others = nn.ModuleList([ctx.build_model(a) for a in hp.peers])

    @property
    def peers(self):
        return [self.student, *self.others]

    def optim_groups(self):
        return {f"peer{k}": OptimGroup(list(p.parameters())) for k, p in enumerate(self.peers)}

    def peer_losses(self, logits, y):
        K, T = len(logits), self.hp.T
        out = {}
        for k in range(K):
            kl = sum(losses.kl_div(logits[l].detach(), logits[k], T) for l in range(K) if l != k) / (K - 1)
            out[f"ce{k}"] = losses.ce(logits[k], y)
            out[f"kl{k}"] = kl * T * T
        return out

    def train_step(self, batch, trainer):
        x, y = batch[0], batch[1]
        out = self.peer_losses([p(x) for p in self.peers], y)
        for k in range(len(self.peers)):
            trainer.optimize(f"peer{k}", {"ce": out[f"ce{k}"], "kl": out[f"kl{k}"]})
        return out

    def eval_models(self):
        return {"student" if k == 0 else f"peer{k}": p for k, p in enumerate(self.peers)}
