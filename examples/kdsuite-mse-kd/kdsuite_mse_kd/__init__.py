"""``mse_kd``: logit matching with the mean squared error, packaged as a third-party kdsuite plugin.

Paper: Kim, Oh, Kim, Cho & Yun, "Comparing Kullback-Leibler Divergence and Mean Squared Error Loss in
Knowledge Distillation", IJCAI 2021 — its logit-matching objective: instead of the KL divergence between
softened outputs, the student's logits z_s regress the teacher's logits z_t directly,

    L = (1 − α)·CE(softmax(z_s), y) + α·‖z_s − z_t‖²,

with ‖·‖² averaged over the batch and the classes (their code's ``nn.MSELoss()``); α = 1 is the paper's
pure logit matching. Reference code: the authors' repository (jhoon-oh/kd_data), whose default this follows.

Importing this module registers the method: kdsuite finds it through the ``kdsuite.methods`` entry point
declared in ``pyproject.toml``.
"""
import torch.nn.functional as F

from kdsuite.methods import Distiller, HParam, register_method
from kdsuite.methods import losses


@register_method
class MSEKD(Distiller):
    name = "mse_kd"
    display_name = "KD (MSE)"
    category = "response"
    scheme = "offline"
    paper = "Kim et al. 2021, Comparing KL Divergence and MSE Loss in Knowledge Distillation (IJCAI)"
    equation = "(1 − α)·CE + α·mean_{b,c}(z_s − z_t)²"
    hparams = {"alpha": HParam(1.0, low=0.0, high=1.0, doc="weight of the logit regression (1: no CE)")}
    distill_terms = ("mse",)

    def forward_train(self, x, y):
        s_logits = self.student(x)
        t_logits, _ = self.teacher_forward(x)
        out = {"mse": self.hp.alpha * F.mse_loss(s_logits, t_logits)}
        if self.hp.alpha < 1.0:
            out["ce"] = (1.0 - self.hp.alpha) * losses.ce(s_logits, y)
        return out
