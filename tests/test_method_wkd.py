"""WKD against the authors' code (github.com/JiamingLv/WKD, mdistiller/distillers/WKD.py: sinkhorn,
wkd_logit_loss_with_speration, wkd_feature_loss with grid 1, the fc cost and its sharpening, the cosine decay
of the weights; configs/cifar100/wkd_l|wkd_f/res32x4_res8x4.yaml), float64 numpy loops written here."""
import math

import numpy as np
import pytest
import torch

from kdsuite.core.errors import ConfigError
from kdsuite.testing import make


def _np(t):
    return t.detach().double().numpy()


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _ref_cost(w, sharpen=1.0):
    n = w.shape[0]
    c = np.zeros((n, n))
    for j in range(n):
        for k in range(n):
            c[j, k] = 1 - w[j] @ w[k] / (np.linalg.norm(w[j]) * np.linalg.norm(w[k]))
    return 1 - np.exp(-sharpen * c) if sharpen else c


def _ref_wkd_l(s, t, y, cost, gamma, T=8.0, reg=0.05, iters=10):
    """Per sample: −p_t[y]·log p_s[y] + γ·Σ π C over the non-target classes, π from 10 Sinkhorn steps."""
    t_terms, wds = [], []
    for i in range(len(y)):
        c = int(y[i])
        ps, pt = _softmax(s[i]), _softmax(t[i])
        t_terms.append(-pt[c] * math.log(ps[c]))
        keep = [k for k in range(len(s[i])) if k != c]
        a, b = _softmax(s[i][keep] / T), _softmax(t[i][keep] / T)
        C = np.maximum(cost[np.ix_(keep, keep)], 0) + 1e-8
        K = np.exp(-C / reg)
        u = np.full(len(keep), 1.0 / len(keep))
        for _ in range(iters):
            v = b / (K.T @ u + 1e-8)
            u = a / (K @ v + 1e-8)
        plan = u[:, None] * K * v[None, :]
        wds.append(float((plan * C).sum()))
    return np.mean(t_terms) + gamma * np.mean(wds)


def test_wkd_l_matches_the_authors_sinkhorn_and_separation_in_float64():
    torch.manual_seed(0)
    m = make("wkd")
    assert (m.hp.logit_weight, m.hp.T, m.hp.sinkhorn_lambda, m.hp.sinkhorn_iter, m.hp.feat_weight) == (600.0, 8.0, 0.05, 10, 0.0)
    m.double()
    m.teacher.double()
    m.train()
    x, y = torch.randn(3, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 4, 9])
    out = m.forward_train(x, y)
    assert sorted(out) == ["ce", "wkd_l"]
    s, t = _np(m.student(x)), _np(m.teacher(x))
    cost = _ref_cost(_np(m.teacher.get_classifier().weight))
    assert np.allclose(_np(m.cost), cost, atol=1e-6)  # built in float32 from the teacher's weights
    want = _ref_wkd_l(s, t, y.numpy(), _np(m.cost), 600.0)
    assert out["wkd_l"].item() == pytest.approx(want, rel=1e-9)
    # a sharper regularisation and fewer iterations change it, as the reference says
    m.hp.sinkhorn_lambda, m.hp.sinkhorn_iter = 0.5, 3
    out = m.forward_train(x, y)
    assert out["wkd_l"].item() == pytest.approx(_ref_wkd_l(s, t, y.numpy(), _np(m.cost), 600.0, reg=0.5, iters=3),
                                                rel=1e-9)


def test_wkd_f_is_the_gaussian_wasserstein_of_channel_means_and_stds():
    torch.manual_seed(1)
    m = make("wkd", logit_weight=0.0, feat_weight=0.08)
    m.double()
    m.teacher.double()
    m.train()
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    seen = {}
    h = m.regressor.register_forward_hook(lambda mod, i, o: seen.update(out=_np(o)))
    out = m.forward_train(x, y)
    h.remove()
    assert sorted(out) == ["ce", "wkd_f"]
    fs, ft = seen["out"], _np(m.teacher_forward(x)[1][m.key_t])
    b, c = fs.shape[:2]
    mean = sd = 0.0
    for i in range(b):
        for k in range(c):
            a, r = fs[i, k].ravel(), ft[i, k].ravel()
            mean += (a.mean() - r.mean()) ** 2
            sd += (math.sqrt(a.var(ddof=1) + 1e-5) - math.sqrt(r.var(ddof=1) + 1e-5)) ** 2
    assert out["wkd_f"].item() == pytest.approx(0.08 * (4.0 * mean / b + sd / b), rel=1e-9)


def test_weights_decay_by_the_authors_cosine_after_epoch_150():
    m = make("wkd")
    m.ctx.epochs = 240
    for epoch0, want in ((0, 600.0), (149, 600.0), (150, 0.5 * 600 * (1 + math.cos(math.pi / 90))),
                         (194, 300.0), (239, 0.0)):
        m.progress.epoch = epoch0  # the authors' 1-based epoch is epoch0 + 1
        assert m.decayed(600.0) == pytest.approx(want, abs=1e-9), epoch0


def test_both_weights_zero_is_refused():
    with pytest.raises(ConfigError, match="logit_weight and hparams.feat_weight are both 0"):
        make("wkd", logit_weight=0.0)
