import math

import numpy as np
import torch

from kdsuite.methods.plugins.dkd import dkd_terms
from kdsuite.testing import make


def _sm(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def test_dkd_terms_match_the_paper():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 4])
    T = 2.0
    tck, nck = [], []
    for i in range(3):
        ps, pt = _sm(s[i].numpy() / T), _sm(t[i].numpy() / T)
        c = int(y[i])
        bs, bt = [ps[c], 1 - ps[c]], [pt[c], 1 - pt[c]]
        tck.append(sum(bt[k] * math.log(bt[k] / bs[k]) for k in range(2)))
        others = [k for k in range(5) if k != c]
        qs = np.array([ps[k] for k in others]) / (1 - ps[c])
        qt = np.array([pt[k] for k in others]) / (1 - pt[c])
        nck.append(float((qt * np.log(qt / qs)).sum()))
    a, b = dkd_terms(s, t, y, T)
    assert a.item() == math.fsum(tck) / 3 or abs(a.item() - np.mean(tck)) < 1e-9
    assert abs(b.item() - np.mean(nck)) < 1e-9
    # the paper's identity: KD = TCKD + (1 − p_t^T)·NCKD, per sample
    for i in range(3):
        ps, pt = _sm(s[i].numpy() / T), _sm(t[i].numpy() / T)
        kd = float((pt * np.log(pt / ps)).sum())
        c = int(y[i])
        assert abs(kd - (tck[i] + (1 - pt[c]) * nck[i])) < 1e-9


def test_dkd_warmup_scales_the_distillation_term():
    m = make("dkd", warmup=4.0)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    m.progress.epoch_float = 1.0
    one = m.forward_train(x, y)["dkd"].item()
    m.progress.epoch_float = 2.0
    two = m.forward_train(x, y)["dkd"].item()
    m.progress.epoch_float = 9.0
    full = m.forward_train(x, y)["dkd"].item()
    assert abs(two / one - 2.0) < 1e-4 and abs(full / one - 4.0) < 1e-4
