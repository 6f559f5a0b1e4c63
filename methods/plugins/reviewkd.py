"""``reviewkd``: Distilling Knowledge via Knowledge Review (ReviewKD).

Paper: Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021 (arXiv 2104.09044),
§3.3–3.4 (the review objective, ABF and HCL; equation numbers not re-checked against the PDF here):
L = CE + λ·Σ_i D(F_s^i fused with the deeper stages, F_t^i), the fusion by the attention-based fusion (ABF)
chain from the deepest stage to the shallowest, D the hierarchical context loss (HCL). The parts live in :mod:`kdsuite.methods.components.fusion`.

The default follows mdistiller (github.com/megvii-research/mdistiller), ``mdistiller/distillers/ReviewKD.py``
with ``engine/cfg.py``'s defaults and ``configs/cifar100/reviewkd.yaml``:
- student features: every stage's output after its activation (``STU_PREACT`` False) plus the pooled vector as
  a 1×1 map (mdistiller passes the stem too, which its ``zip`` drops: stages 1..N and the pool are used);
- teacher features: every stage *before* its activation (``preact_feats[1:]``; ``stages_pre``, for the zoo's
  CIFAR family; other teachers give their post-activation stages) plus the pooled vector;
- ABF channels and sizes from the probed taps (mdistiller's IN/OUT_CHANNELS, SHAPES, OUT_SHAPES written out
  per pair), mid channels min(512, C of the pooled vector);
- L = ``ce_weight``·CE + ``weight``·min(e / ``warmup``, 1)·HCL, CE weight 1, REVIEWKD_WEIGHT 5 (the CIFAR-100
  config; cfg.py's default is 1, used for ImageNet with warm-up 1), warm-up 20 epochs, e the 1-based epoch as
  mdistiller's trainer counts it (constant within an epoch).
``weight`` differs by data set in mdistiller's configs (5 on CIFAR-100, 1 on ImageNet) and per pair in the authors'
dvlab-research/ReviewKD ``CIFAR-100/script/reviewKD.sh`` (0.6 resnet56→resnet20, 1 resnet110→resnet32, 8
resnet32x4→ShuffleV2, 5 elsewhere): grids set it (``cifar100_leaders``). The authors' own trainer warms up with
the 0-based epoch (weight 0 in the first epoch) and lr 0.1; mdistiller's 1-based form is followed here.
"""
from __future__ import annotations

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.components.fusion import ReviewFusion, hcl_loss
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand
from kdsuite.zoo.cifar.common import CifarNet


@register_method
class ReviewKD(Distiller):
    name = "reviewkd"
    display_name = "ReviewKD"
    category = "feature"
    check_discrepancy = "terms"  # a feature term: the kit measures it on fresh batches, not the logits' KL
    scheme = "offline"
    paper = "Chen et al. 2021, Distilling Knowledge via Knowledge Review (CVPR)"
    equation = "ce_weight·CE + weight·min(e/warmup,1)·Σ_i HCL(ABF_i(F_s^i, deeper), F_t^i)"
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): review 0.792 (3.74 / 4.73)
    scale_band = {"review": ScaleBand.around(0.792, "weight")}
    hparams = {
        "weight": HParam(5.0, low=0.0, doc="weight of the HCL term (mdistiller's REVIEWKD_WEIGHT; CIFAR-100 5)"),
        "ce_weight": HParam(1.0, low=0.0, doc="weight of the cross-entropy"),
        "warmup": HParam(20.0, low=0.0, doc="epochs of linear warm-up of the weight, min(e/warmup, 1) with e the "
                                            "1-based epoch; 0: none"),
        "max_mid_channel": HParam(512, low=1, doc="cap of the ABF middle channels"),
    }
    smoke_hparams = {"warmup": 0.0}  # the warm-up would make the logged term grow by design
    student_taps = ("stages", "pool")

    def __init__(self, student, teachers, hp, ctx):
        self.teacher_taps = ("stages_pre", "pool") if teachers and isinstance(teachers[0], CifarNet) else ("stages", "pool")
        super().__init__(student, teachers, hp, ctx)
        self.require_paired_stages()
        s_shapes, t_shapes = self.student_shapes(), self.teacher_shapes()
        self.s_keys = [k for k in self.s_taps if k != "pool"] + ["pool"]
        self.t_keys = [k for k in self.t_taps[0] if k != "pool"] + ["pool"]

        def chw(shape):
            return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)
        s_chw, t_chw = [chw(s_shapes[k]) for k in self.s_keys], [chw(t_shapes[k]) for k in self.t_keys]
        bad = [(k, s) for k, s in zip(self.s_keys + self.t_keys, s_chw + t_chw) if len(s) != 3]
        if bad:
            raise ConfigError(f"method 'reviewkd': needs (C, H, W) stage features; got {bad}")
        self.fusion = ReviewFusion([c for c, _, _ in s_chw], [c for c, _, _ in t_chw], [(h, w) for _, h, w in t_chw],
                                   hp.max_mid_channel)

    def warmup_weight(self) -> float:
        return min((self.progress.epoch + 1) / self.hp.warmup, 1.0) if self.hp.warmup > 0 else 1.0

    @staticmethod
    def _maps_in_order(feats, keys):
        return [feats[k] if feats[k].dim() == 4 else feats[k].reshape(feats[k].shape[0], -1, 1, 1) for k in keys]

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        fused = self.fusion(self._maps_in_order(sf, self.s_keys))
        hcl = hcl_loss(fused, self._maps_in_order(tf, self.t_keys))
        return {"ce": self.hp.ce_weight * losses.ce(s_logits, y),
                "review": self.hp.weight * self.warmup_weight() * hcl}


