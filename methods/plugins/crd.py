"""``crd``: contrastive representation distillation.

Paper: Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020 (arXiv 1910.10699),
§3.1–3.4. Embedding heads g_S, g_T (linear + ℓ2 normalisation, ``feat_dim`` 128) map the pooled
features of student and teacher; the critic is
    h(T, S) = exp(g_T(t)ᵀg_S(s)/τ) / (exp(g_T(t)ᵀg_S(s)/τ) + N/M),
with M the training-set size and N the number of negatives (``nce_k``), and the student maximises
the NCE bound on the mutual information (the paper's L_critic, implemented as its NCE loss):
    L_NCE = −E_pos[log h] − N·E_neg[log(1 − h)],
where, as in the paper's memory-bank implementation (after Wu et al. 2018), exp(·/τ) is divided by a
normalisation constant Z (estimated once, from the first batch: Z = M · mean exp(·/τ)) so that it
approximates a probability P, and h = P / (P + N/M). Negatives come from memory banks of size M × 128
(registered buffers; initialised uniformly in ±1/√(feat_dim/3)): for each sample the positive is its
own row (the dataset index from the loader, ``batch_fields`` "index") and N rows drawn uniformly.
The loss is taken both ways — the student anchor against the teacher bank and the teacher anchor
against the student bank — and after each step the batch's rows are updated with momentum m = 0.5:
    bank[i] ← normalise(m·bank[i] + (1 − m)·v_i).
L = CE + β·(L_NCE^S + L_NCE^T), β = 0.8, τ = 0.07, N = 16384 (RepDistiller's CIFAR-100 defaults, no KD).
Simplification: negatives are drawn uniformly from the whole training set (the noise distribution
the NCE loss assumes), not from other classes only as RepDistiller's default data sampler does.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method


def nce_loss(p: torch.Tensor, num_data: int, eps: float = 1e-7) -> torch.Tensor:
    """``p`` (B, 1 + N): normalised scores, column 0 the positive. −(Σ log h⁺ + Σ log(1 − h⁻)) / B."""
    b, n = p.shape[0], p.shape[1] - 1
    noise = n / float(num_data)
    log_pos = torch.log(p[:, 0] / (p[:, 0] + noise + eps))
    log_neg = torch.log(noise / (p[:, 1:] + noise + eps))
    return -(log_pos.sum() + log_neg.sum()) / b


@register_method
class CRD(Distiller):
    name = "crd"
    category = "feature"
    scheme = "offline"
    paper = "Tian et al. 2020, Contrastive Representation Distillation (ICLR)"
    equation = "CE + β·(NCE(g_S(s) vs teacher bank) + NCE(g_T(t) vs student bank)), h = P/(P + N/M)"
    hparams = {"beta": HParam(0.8, low=0.0, doc="weight of the contrastive term"),
               "feat_dim": HParam(128, low=1, doc="embedding dimension"),
               "nce_k": HParam(16384, low=1, doc="negatives per sample"),
               "nce_t": HParam(0.07, low=0.0, low_open=True, doc="temperature τ"),
               "nce_m": HParam(0.5, low=0.0, high=1.0, doc="momentum of the memory-bank update")}
    student_taps = ("pool",)
    teacher_taps = ("pool",)
    batch_fields = ("x", "y", "index")
    smoke_hparams = {"nce_k": 64}

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if ctx.num_train <= 0:
            raise ConfigError(f"method 'crd': the training-set size (num_train = {ctx.num_train}) must be > 0; "
                              f"the memory banks hold one row per training sample")
        self.num_data = int(ctx.num_train)
        self.embed_s = nn.Linear(self.student_shapes()["pool"][0], hp.feat_dim)
        self.embed_t = nn.Linear(self.teacher_shapes()["pool"][0], hp.feat_dim)
        stdv = 1.0 / math.sqrt(hp.feat_dim / 3)
        self.register_buffer("memory_s", torch.rand(self.num_data, hp.feat_dim) * (2 * stdv) - stdv)
        self.register_buffer("memory_t", torch.rand(self.num_data, hp.feat_dim) * (2 * stdv) - stdv)
        self.register_buffer("z_s", torch.tensor(-1.0))  # normalisation constants, set from the first batch
        self.register_buffer("z_t", torch.tensor(-1.0))

    def _normalised(self, scores: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = torch.exp(scores / self.hp.nce_t)
        z_new = torch.where(z < 0, out.detach().mean() * self.num_data, z)
        z.copy_(z_new)
        return out / z_new

    def contrast_loss(self, v_s: torch.Tensor, v_t: torch.Tensor, index: torch.Tensor,
                      contrast_index: torch.Tensor) -> torch.Tensor:
        """Both NCE losses for ℓ2-normalised embeddings ``v_s``/``v_t`` (B, d) and the bank rows
        ``contrast_index`` (B, 1 + N), column 0 = ``index``; then the momentum update of the banks."""
        w_t = self.memory_t[contrast_index]  # (B, 1 + N, d), a copy: the banks carry no gradient
        w_s = self.memory_s[contrast_index]
        p_s = self._normalised(torch.bmm(w_t, v_s.unsqueeze(2)).squeeze(2).float(), self.z_s)  # student anchor
        p_t = self._normalised(torch.bmm(w_s, v_t.unsqueeze(2)).squeeze(2).float(), self.z_t)  # teacher anchor
        loss = nce_loss(p_s, self.num_data) + nce_loss(p_t, self.num_data)
        with torch.no_grad():
            m = self.hp.nce_m
            for bank, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
                rows = F.normalize(bank[index] * m + v.detach() * (1 - m), dim=1)
                bank.index_copy_(0, index, rows)
        return loss

    def forward_train(self, x, y):
        index = self.batch_extras.get("index")
        if index is None:
            raise ConfigError("method 'crd' needs each sample's dataset index: its batches must carry the 'index' "
                              "field (batch_fields = ('x', 'y', 'index'))")
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        v_s = F.normalize(self.embed_s(sf["pool"]).float(), dim=1)
        v_t = F.normalize(self.embed_t(tf["pool"]).float(), dim=1)
        neg = torch.randint(0, self.num_data, (len(index), self.hp.nce_k), device=index.device)
        contrast_index = torch.cat([index.view(-1, 1), neg], dim=1)
        return {"ce": losses.ce(s_logits, y),
                "crd": self.hp.beta * self.contrast_loss(v_s, v_t, index, contrast_index)}
