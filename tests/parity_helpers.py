"""Loss-scale parity on a real CIFAR-100 pair at initialisation.

Builds a plugin around a freshly initialised ``cifar_resnet32x4`` teacher and ``cifar_resnet8x4``
student (100 classes, 32×32 inputs, seeded), runs ONE ``forward_train`` on a fixed seeded batch and
records what the plugin's student and teacher forwards returned, so that a test can recompute the
reference loss independently (float64 numpy) on exactly those outputs and compare term/CE ratios.
"""
import numpy as np
import torch

from kdsuite import zoo
from kdsuite.methods.base import BuildContext
from kdsuite.methods.hparams import resolve_hparams
from kdsuite.methods.registry import get_method

BATCH = 16


def real_pair(name, num_train=50000, train_labels=None, **hp):
    cls = get_method(name)
    torch.manual_seed(0)
    student = zoo.create_model("cifar_resnet8x4", num_classes=100)
    teacher = zoo.create_model("cifar_resnet32x4", num_classes=100).eval().requires_grad_(False)
    ctx = BuildContext(num_classes=100, input_shape=(3, 32, 32), epochs=240, steps_per_epoch=782, batch_size=64,
                       num_train=num_train, train_labels=train_labels)
    return cls(student, [teacher], resolve_hparams(cls.name, cls.hparams, hp), ctx)


def fixed_batch(n: int = BATCH):
    """``n`` seeded CIFAR-100-shaped images and labels."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 100, (n,), generator=g)


def forward_once(m, x, y):
    """``m.forward_train(x, y)`` with the student's and teacher's outputs recorded (float64 numpy):
    returns (losses as floats, {"s_logits", "t_logits", "s_<tap>", "t_<tap>": array})."""
    seen = {}
    s_fwd, t_fwd = m.student_forward, m.teacher_forward

    def rec(prefix, fn):
        def wrapped(inp, *a, **k):
            logits, feats = fn(inp, *a, **k)
            seen[prefix + "logits"] = logits.detach().double().numpy()
            for tap, v in feats.items():
                seen[prefix + tap] = v.detach().double().numpy()
            return logits, feats
        return wrapped

    m.student_forward, m.teacher_forward = rec("s_", s_fwd), rec("t_", t_fwd)
    m.train()
    try:
        out = m.forward_train(x, y)
    finally:
        del m.student_forward, m.teacher_forward
    return {k: float(v.detach()) for k, v in out.items()}, seen


def ce64(logits, y):
    """Mean cross-entropy in float64 numpy (log-sum-exp with the row maximum subtracted)."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), np.asarray(y)]))
