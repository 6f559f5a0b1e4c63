import math

import pytest
import torch

from kdsuite.testing import make


def _ce(z, c):
    return math.log(sum(math.exp(float(v)) for v in z)) - float(z[c])


def _kl_T(t, s, T):
    pt = [math.exp(float(v) / T) for v in t]
    ps = [math.exp(float(v) / T) for v in s]
    pt = [v / sum(pt) for v in pt]
    ps = [v / sum(ps) for v in ps]
    return sum(a * math.log(a / b) for a, b in zip(pt, ps))


def test_confidence_weights_and_loss_match_the_paper():
    torch.manual_seed(0)
    m = make("ca_mkd", teachers=("cifar_resnet20", "cifar_wrn_16_1"))
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([2, 5, 7])
    out = m.forward_train(x, y)
    s_logits, sf = m.student_forward(x)
    s_logits = s_logits.detach()
    touts = [m.teacher_forward(x, k) for k in range(2)]
    K, B, T = 2, 3, 4.0
    kd = feat = 0.0
    for b in range(B):
        ces = [_ce(touts[k][0][b], int(y[b])) for k in range(K)]
        e = [math.exp(c) for c in ces]
        w = [(1 - v / sum(e)) / (K - 1) for v in e]
        assert sum(w) == pytest.approx(1.0)
        for k in range(K):
            kd += w[k] * T * T * _kl_T(touts[k][0][b], s_logits[b], T)
            a = m.adapters[k](sf["feat3"]).detach()[b]
            t = touts[k][1]["feat3"][b]
            feat += w[k] * float(((a - t) ** 2).mean())
    assert out["kd"].item() == pytest.approx(1.0 * kd / (B * K), rel=1e-4)
    assert out["feat"].item() == pytest.approx(50.0 * feat / (B * K), rel=1e-4)
    # the more confident teacher on a sample gets the larger weight
    from kdsuite.methods.plugins.ca_mkd import confidence_weights

    good = torch.tensor([[5.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    w = confidence_weights(good, torch.tensor([0]))
    assert w[0, 0] > 0.5 > w[1, 0]
