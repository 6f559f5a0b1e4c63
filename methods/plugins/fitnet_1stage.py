"""``fitnet_1stage``: RepDistiller's one-stage FitNets ("hint" in its CIFAR-100 table).

Paper: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015 (arXiv 1412.6550), Eq. (3) used as a
loss term throughout training instead of a separate stage; recipe of Tian, Krishnan & Isola,
"Contrastive Representation Distillation", ICLR 2020 (RepDistiller, ``--distill hint -r 1 -a 0 -b 100``):
    L = CE(y, σ(z_s)) + β·MSE(r(v_g), u_h),  β = 100,
MSE averaged over all elements (RepDistiller's HintLoss = nn.MSELoss), no KD term. Guided/hint layer
= the middle stage (``hint_layer`` = 2) and the regressor r is RepDistiller's ConvReg (conv + BN +
ReLU; see :func:`kdsuite.methods.components.connectors.conv_regressor`), trained jointly with the student.
"""
from __future__ import annotations

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.components.connectors import conv_regressor
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand


@register_method
class FitNetOneStage(Distiller):
    name = "fitnet_1stage"
    display_name = "FitNet (1-stage)"
    check_discrepancy = "terms"  # the kit measures its own term on fresh batches (a feature/relation term)
    category = "feature"
    scheme = "offline"
    paper = "Romero et al. 2015, FitNets (ICLR); one-stage variant of RepDistiller (Tian et al. 2020)"
    equation = "CE + β·MSE(r(v_g), u_h)"
    # term / CE at step 0 in test_parity_scale (resnet32x4→8x4): hint 74.2 (351 / 4.73)
    scale_band = {"hint": ScaleBand.around(74.2, "beta")}
    hparams = {"beta": HParam(100.0, low=0.0, doc="weight of the hint term"),
               "ce_weight": HParam(1.0, low=0.0, doc="weight of the cross-entropy"),
               "hint_layer": HParam(2, low=1, doc="stage index of the guided (student) and hint (teacher) layers")}
    stage_hparams = ("hint_layer",)

    def __init__(self, student, teachers, hp, ctx):
        self.student_taps = (f"feat{hp.hint_layer}",)
        self.teacher_taps = ()  # paired below: the same stage number in one family, nearest relative depth across
        super().__init__(student, teachers, hp, ctx)
        self.t_taps[0] = [self.paired_teacher_tap(self.s_taps[0])]
        self.key_s, self.key_t = self.s_taps[0], self.t_taps[0][0]
        self.regressor = conv_regressor(self.student_shapes()[self.key_s], self.teacher_shapes()[self.key_t], self.name)

    def forward_train(self, x, y):
        s_logits, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        return {"ce": self.hp.ce_weight * losses.ce(s_logits, y),
                "hint": self.hp.beta * losses.mse(self.regressor(sf[self.key_s]), tf[self.key_t])}
