"""``sp``: similarity-preserving knowledge distillation.

Paper: Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019 (arXiv 1907.09682), §3.
For a mini-batch of b samples and activation maps A ∈ R^{b×c×h×w} reshaped to Q ∈ R^{b×chw}:
G̃ = Q·Qᵀ (b×b), G[i,:] = G̃[i,:] / ‖G̃[i,:]‖₂ (row-wise ℓ2 normalisation), and
L_SP = 1/b² · Σ_(l,l') ‖G_T^(l) − G_S^(l')‖_F²;  L = CE + γ·L_SP.
As in RepDistiller's CIFAR-100 recipe the single pair (l, l') is the last stage of each network and
γ = 3000. The b×b matrices do not depend on channel counts or map sizes, so any teacher/student pair
works without adaptation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand


def similarity_matrix(f: torch.Tensor) -> torch.Tensor:
    """Row-ℓ2-normalised Gram matrix of the flattened activations, (b, b)."""
    q = f.flatten(1)
    return F.normalize(q @ q.t(), dim=1)


def sp_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    b = f_s.shape[0]
    return (similarity_matrix(f_t) - similarity_matrix(f_s)).pow(2).sum() / (b * b)


@register_method
class SP(Distiller):
    name = "sp"
    display_name = "SP"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "relation"
    scheme = "offline"
    paper = "Tung & Mori 2019, Similarity-Preserving Knowledge Distillation (ICCV)"
    equation = "CE + γ·(1/b²)·‖G_T − G_S‖_F², G = row-normalise(Q·Qᵀ) on the last stage"
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): sp 2.06 (9.76 / 4.73)
    scale_band = {"sp": ScaleBand.around(2.06, "beta")}
    hparams = {"beta": HParam(3000.0, low=0.0, doc="weight γ of the similarity-preserving term")}
    student_taps = ("feat-1",)
    teacher_taps = ("feat-1",)

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        loss = sp_loss(sf[self.s_taps[0]].float(), tf[self.t_taps[0][0]].float())
        return {"ce": losses.ce(s_logits, y), "sp": self.hp.beta * loss}
