"""KD against RepDistiller's DistillKL and train_student.py weights (-r 0.1 -a 0.9, kd_T 4), float64 loops."""
import math

import pytest
import torch

from kdsuite.testing import make


def _log_softmax(v):
    m = max(v)
    lse = m + math.log(sum(math.exp(a - m) for a in v))
    return [a - lse for a in v]


def test_kd_default_is_repdistillers_recipe():
    """L = 0.1·CE + 0.9·T²·(1/B)·Σ_i Σ_c p_t log(p_t/p_s) at T = 4 (sum over classes, batch mean)."""
    torch.manual_seed(0)
    m = make("kd")
    assert (m.hp.T, m.hp.alpha, m.hp.standardize) == (4.0, 0.1, False)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 3, 5, 9])
    out = m.forward_train(x, y)
    s = m.student(x).detach().double().tolist()  # BN in train mode: the same batch gives the same logits
    t = m.teacher(x).double().tolist()
    T, kl, ce = 4.0, 0.0, 0.0
    for i in range(4):
        ls, lt = _log_softmax([v / T for v in s[i]]), _log_softmax([v / T for v in t[i]])
        kl += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
        ce -= _log_softmax(s[i])[int(y[i])]
    assert out["kd"].item() == pytest.approx(0.9 * T * T * kl / 4, rel=1e-5)
    assert out["ce"].item() == pytest.approx(0.1 * ce / 4, rel=1e-5)


def test_kd_imagenet_setting_of_mdistiller():
    """configs/imagenet/r34_r18/kd.yaml: T 1, CE 0.5, KD 0.5 (the imagenet_r34_r18 grid's override)."""
    torch.manual_seed(1)
    m = make("kd", T=1.0, alpha=0.5)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 2, 3])
    out = m.forward_train(x, y)
    s, t = m.student(x).detach().double().tolist(), m.teacher(x).double().tolist()
    kl = sum(sum(math.exp(b) * (b - a) for a, b in zip(_log_softmax(s[i]), _log_softmax(t[i]))) for i in range(3))
    assert out["kd"].item() == pytest.approx(0.5 * kl / 3, rel=1e-5)
