import math

import numpy as np
import torch

from kdsuite.methods.plugins.cc import cc_loss, taylor_rbf_correlation
from kdsuite.testing import make


def _normalise(a):
    a = a.astype(np.float64)
    return a / np.sqrt((a * a).sum(1, keepdims=True))


def _cc_reference(es, et, gamma, order):
    """Peng et al. 2019: C_ij = Σ_{p≤P} e^{−2γ}(2γ)^p/p!·(e_iᵀe_j)^p, L = ‖C_T − C_S‖_F² / b²."""
    b = es.shape[0]

    def corr(e):
        return [[sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * float(np.dot(e[i], e[j])) ** p
                     for p in range(order + 1)) for j in range(b)] for i in range(b)]

    cs, ct = corr(es), corr(et)
    return sum((ct[i][j] - cs[i][j]) ** 2 for i in range(b) for j in range(b)) / b ** 2


def test_taylor_kernel_converges_to_the_gaussian_rbf():
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=1)
    got = taylor_rbf_correlation(e, 0.4, 25)
    for i in range(4):
        for j in range(4):
            d2 = float(((e[i] - e[j]) ** 2).sum())
            assert abs(got[i, j].item() - math.exp(-0.4 * d2)) < 1e-12


def test_cc_loss_on_fixed_tensors_matches_the_paper():
    g = torch.Generator().manual_seed(2)
    es = _normalise(torch.randn(5, 4, generator=g).numpy())
    et = _normalise(torch.randn(5, 4, generator=g).numpy())
    for gamma, order in [(0.4, 2), (1.0, 3)]:
        got = cc_loss(torch.from_numpy(es), torch.from_numpy(et), gamma, order).item()
        assert abs(got - _cc_reference(es, et, gamma, order)) < 1e-12


def test_cc_plugin_embeds_the_student_and_weights_002():
    torch.manual_seed(0)
    m = make("cc", teachers=("cifar_resnet32x4",))
    x, y = torch.randn(6, 3, 16, 16), torch.arange(6)
    out = m.forward_train(x, y)
    s_logits, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    es = _normalise(m.embed_s(sf["pool"]).detach().numpy())
    et = _normalise(tf["pool"].numpy())
    want = 0.02 * _cc_reference(es, et, 0.4, 2)
    assert abs(out["cc"].item() - want) < 1e-4 * want
    assert m.embed_s.out_features == 128
