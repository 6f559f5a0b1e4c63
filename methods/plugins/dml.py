"""``dml``: deep mutual learning — K peers teach each other while they all learn.

Paper: Zhang, Xiang, Hospedales & Lu, "Deep Mutual Learning", CVPR 2018 (arXiv 1706.00384).
Equations (1)–(2) and, for K peers, (9): L_Θk = CE(y, p_k) + 1/(K−1)·Σ_{l≠k} KL(p_l ‖ p_k).
The run's student is peer 0; ``peers`` names the architectures of the others (built with the zoo).
Each peer has its own optimizer group ``peer<k>``, so each can get its own optimizer and schedule
through the config's ``optimizers.peer<k>`` section. Every peer is evaluated and recorded
(``peer1/best_top1`` …).

Two update orders (hparam ``update``):
- ``simultaneous`` (default, the common implementation): one forward pass of every peer, each
  peer's loss computed with the others' predictions as constants, then each peer steps its own
  optimizer; K forwards per step.
- ``sequential`` (the paper's Algorithm 1): peers are updated in turn and the predictions are
  recomputed after each update, so peer k learns from peers already updated in this step; K²
  forwards per step (the other peers' forwards without a graph).
``T`` (default 1, as in the paper) optionally softens both distributions, with the usual T² factor.
Reference followed: the paper's Eq. 9 (T 1, weight 1), checked in tests/test_method_dml.py.
"""
from __future__ import annotations

import torch

from kdsuite.methods import losses
from kdsuite.methods.components.peers import PeerGroup
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


@register_method
class DML(PeerGroup):
    name = "dml"
    display_name = "DML"
    category = "online"
    scheme = "online"
    paper = "Zhang et al. 2018, Deep Mutual Learning (CVPR)"
    equation = "L_k = CE(y, p_k) + 1/(K−1)·Σ_{l≠k} KL(p_l ‖ p_k), each peer its own optimizer (Eq. 9)"
    num_teachers = 0
    hparams = {"peers": HParam(["cifar_resnet8"], kind=list, doc="architectures of the other peers"),
               "T": HParam(1.0, low=0.0, low_open=True, doc="temperature of the mutual KL (paper: 1)"),
               "update": HParam("simultaneous", choices=("simultaneous", "sequential"),
                                doc="simultaneous: one forward of all peers; sequential: the paper's "
                                    "Algorithm 1, predictions recomputed after each peer's update")}
    # distill_terms unset: every peer's kl<k> distils (ce<k> fits the labels); each reaches trainer.optimize
    # under its own key, so the kit checks each peer's term reaches that peer

    def peer_loss(self, logits, y, k):
        """CE and mean KL of peer ``k`` against the (constant) predictions of the other peers."""
        K, T = len(logits), self.hp.T
        kl = sum(losses.kl_div(logits[l].detach(), logits[k], T) for l in range(K) if l != k) / (K - 1)
        return losses.ce(logits[k], y), kl * T * T

    def peer_losses(self, logits, y):
        out = {}
        for k in range(len(logits)):
            out[f"ce{k}"], out[f"kl{k}"] = self.peer_loss(logits, y, k)
        return out

    def train_step(self, batch, trainer):
        x, y = batch[0], batch[1]
        if self.hp.update == "simultaneous":
            out = self.peer_losses([p(x) for p in self.peers], y)
            for k in range(len(self.peers)):
                trainer.optimize(f"peer{k}", {f"ce{k}": out[f"ce{k}"], f"kl{k}": out[f"kl{k}"]})
            return out
        out = {}
        for k, peer in enumerate(self.peers):
            logits = []
            for l, other in enumerate(self.peers):
                if l == k:
                    logits.append(peer(x))
                else:
                    with torch.no_grad():
                        logits.append(other(x))
            ce, kl = self.peer_loss(logits, y, k)
            trainer.optimize(f"peer{k}", {f"ce{k}": ce, f"kl{k}": kl})
            out[f"ce{k}"], out[f"kl{k}"] = ce.detach(), kl.detach()
        return out
