"""``vanilla``: the student trained on labels only — the baseline row of every table.

Paper: none (standard supervised training). Equation: L = CE(y, σ(z_s)).
"""
from __future__ import annotations

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


@register_method
class Vanilla(Distiller):
    name = "vanilla"
    display_name = "Vanilla"
    category = "baseline"
    scheme = "offline"
    paper = "Supervised baseline (no teacher)"
    equation = "L = CE(y, softmax(z_s))"
    num_teachers = 0
    hparams = {"label_smoothing": HParam(0.0, low=0.0, high=1.0, high_open=True,
                                         doc="label smoothing of the cross-entropy")}

    def forward_train(self, x, y):
        logits = self.student(x)
        return {"ce": losses.ce(logits, y, label_smoothing=self.hp.label_smoothing)}
