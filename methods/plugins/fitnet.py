"""``fitnet``: FitNets, the paper's two-stage recipe (hint training, then knowledge distillation).

Paper: Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep Nets", ICLR 2015
(arXiv 1412.6550), §2.2–2.3 and Algorithm 1.
- Stage ``hint`` (``hint_epochs`` epochs, RepDistiller's ``init_epochs`` = 30 by default), Eq. (3):
  L_HT(W_Guided, W_r) = ½‖u_h(x; W_Hint) − r(v_g(x; W_Guided); W_r)‖², batch mean of the per-sample
  squared norm. Only the student's layers up to the guided layer (stem + stages 1..k, run with
  ``CifarNet.traverse(stop_at=k)``) and the regressor r are trained; the later stages and the
  classifier are not run and do not change.
- Stage ``main``: the whole student is trained with the paper's KD objective, Eq. (2):
  L_KD(W_S) = H(y, P_S) + λ·H(P_T^τ, P_S^τ) (cross-entropies, no τ² factor), with λ annealed
  linearly over the stage from ``lambda_start`` to ``lambda_end`` (the paper anneals λ during
  training; 4 → 1 by default) and τ = ``T`` = 4 (this suite's KD temperature; the paper's own
  value differs per data set). The regressor is not used any more.
The guided/hint layers are the middle stage (``hint_layer`` = 2, RepDistiller's choice). The
regressor is RepDistiller's ConvReg: conv + BN + ReLU where the conv is a 3×3 stride-2 conv when the
student map is twice the teacher's size, a 4×4 stride-2 transposed conv when half, else a "valid"
conv of kernel (1 + H_s − H_t, 1 + W_s − W_t) (1×1 for equal sizes); a student map smaller than
the teacher's (other than half) cannot be mapped and raises ConfigError naming both shapes.
RepDistiller's one-stage variant (CE + 100·MSE, no hint stage, no KD) is ``fitnet_1stage``.
``standardize`` z-scores both logit vectors in the soft term (Sun et al., CVPR 2024).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.components.connectors import conv_regressor
from kdsuite.methods.base import Distiller, OptimGroup, Stage
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.scale import ScaleBand
from kdsuite.methods.registry import register_method


def hint_loss(reg_out: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """FitNets Eq. (3): ½‖u_h − r(v_g)‖² per sample, averaged over the batch."""
    return 0.5 * (reg_out - hint).pow(2).flatten(1).sum(1).mean()


@register_method
class FitNet(Distiller):
    name = "fitnet"
    display_name = "FitNet"
    category = "feature"
    scheme = "offline"
    paper = "Romero et al. 2015, FitNets: Hints for Thin Deep Nets (ICLR)"
    equation = "stage 1: ½‖u_h − r(v_g)‖² (Eq. 3); stage 2: H(y,P_S) + λ·H(P_T^τ,P_S^τ) (Eq. 2)"
    # term / CE at step 0 of stage main, test_parity_scale (resnet32x4→8x4, 32×32, 2026-12-04):
    # kd 3.9 (18.52 / 4.75 at λ 4); the hint stage has no CE
    scale_band = {"kd": ScaleBand.around(3.9, "lambda_start")}
    hparams = {
        "hint_layer": HParam(2, low=1, doc="stage index of the guided (student) and hint (teacher) layers"),
        "hint_epochs": HParam(30, low=0, doc="epochs of the hint stage (RepDistiller's init_epochs)"),
        "T": HParam(4.0, low=0.0, low_open=True, doc="temperature τ of the KD stage"),
        "lambda_start": HParam(4.0, low=0.0, doc="weight λ of the soft cross-entropy at the start of stage 2"),
        "lambda_end": HParam(1.0, low=0.0, doc="λ at the end of stage 2 (linear annealing)"),
        "ce_weight": HParam(1.0, low=0.0, doc="weight of the hard-label cross-entropy in stage 2"),
        "standardize": HParam(False, doc="z-score logits before the softmax (Sun et al. 2024)"),
    }
    # constant λ in smoke runs: the logged soft term then falls only if the student learns
    smoke_hparams = {"hint_epochs": 1, "lambda_start": 1.0, "lambda_end": 1.0}
    distill_terms = ("kd",)
    stage_hparams = ("hint_layer",)

    def __init__(self, student, teachers, hp, ctx):
        self.student_taps = (f"feat{hp.hint_layer}",)
        self.teacher_taps = ()  # paired below: the same stage number in one family, nearest relative depth across
        super().__init__(student, teachers, hp, ctx)
        self.t_taps[0] = [self.paired_teacher_tap(self.s_taps[0])]
        if not hasattr(student, "traverse") and hp.hint_epochs > 0:
            raise ConfigError(f"method '{self.name}': the hint stage needs a zoo CIFAR-family student (traverse with "
                              f"stop_at); {type(student).__name__} has none — set hint_epochs = 0")
        self.key_s, self.key_t = self.s_taps[0], self.t_taps[0][0]
        self.regressor = conv_regressor(self.student_shapes()[self.key_s], self.teacher_shapes()[self.key_t], self.name)

    # ---- stages and parameter groups -----------------------------------------------------
    def stages(self):
        hint = [Stage("hint", self.hp.hint_epochs, optimizers=["hint"], evaluate=False,
                       step=self.hint_step)] if self.hp.hint_epochs else []
        return hint + [Stage("main", self.ctx.epochs, optimizers=["student"])]

    def guided_parameters(self):
        """The student's parameters up to (and including) the guided layer."""
        k = self.hp.hint_layer
        return list(self.student.stem.parameters()) + [p for st in self.student.stages[:k] for p in st.parameters()]

    def optim_groups(self):
        groups = {"student": OptimGroup([p for p in self.student.parameters() if p.requires_grad])}
        if self.hp.hint_epochs:
            groups["hint"] = OptimGroup(self.guided_parameters() + list(self.regressor.parameters()))
        return groups

    # ---- losses --------------------------------------------------------------------------
    def hint_step_losses(self, x):
        _, post, _, _ = self.student.traverse(x, stop_at=self.hp.hint_layer)
        _, tf = self.teacher_forward(x)
        return {"hint": hint_loss(self.regressor(post[self.hp.hint_layer]), tf[self.key_t])}

    def lam(self) -> float:
        frac = min(max(self.progress.epoch_float / max(self.ctx.epochs, 1), 0.0), 1.0)
        return self.hp.lambda_start + (self.hp.lambda_end - self.hp.lambda_start) * frac

    def forward_train(self, x, y):
        s = self.student(x)
        t, _ = self.teacher_forward(x)
        s_kd, t_kd = (losses.standardize_logits(s), losses.standardize_logits(t)) if self.hp.standardize else (s, t)
        soft = losses.ce(s_kd / self.hp.T, F.softmax(t_kd / self.hp.T, dim=1))  # H(P_T^τ, P_S^τ)
        return {"ce": self.hp.ce_weight * losses.ce(s, y), "kd": self.lam() * soft}

    def hint_step(self, batch, trainer):
        """The hint stage's step: the hint loss alone trains the guided layers and the regressor."""
        out = self.hint_step_losses(batch[0])
        trainer.optimize("hint", out)
        return out
