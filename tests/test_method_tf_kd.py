import math

import pytest
import torch

from kdsuite.testing import make


def test_tf_kd_matches_eq_9_with_the_authors_softened_virtual_teacher():
    torch.manual_seed(0)
    m = make("tf_kd", a=0.9, alpha=0.3, T=5.0)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 4, 9])
    out = m.forward_train(x, y)
    z = m.student(x).detach().double()
    K, T = 10, 5.0
    ce = reg = 0.0
    for i in range(3):
        pd = [0.9 if k == int(y[i]) else 0.1 / (K - 1) for k in range(K)]
        e = [math.exp(v / T) for v in pd]
        target = [v / sum(e) for v in e]
        zq = [float(v) / T for v in z[i]]
        lse = math.log(sum(math.exp(v) for v in zq))
        log_q = [v - lse for v in zq]
        reg += sum(p * (math.log(p) - lq) for p, lq in zip(target, log_q))
        lse1 = math.log(sum(math.exp(float(v)) for v in z[i]))
        ce += lse1 - float(z[i, int(y[i])])
    assert out["ce"].item() == pytest.approx(0.7 * ce / 3, rel=1e-5)
    assert out["reg"].item() == pytest.approx(0.3 * T * T * reg / 3, rel=1e-3)  # a small KL in float32
