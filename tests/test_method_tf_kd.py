import math

import pytest
import torch

from kdsuite.testing import make


def _reference(z, y, K, a, T, soften_student):
    """Per-sample mean of (CE, KL(softmax(p^d/T) ‖ softmax(z or z/T))) with explicit loops (float64)."""
    ce = reg = 0.0
    for i in range(len(y)):
        pd = [a if k == int(y[i]) else (1 - a) / (K - 1) for k in range(K)]
        e = [math.exp(v / T) for v in pd]
        target = [v / sum(e) for v in e]
        zq = [float(v) / (T if soften_student else 1.0) for v in z[i]]
        lse = math.log(sum(math.exp(v) for v in zq))
        reg += sum(p * (math.log(p) - (v - lse)) for p, v in zip(target, zq))
        lse1 = math.log(sum(math.exp(float(v)) for v in z[i]))
        ce += lse1 - float(z[i, int(y[i])])
    return ce / len(y), reg / len(y)


def test_tf_kd_default_is_the_authors_loss_kd_regularization():
    """my_loss_function.py: (1 − α)·CE + α·m·KLDivLoss()(log_softmax(z), softmax(p^d/T)), KLDivLoss
    averaging over batch and classes; ResNet-18 CIFAR-100 params.json: α 0.1, T 20, m 100; a = 0.99."""
    torch.manual_seed(0)
    m = make("tf_kd")
    assert (m.hp.a, m.hp.alpha, m.hp.T, m.hp.multiplier, m.hp.variant) == (0.99, 0.1, 20.0, 100.0, "code")
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 4, 9])
    out = m.forward_train(x, y)
    z = m.student(x).detach().double()
    K = 10
    ce, kl = _reference(z, y, K, 0.99, 20.0, soften_student=False)
    assert out["ce"].item() == pytest.approx(0.9 * ce, rel=1e-5)
    # element-wise mean over B×K of the KL terms = batch-mean KL / K
    assert out["reg"].item() == pytest.approx(0.1 * 100.0 * kl / K, rel=1e-5)


def test_tf_kd_paper_variant_softens_the_student_and_scales_by_t_squared():
    torch.manual_seed(0)
    m = make("tf_kd", a=0.9, alpha=0.3, T=5.0, variant="paper")
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 4, 9])
    out = m.forward_train(x, y)
    z = m.student(x).detach().double()
    ce, kl = _reference(z, y, 10, 0.9, 5.0, soften_student=True)
    assert out["ce"].item() == pytest.approx(0.7 * ce, rel=1e-5)
    assert out["reg"].item() == pytest.approx(0.3 * 25.0 * kl, rel=1e-3)  # a small KL in float32


def test_tf_kd_rejects_an_unknown_variant():
    from kdsuite.core.errors import ConfigError

    with pytest.raises(ConfigError, match="variant"):
        make("tf_kd", variant="blog")
