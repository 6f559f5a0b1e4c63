"""``pkt``: probabilistic knowledge transfer.

Paper: Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer",
ECCV 2018 (arXiv 1803.10837), §3. The pairwise interactions of a batch's representations are
modelled as conditional probabilities from the cosine-similarity kernel
K_cos(a, b) = ½·(aᵀb / (‖a‖₂‖b‖₂) + 1), and the student minimises the divergence of its
probabilities q from the teacher's p on the pooled (pre-logit) features; L = CE + β·L_PKT.

Default (``variant: repdistiller``) follows the code behind the published CIFAR-100 numbers:
RepDistiller's ``distiller_zoo/PKT.py`` (github.com/HobbitLong/RepDistiller, itself taken from the
authors' github.com/passalis/probabilistic_kt), which keeps the i = j terms:
    p_{i|j} = K(t_i, t_j) / Σ_k K(t_k, t_j)   (teacher; q likewise for the student),
    L_PKT = 1/b² · Σ_j Σ_i p_{i|j} · log((p_{i|j} + ε) / (q_{i|j} + ε)),   ε = 1e-7,
with the features normalised as f / (‖f‖₂ + ε). β = 30000 is RepDistiller's CIFAR-100 weight, tuned
with the i = j terms (no KD term, α = 0).

``variant: paper`` drops the i = j terms as the paper's sums Σ_{k≠j}, Σ_{i≠j} read (the diagonal
of the b×b matrices is 0, the normalisation runs over k ≠ j); the reduction stays 1/b². The b×b
probabilities do not depend on feature sizes, so no adaptation is needed between teacher and student.
The b×b matrices are computed in float64 (cheap, and autocast leaves float64 alone): the loss is a
divergence between two nearly equal distributions, which loses about three digits to cancellation in
float32 (RepDistiller's precision) — the float64 value is the same formula without that noise.
"""
from __future__ import annotations

import torch

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand

VARIANTS = ("repdistiller", "paper")


def conditional_probabilities(f: torch.Tensor, eps: float = 1e-7, self_pairs: bool = True) -> torch.Tensor:
    """(b, b) matrix P with P[j, i] = p_{i|j}; ``self_pairs=False`` sets the diagonal (i = j) to 0
    before normalising."""
    f = f.flatten(1)
    f = f / (f.norm(dim=1, keepdim=True) + eps)
    k = (f @ f.t() + 1.0) / 2.0
    if not self_pairs:
        k = k * (1.0 - torch.eye(len(f), dtype=k.dtype, device=k.device))
    return k / k.sum(dim=1, keepdim=True)


def pkt_loss(f_s: torch.Tensor, f_t: torch.Tensor, eps: float = 1e-7, self_pairs: bool = True) -> torch.Tensor:
    p = conditional_probabilities(f_t, eps, self_pairs)
    q = conditional_probabilities(f_s, eps, self_pairs)
    return (p * torch.log((p + eps) / (q + eps))).mean()


@register_method
class PKT(Distiller):
    name = "pkt"
    display_name = "PKT"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "relation"
    scheme = "offline"
    paper = "Passalis & Tefas 2018, Learning Deep Representations with Probabilistic Knowledge Transfer (ECCV)"
    equation = "CE + β·(1/b²)·Σ_j Σ_i p_{i|j} log(p_{i|j}/q_{i|j}), p from the cosine kernel ½(cos+1) (i = j kept)"
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): pkt 0.00692 (0.0327 / 4.73)
    scale_band = {"pkt": ScaleBand.around(0.00692, "beta")}
    hparams = {"beta": HParam(30000.0, low=0.0, doc="weight of the PKT term"),
               "variant": HParam("repdistiller", choices=VARIANTS,
                                 doc="repdistiller: i = j terms kept (RepDistiller / authors' code); "
                                     "paper: i = j terms dropped (the paper's Σ_{i≠j})")}
    student_taps = ("pool",)
    teacher_taps = ("pool",)

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        term = pkt_loss(sf["pool"].double(), tf["pool"].double(), self_pairs=self.hp.variant == "repdistiller")
        return {"ce": losses.ce(s_logits, y), "pkt": self.hp.beta * term.float()}
