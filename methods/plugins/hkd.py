"""``hkd``: holistic knowledge distillation with a graph neural network over the batch.

Paper: Zhou, Wang, Chen, Chen, Wang, Wang & Bu, "Distilling Holistic Knowledge with Graph Neural
Networks", ICCV 2021 (arXiv 2108.05507; survey §5.4 follow-up). For each network a k-nearest-neighbour
graph is built over the batch (vertices: the instances, attributes: their embedded features; edges: each
instance's k nearest instances by the cosine distance of the softmax outputs, itself included), and a
one-hop GNN (TAGConv, K = 1) aggregates every vertex's neighbourhood into its holistic embedding:

    e_i = ℓ2(W_e·f_i),   h_i = ℓ2(W_g·[e_i ; (1/k)·Σ_{j ∈ N_k(i)} e_j] + b_g)

Both the individual embeddings e and the holistic ones h are distilled contrastively (InfoNCE, τ = 0.07)
against memory banks of the training set (momentum 0.9, each bank row one sample's ℓ2-normalised e):
the student anchor's positive is the teacher bank's row of the same sample, its negatives are ``nce_k``
rows of the student bank, and symmetrically for the teacher anchor; for h the positive row is smoothed,
ℓ2(0.75·bank_row + 0.25·h_other). With ℓ(a, p, N) = −log(e^{a·p/τ} / (e^{a·p/τ} + Σ_n e^{a·n/τ})):

    L_HKD = ℓ(e_S, B_T[i], B_S[N]) + ℓ(e_T, B_S[i], B_T[N]) + ℓ(h_S, p̃_T, B_S[N]) + ℓ(h_T, p̃_S, B_T[N])
    L = CE + α·T²·KL(σ(z_T/T) ‖ σ(z_S/T)) + β·L_HKD

Defaults follow the authors' code (github.com/wyc-ruiker/HKD: distiller_zoo/GNN.py, train_student.py and
README): α 1, β 3, T 4, k = 8, 128-d embeddings, 16384 negatives; the graph term is skipped for a batch
smaller than k. Simplification (as this suite's ``crd``): negatives are drawn uniformly from the training
set, not from the other classes only.
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import build_checks, losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.components.memory_banks import add_memory_banks, update_memory_banks
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method


def knn_neighbours(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) indices of each instance's k nearest instances by 1 − cos(softmax(z_i), softmax(z_j)), itself first."""
    p = F.softmax(logits, dim=1)
    pn = F.normalize(p, dim=1)
    dist = 1 - pn @ pn.t()
    dist = dist * (1 - torch.eye(len(p), dtype=p.dtype, device=p.device)) - torch.eye(len(p), dtype=p.dtype, device=p.device)
    return dist.topk(k, dim=1, largest=False).indices


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over the batch of −log softmax(cat[a·p, a·n_1..a·n_K] / τ)[0]; negatives (B, K, d)."""
    pos = (anchor * positive).sum(1, keepdim=True)
    neg = torch.bmm(negatives, anchor.unsqueeze(2)).squeeze(2)
    return -F.log_softmax(torch.cat([pos, neg], 1) / tau, dim=1)[:, 0].mean()


class GraphEncoder(nn.Module):
    """TAGConv with K = 1 on a graph where every vertex has in-degree k: W·[e_i ; mean_{N_k(i)} e_j] + b, ℓ2-normalised."""

    def __init__(self, dim: int):
        super().__init__()
        self.lin = nn.Linear(2 * dim, dim)

    def forward(self, e: torch.Tensor, nbrs: torch.Tensor) -> torch.Tensor:
        agg = e[nbrs].mean(1)
        return F.normalize(self.lin(torch.cat([e, agg], 1)), dim=1)


@register_method
class HKD(Distiller):
    name = "hkd"
    display_name = "HKD"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "graph"
    scheme = "offline"
    paper = "Zhou et al. 2021, Distilling Holistic Knowledge with Graph Neural Networks (ICCV)"
    equation = "CE + α·T²·KL + β·Σ InfoNCE(individual e, holistic h = GNN over the batch kNN graph; memory banks)"
    hparams = {"alpha": HParam(1.0, low=0.0, doc="weight of the KD term"),
               "T": HParam(4.0, low=0.0, low_open=True, doc="KD temperature"),
               "beta": HParam(3.0, low=0.0, doc="weight of the holistic contrastive term"),
               "feat_dim": HParam(128, low=1, doc="embedding dimension"),
               "knn": HParam(8, low=1, doc="neighbours per vertex (itself included)"),
               "nce_k": HParam(16384, low=1, doc="negatives per sample"),
               "nce_t": HParam(0.07, low=0.0, low_open=True, doc="InfoNCE temperature τ"),
               "nce_m": HParam(0.9, low=0.0, high=1.0, doc="momentum of the memory-bank update"),
               "smooth_m": HParam(0.75, low=0.0, high=1.0, doc="momentum of the smoothed holistic positives")}
    student_taps = ("pool",)
    teacher_taps = ("pool",)
    batch_fields = ("x", "y", "index")
    smoke_hparams = {"nce_k": 64}
    below_num_train = {"nce_k": "its negatives are rows of memory banks with one row per training sample"}

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.embed_s = nn.Linear(self.student_shapes()["pool"][0], hp.feat_dim)
        self.embed_t = nn.Linear(self.teacher_shapes()["pool"][0], hp.feat_dim)
        self.gnn_s = GraphEncoder(hp.feat_dim)
        self.gnn_t = GraphEncoder(hp.feat_dim)
        self.num_data = add_memory_banks(self, "hkd", ctx.num_train, hp.feat_dim)

    def check_build(self) -> None:
        """nce_k below the training set's size (``below_num_train``); knn within a batch (the graph's vertices)."""
        super().check_build()
        b = self.ctx.batch_size
        build_checks.require_at_most(self, "knn", b, f"dataset.batch_size = {b}",
                                     "the neighbour graph is built within each batch, and a batch smaller than "
                                     "knn skips the graph term")

    def holistic_loss(self, e_s, e_t, z_s, z_t, index, neg):
        """L_HKD for ℓ2-normalised embeddings ``e_s``/``e_t`` (B, d), logits ``z_s``/``z_t``, bank rows ``index``
        (B,) and negative rows ``neg`` (B, K). Reads the banks; does not update them."""
        tau = self.hp.nce_t
        neg_s, neg_t = self.memory_s[neg], self.memory_t[neg]
        pos_s, pos_t = self.memory_s[index], self.memory_t[index]
        loss = info_nce(e_s, pos_t, neg_s, tau) + info_nce(e_t, pos_s, neg_t, tau)
        if len(index) < self.hp.knn:
            return loss
        h_s = self.gnn_s(e_s, knn_neighbours(z_s.detach(), self.hp.knn))
        h_t = self.gnn_t(e_t, knn_neighbours(z_t.detach(), self.hp.knn))
        m = self.hp.smooth_m
        with torch.no_grad():
            smooth_s = F.normalize(m * pos_s + (1 - m) * h_s, dim=1)
            smooth_t = F.normalize(m * pos_t + (1 - m) * h_t, dim=1)
        return loss + info_nce(h_s, smooth_t, neg_s, tau) + info_nce(h_t, smooth_s, neg_t, tau)

    def forward_train(self, x, y):
        index = self.batch_extras.get("index")
        if index is None:
            raise ConfigError("method 'hkd' needs each sample's dataset index: its batches must carry the 'index' "
                              "field (batch_fields = ('x', 'y', 'index'))")
        s_logits, sf = self.student_forward(x)
        t_logits, tf = self.teacher_forward(x)
        e_s = F.normalize(self.embed_s(sf["pool"]).float(), dim=1)
        e_t = F.normalize(self.embed_t(tf["pool"]).float(), dim=1)
        neg = torch.randint(0, self.num_data, (len(index), self.hp.nce_k), device=index.device)
        hkd = self.holistic_loss(e_s, e_t, s_logits.float(), t_logits.float(), index, neg)
        update_memory_banks(self, index, e_s, e_t, self.hp.nce_m)
        return {"ce": losses.ce(s_logits, y),
                "kd": self.hp.alpha * losses.kd_loss(s_logits, t_logits, self.hp.T),
                "hkd": self.hp.beta * hkd}
