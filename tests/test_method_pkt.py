import math

import numpy as np
import torch

from kdsuite.methods.plugins.pkt import pkt_loss
from kdsuite.testing import make


def _pkt_reference(fs, ft, eps=1e-7):
    """Passalis & Tefas 2018 with the cosine kernel ½(cos + 1): p_{i|j} = K(x_i, x_j) / Σ_{k≠j} K(x_k, x_j),
    L = Σ_j Σ_{i≠j} p_{i|j} log(p_{i|j} / q_{i|j}), divided by b² (float64 loops)."""
    b = fs.shape[0]

    def cond(f):
        f = f.reshape(b, -1).astype(np.float64)
        k = lambda a, c: 0.5 * (float(np.dot(a, c)) / (math.sqrt(np.dot(a, a)) * math.sqrt(np.dot(c, c))) + 1.0)
        p = {}
        for j in range(b):
            den = sum(k(f[l], f[j]) for l in range(b) if l != j)
            for i in range(b):
                if i != j:
                    p[(i, j)] = k(f[i], f[j]) / den
        return p

    p, q = cond(ft), cond(fs)
    return sum(p[key] * math.log((p[key] + eps) / (q[key] + eps)) for key in p) / b ** 2


def test_pkt_loss_on_fixed_tensors_matches_the_paper():
    g = torch.Generator().manual_seed(1)
    fs, ft = torch.randn(5, 7, generator=g), torch.randn(5, 3, generator=g)
    got = pkt_loss(fs.double(), ft.double()).item()
    want = _pkt_reference(fs.numpy(), ft.numpy())
    assert abs(got - want) < 1e-5 * want  # the implementation's ε = 1e-7 in the norms only
    assert pkt_loss(ft.double(), ft.double()).item() < 1e-9  # identical relations: no divergence


def test_pkt_plugin_on_pooled_features_with_weight_30000():
    torch.manual_seed(0)
    m = make("pkt", teachers=("cifar_wrn_16_1",))
    x, y = torch.randn(6, 3, 16, 16), torch.arange(6)
    out = m.forward_train(x, y)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    want = 30000.0 * _pkt_reference(sf["pool"].detach().numpy(), tf["pool"].numpy())
    assert abs(out["pkt"].item() - want) < 1e-3 * max(1.0, want)
