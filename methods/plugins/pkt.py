"""``pkt``: probabilistic knowledge transfer.

Paper: Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer",
ECCV 2018 (arXiv 1803.10837), §3. The pairwise interactions of a batch's representations are
modelled as conditional probabilities from a kernel, here the paper's cosine-similarity kernel
K_cos(a, b) = ½·(aᵀb / (‖a‖₂‖b‖₂) + 1):
    p_{i|j} = K(t_i, t_j) / Σ_{k≠j} K(t_k, t_j)   (teacher),   q_{i|j} likewise (student),
and the student minimises the divergence  L_PKT = Σ_j Σ_{i≠j} p_{i|j} · log(p_{i|j} / q_{i|j}).
L = CE + β·L_PKT on the pooled (pre-logit) features, β = 30000 as RepDistiller's CIFAR-100 recipe.
Scaling: the sum is divided by b² (the mean over the b×b matrix whose diagonal is 0) — the reduction
for which RepDistiller's β is tuned; a small ε (1e-7) guards the logarithm. The b×b probabilities do not
depend on feature sizes, so no adaptation is needed between teacher and student.
"""
from __future__ import annotations

import torch

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


def conditional_probabilities(f: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(b, b) matrix P with P[j, i] = p_{i|j}; the diagonal (i = j) is excluded (0)."""
    f = f.flatten(1)
    f = f / (f.norm(dim=1, keepdim=True) + eps)
    k = (f @ f.t() + 1.0) / 2.0
    k = k * (1.0 - torch.eye(len(f), dtype=k.dtype, device=k.device))
    return k / k.sum(dim=1, keepdim=True)


def pkt_loss(f_s: torch.Tensor, f_t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    p, q = conditional_probabilities(f_t, eps), conditional_probabilities(f_s, eps)
    return (p * torch.log((p + eps) / (q + eps))).mean()


@register_method
class PKT(Distiller):
    name = "pkt"
    category = "relation"
    scheme = "offline"
    paper = "Passalis & Tefas 2018, Learning Deep Representations with Probabilistic Knowledge Transfer (ECCV)"
    equation = "CE + β·(1/b²)·Σ_j Σ_{i≠j} p_{i|j} log(p_{i|j}/q_{i|j}), p from the cosine kernel ½(cos+1)"
    hparams = {"beta": HParam(30000.0, low=0.0, doc="weight of the PKT term")}
    student_taps = ("pool",)
    teacher_taps = ("pool",)

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        return {"ce": losses.ce(s_logits, y), "pkt": self.hp.beta * pkt_loss(sf["pool"].float(), tf["pool"].float())}
