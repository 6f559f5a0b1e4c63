"""``qkd``: quantized distillation — a low-precision student trained on a full-precision teacher's soft targets.

Paper: Polino, Pascanu & Alistarh, "Model compression via distillation and quantization", ICLR 2018
(arXiv 1802.05668; survey §5.7), §2.1–2.2 (Algorithm 1). The student keeps full-precision weights w;
every forward uses their quantised value Q(w) (uniform quantisation with min-max scaling in buckets of
``bucket`` values, s = 2^``bits_w`` levels, deterministic rounding), the loss is the distillation loss of
Hinton et al. on the quantised network, and its gradient at Q(w) updates w (straight-through):

    L = α·T²·KL(σ(z_T/T) ‖ σ(z_S^Q/T)) + (1 − α)·CE(y, σ(z_S^Q)),   w ← w − η·∂L/∂Q(w)

Defaults follow the authors' code (github.com/antspy/quantized_distillation: cnn_models/help_fun.py and
conv_forward_model.py): α 0.7, T 2, bucket 256, every conv/linear layer quantised (their
``quantize_first_and_last_layer=True``), 4-bit weights (their CIFAR runs use 4 and 2 bits) and
full-precision activations (``bits_a`` 32; 2–8 adds per-tensor affine activation fake quantisation).
Differences: only conv/linear weights are quantised (the reference also quantises biases and BN
parameters; an int8 deployment folds BN and keeps biases in int32), and the KL is Hinton's batch mean
(the reference's nn.KLDivLoss of that time averaged over batch × classes). ``alpha`` 0 trains the same
quantised student on labels only (quantisation-aware training without a teacher).
At the end of a run the student is converted to a real int8 model on CPU (``int8_eval``) and its
accuracy, size and latency are recorded beside the fake-quantised accuracy.
"""
from __future__ import annotations

from kdsuite.methods import losses
from kdsuite.methods.hparams import HParam
from kdsuite.methods.components.lowbit import BITS_A, BucketWeight, QuantizedStudent, quantize_student
from kdsuite.methods.registry import register_method
from kdsuite.methods.scale import ScaleBand

@register_method
class QKD(QuantizedStudent):
    name = "qkd"
    display_name = "QKD"
    category = "quantized"
    scheme = "offline"
    paper = "Polino et al. 2018, Model compression via distillation and quantization (ICLR)"
    equation = "α·T²·KL(σ(z_T/T) ‖ σ(z_S^Q/T)) + (1−α)·CE(y, z_S^Q), Q: bucketed min-max uniform, STE to w"
    # term / CE at step 0, test_parity_scale (resnet32x4→8x4, 32×32, 2026-12-04):
    # kd 5.4 (7.60 / 1.42: α 0.7 against 0.3·CE)
    scale_band = {"kd": ScaleBand.around(5.4, "alpha")}
    hparams = {
        "bits_w": HParam(4, low=2, high=8, doc="weight bits (s = 2^b levels per bucket)"),
        "bits_a": HParam(32, choices=BITS_A, doc="activation bits; 32 = full precision (the paper's setting)"),
        "bucket": HParam(256, low=1, doc="bucket size of the min-max scaling"),
        "T": HParam(2.0, low=0.0, low_open=True, doc="distillation temperature"),
        "alpha": HParam(0.7, low=0.0, high=1.0, doc="weight of the distillation term; 1 − α on the labels"),
        "int8_eval": HParam(True, doc="convert the trained student to int8 (torch.ao, CPU) and record it"),
    }

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.act_quant = quantize_student(self.student, ctx.input_shape, lambda: BucketWeight(hp.bits_w, hp.bucket), hp.bits_a,
                                          "affine", skip_first_last=False)

    def forward_train(self, x, y):
        t_logits, _ = self.teacher_forward(x)
        s_logits = self.student(x)
        out = {"ce": (1.0 - self.hp.alpha) * losses.ce(s_logits, y)}
        if self.hp.alpha > 0:
            out["kd"] = self.hp.alpha * losses.kd_loss(s_logits, t_logits, self.hp.T)
        return out
