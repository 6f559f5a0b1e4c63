import math

import pytest
import torch

from methods.hparams import ConfigError
from tests.method_helpers import make


def _ce(z, c):
    return math.log(sum(math.exp(float(v)) for v in z)) - float(z[c])


def _kl(p_logits, q_logits, T):
    p = [math.exp(float(v) / T) for v in p_logits]
    q = [math.exp(float(v) / T) for v in q_logits]
    p, q = [v / sum(p) for v in p], [v / sum(q) for v in q]
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_byot_losses_match_the_paper_and_every_exit_is_evaluated():
    torch.manual_seed(0)
    m = make("byot", student="cifar_resnet8")
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 2, 3])
    m.train()
    out = m.forward_train(x, y)
    assert m.exit_taps == ["feat1", "feat2"]
    m.eval()  # BN in eval mode for the reference (batch statistics would differ between passes)
    out = m.forward_train(x, y)
    z, f = m.student_forward(x)
    T, a, lam = 3.0, 0.3, 0.03
    for i, k in enumerate(m.exit_taps, start=1):
        zi, fi = m.exits[i - 1](f[k])
        ce = sum(_ce(zi[b], int(y[b])) for b in range(3)) / 3
        kd = sum(_kl(z[b], zi[b], T) for b in range(3)) / 3 * T * T
        hint = sum(float(((fi[b] - f["pool"][b]) ** 2).sum()) for b in range(3)) / 3
        assert out[f"ce{i}"].item() == pytest.approx((1 - a) * ce, rel=1e-5)
        assert out[f"kd{i}"].item() == pytest.approx(a * kd, rel=1e-4)
        assert out[f"hint{i}"].item() == pytest.approx(lam * hint, rel=1e-5)
    models = m.eval_models()
    assert set(models) == {"student", "exit1", "exit2"}
    with torch.no_grad():
        zi, _ = m.exits[0](f["feat1"])
        assert torch.allclose(models["exit1"](x), zi, atol=1e-5)
    # the deepest exit's targets are constants: the shallow terms do not train the layers after their stage
    m.train()
    m.zero_grad()
    out = m.forward_train(x, y)
    out["kd1"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.student.stages[-1].parameters())
    assert m.exits[0].fc.weight.grad is not None


def test_byot_needs_a_zoo_cifar_model():
    with pytest.raises(ConfigError, match="cifar"):
        make("byot", student="test_efficientnet_gn")
