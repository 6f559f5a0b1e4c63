"""``apprentice``: a low-precision student (ternary / 4-bit weights, low-bit activations) taught by a
full-precision teacher.

Paper: Mishra & Marr, "Apprentice: Using Knowledge Distillation Techniques To Improve Low-Precision
Network Accuracy", ICLR 2018 (arXiv 1711.05852; survey §5.7), §4. Loss for teacher T and apprentice A:

    L(x; W_T, W_A) = α·H(y, p^T) + β·H(y, p^A) + γ·H(z^T, p^A)

with H the cross-entropy and z^T the teacher's soft targets; α = 1, β = 0.5, γ = 0.5, temperature 1.
Scheme B (a trained, frozen teacher) is what this plugin runs, so the α term is a constant and is left
out. The apprentice is quantised as in WRPN (Mishra et al. ICLR 2018), which the paper uses: weights
clamped to [−1, 1] with b_w − 1 magnitude bits and a sign (b_w = 2: ternary), activations clamped to
[0, 1] with b_a bits, the first and the last layer kept at full precision; straight-through gradients.
No reference code was released; the quantiser is the WRPN formula, written here with torch's
fake-quant op (``methods/lowbit.py``). Defaults: 4-bit weights, 8-bit activations (one of the paper's
ResNet settings). At the end of a run the student is converted to a real int8 model on CPU
(``int8_eval``) and recorded beside the fake-quantised accuracy.
"""
from __future__ import annotations

import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.hparams import HParam
from kdsuite.methods.components.lowbit import WrpnWeight, quantize_student
from kdsuite.methods.components.lowbit import BITS_A, QuantizedStudent
from kdsuite.methods.registry import register_method


@register_method
class Apprentice(QuantizedStudent):
    name = "apprentice"
    display_name = "Apprentice"
    category = "quantized"
    scheme = "offline"
    paper = "Mishra & Marr 2018, Apprentice: Using KD Techniques To Improve Low-Precision Network Accuracy (ICLR)"
    equation = "β·H(y, p^A) + γ·H(σ(z^T/τ), p^A), WRPN weights/activations, first/last layer full precision"
    hparams = {
        "bits_w": HParam(4, low=2, high=8, doc="weight bits (2 = ternary)"),
        "bits_a": HParam(8, choices=BITS_A, doc="activation bits; 32 = full precision"),
        "beta": HParam(0.5, low=0.0, doc="weight of the hard-label cross-entropy"),
        "gamma": HParam(0.5, low=0.0, doc="weight of the cross-entropy with the teacher's soft targets"),
        "T": HParam(1.0, low=0.0, low_open=True, doc="softmax temperature of both distributions in the γ term"),
        "int8_eval": HParam(True, doc="convert the trained student to int8 (torch.ao, CPU) and record it"),
    }

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.act_quant = quantize_student(self.student, ctx.input_shape, lambda: WrpnWeight(hp.bits_w), hp.bits_a, "wrpn",
                                          skip_first_last=True)

    def forward_train(self, x, y):
        t_logits, _ = self.teacher_forward(x)
        s_logits = self.student(x)
        soft = F.softmax(t_logits / self.hp.T, dim=1)
        return {"ce": self.hp.beta * losses.ce(s_logits, y),
                "apprentice": self.hp.gamma * losses.ce(s_logits / self.hp.T, soft)}
