import math

import numpy as np
import torch

from kdsuite.testing import make


def _softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _pearson(u, v, eps=1e-8):
    # Pearson correlation; like the authors' code, 1e-8 is added to the product of the norms
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    num = sum((a - mu) * (b - mv) for a, b in zip(u, v))
    den = math.sqrt(sum((a - mu) ** 2 for a in u)) * math.sqrt(sum((b - mv) ** 2 for b in v))
    return num / (den + eps)


def _expected(s, t, tau, beta, gamma):
    ys, yt = _softmax_rows(s / tau), _softmax_rows(t / tau)
    B, C = ys.shape
    inter = sum(1 - _pearson(ys[i], yt[i]) for i in range(B)) / B
    intra = sum(1 - _pearson(ys[:, j], yt[:, j]) for j in range(C)) / C
    return beta * tau ** 2 * inter, gamma * tau ** 2 * intra


def test_dist_defaults_are_the_authors_cifar_recipe():
    m = make("dist")
    assert (m.hp.beta, m.hp.gamma, m.hp.tau, m.hp.ce_weight) == (2.0, 2.0, 4.0, 1.0)


def test_dist_loss_matches_the_paper_formula():
    torch.manual_seed(0)
    m = make("dist", tau=2.0, beta=1.5, gamma=0.5)
    m.double().student.eval()  # float64; BN in eval mode: a second forward gives the same logits
    m.teacher.double()
    x, y = torch.randn(5, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4])
    out = m.forward_train(x, y)
    s = m.student(x).detach().double().numpy()
    t = m.teacher(x).double().numpy()
    inter, intra = _expected(s, t, 2.0, 1.5, 0.5)
    assert abs(out["inter"].item() - inter) < 1e-8 * max(1.0, inter)
    assert abs(out["intra"].item() - intra) < 1e-8 * max(1.0, intra)
    ce = np.mean([-math.log(_softmax_rows(s)[i, int(y[i])]) for i in range(5)])
    assert abs(out["ce"].item() - ce) < 1e-8


def test_dist_standardize_uses_z_scored_logits():
    torch.manual_seed(1)
    m = make("dist", standardize=True)
    m.double().student.eval()
    m.teacher.double()
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.tensor([1, 2, 3, 4])
    out = m.forward_train(x, y)
    s = m.student(x).detach().double().numpy()
    t = m.teacher(x).double().numpy()
    z = lambda v: (v - v.mean(1, keepdims=True)) / v.std(1, ddof=1, keepdims=True)  # noqa: E731
    inter, intra = _expected(z(s), z(t), 4.0, 2.0, 2.0)
    assert abs(out["inter"].item() - inter) < 1e-6 * max(1.0, inter)
    assert abs(out["intra"].item() - intra) < 1e-6 * max(1.0, intra)
