"""``kdcl``: online knowledge distillation via collaborative learning, the MinLogit ensemble.

Paper: Guo, Wang, Wu, Yu, Liang, Hu & Luo, "Online Knowledge Distillation via Collaborative
Learning", CVPR 2020. K peers (peer 0 = the run's student, the others from ``peers``) are trained
together; their soft target is an ensemble teacher built from the peers' logits. KDCL-MinLogit
(§3.2): subtract from each peer's logits its logit of the true class, z̄_k = z_k − z_{k,c}·1, and
take the element-wise minimum over peers, z^t_j = min_k z̄_{k,j} (the target class gets 0, every
other class its smallest margin — the most confident peer per class). Each peer's loss (Eq. 1 with
the MinLogit teacher):

    L_k = CE(y, σ(z_k)) + λ·T²·KL(σ(z^t/T) ‖ σ(z_k/T)),   z^t a constant (no gradient).

Every peer steps its own optimizer group ``peer<k>``; all peers are evaluated (``peer1/…``).
Simplifications: the paper feeds each peer a differently augmented copy of the image (to make the
ensemble generalise); here all peers see the same batch (the loader's augmentation). The
MinLogit variant was chosen over the naive average (KDCL-Naive) because it needs no extra
hyper-parameters and is the paper's main one for networks of different capacity.
Reference followed: the paper's MinLogit ensemble (§3.2) with T 2, λ 1.
"""
from __future__ import annotations

import torch

from kdsuite.methods import losses
from kdsuite.methods.components.peers import PeerGroup
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


def min_logit_teacher(logits, y):
    """Element-wise minimum over peers of each peer's logits minus its true-class logit."""
    stacked = torch.stack([z - z.gather(1, y[:, None]) for z in logits])  # (K, B, C)
    return stacked.min(dim=0).values


@register_method
class KDCL(PeerGroup):
    name = "kdcl"
    display_name = "KDCL"
    category = "online"
    scheme = "online"
    paper = "Guo et al. 2020, Online Knowledge Distillation via Collaborative Learning (CVPR)"
    equation = "L_k = CE(y, p_k) + λ·T²·KL(σ(z^t/T) ‖ σ(z_k/T)), z^t_j = min_k (z_kj − z_kc) (MinLogit)"
    num_teachers = 0
    hparams = {"peers": HParam(["cifar_resnet8"], kind=list, doc="architectures of the other peers"),
               "T": HParam(2.0, low=0.0, low_open=True, doc="temperature of the distillation term"),
               "lam": HParam(1.0, low=0.0, doc="weight of the distillation term")}
    # distill_terms unset: every peer's kd<k> distils (ce<k> fits the labels); each reaches trainer.optimize
    # under its own key, so the kit checks each peer's term reaches that peer

    def peer_losses(self, logits, y):
        teacher = min_logit_teacher([z.detach() for z in logits], y)
        T, out = self.hp.T, {}
        for k, z in enumerate(logits):
            out[f"ce{k}"] = losses.ce(z, y)
            out[f"kd{k}"] = self.hp.lam * losses.kd_loss(z, teacher, T)
        return out

    def train_step(self, batch, trainer):
        x, y = batch[0], batch[1]
        out = self.peer_losses([p(x) for p in self.peers], y)
        for k in range(len(self.peers)):
            trainer.optimize(f"peer{k}", {f"ce{k}": out[f"ce{k}"], f"kd{k}": out[f"kd{k}"]})
        return out
