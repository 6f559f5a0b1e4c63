"""``nas_kd``: a search candidate scored by its accuracy after a short distillation (NAS-based, §5.9).

Paper: Liu et al., "Search to Distill: Pearls are Everywhere but not the Eyes", CVPR 2020 (arXiv
1911.09074), §3: the reward that ranks a candidate architecture is the validation accuracy it reaches
when trained *with the teacher's knowledge* (KD), not alone — the architecture best for distillation is
not the one best for plain training. The authors released no code; the default follows the paper.
Equation (the proxy training, the KD loss of Hinton et al.): L = α·CE + (1 − α)·T²·KL(σ(z_t/T) ‖ σ(z_s/T));
score = top-1 (%) of the trained candidate on the validation split. The search itself (RL controller
over a cell space in the paper) is here a grid stage over the candidates the user lists.
"""
from __future__ import annotations

from kdsuite.methods import losses
from kdsuite.methods.components.search import SCORE, SearchProxy, accuracy, validation_batches
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


@register_method
class NASKD(SearchProxy):
    name = "nas_kd"
    display_name = "NAS-KD"
    scheme = "offline"
    paper = "Liu et al. 2020, Search to Distill: Pearls are Everywhere but not the Eyes (CVPR)"
    equation = "proxy: α·CE + (1−α)·T²·KL(σ(z_t/T) ‖ σ(z_s/T)); score = validation top-1 after the proxy"
    hparams = {
        "T": HParam(4.0, low=0.0, low_open=True, doc="softmax temperature of the proxy's KD term"),
        "alpha": HParam(0.1, low=0.0, high=1.0, doc="weight of the hard-label cross-entropy"),
    }

    def forward_train(self, x, y):
        t_logits, _ = self.teacher_forward(x)
        s_logits = self.student(x)
        out = {"kd": (1.0 - self.hp.alpha) * losses.kd_loss(s_logits, t_logits, self.hp.T)}
        if self.hp.alpha > 0:
            out["ce"] = self.hp.alpha * losses.ce(s_logits, y)
        return out

    def search_score(self, parts):
        top1, n = accuracy(self.student, validation_batches(parts, self.name))
        return {SCORE: top1, "search_images": n}
