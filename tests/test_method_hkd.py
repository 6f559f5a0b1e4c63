import math

import torch

from kdsuite.methods.plugins.hkd import knn_neighbours
from kdsuite.testing import make


def _softmax(v):
    m = max(v)
    e = [math.exp(a - m) for a in v]
    return [a / sum(e) for a in e]


def _dot(a, b):
    return sum(p * q for p, q in zip(a, b))


def _unit(v):
    n = math.sqrt(_dot(v, v))
    return [a / n for a in v]


def _knn(logits, k):
    """Each instance's k nearest by 1 − cos(softmax), itself first (distance −1 on the diagonal)."""
    p = [_softmax(r) for r in logits]
    out = []
    for i in range(len(p)):
        d = [-1.0 if j == i else 1 - _dot(p[i], p[j]) / math.sqrt(_dot(p[i], p[i]) * _dot(p[j], p[j]))
             for j in range(len(p))]
        out.append(sorted(range(len(p)), key=lambda j: d[j])[:k])
    return out


def _nce(a, pos, negs, tau):
    logits = [_dot(a, pos) / tau] + [_dot(a, n) / tau for n in negs]
    m = max(logits)
    return -(logits[0] - m - math.log(sum(math.exp(v - m) for v in logits)))


def _gnn(lin, e, nbrs):
    W, b = lin.weight.double().tolist(), lin.bias.double().tolist()
    out = []
    for i, nb in enumerate(nbrs):
        agg = [sum(e[j][c] for j in nb) / len(nb) for c in range(len(e[0]))]
        x = e[i] + agg
        out.append(_unit([_dot(w, x) + bb for w, bb in zip(W, b)]))
    return out


def test_knn_graph_over_the_batch():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64)
    got = knn_neighbours(z, 3).tolist()
    want = _knn(z.tolist(), 3)
    assert [set(r) for r in got] == [set(r) for r in want]
    assert all(r[0] == i for i, r in enumerate(got))


def test_hkd_holistic_loss_matches_the_formula():
    torch.manual_seed(0)
    m = make("hkd", knn=3, nce_k=5, feat_dim=6).double()
    g = torch.Generator().manual_seed(1)
    B, d = 6, 6
    e_s = torch.nn.functional.normalize(torch.randn(B, d, generator=g, dtype=torch.float64), dim=1)
    e_t = torch.nn.functional.normalize(torch.randn(B, d, generator=g, dtype=torch.float64), dim=1)
    z_s, z_t = torch.randn(B, 10, generator=g, dtype=torch.float64), torch.randn(B, 10, generator=g, dtype=torch.float64)
    index = torch.tensor([3, 17, 42, 8, 99, 0])
    neg = torch.randint(0, m.num_data, (B, 5), generator=g)
    got = m.holistic_loss(e_s, e_t, z_s, z_t, index, neg).item()

    ms, mt = m.memory_s.tolist(), m.memory_t.tolist()
    es, et, tau = e_s.tolist(), e_t.tolist(), 0.07
    ind = sum(_nce(es[i], mt[index[i]], [ms[n] for n in neg[i].tolist()], tau) +
              _nce(et[i], ms[index[i]], [mt[n] for n in neg[i].tolist()], tau) for i in range(B)) / B
    hs = _gnn(m.gnn_s.lin, es, _knn(z_s.tolist(), 3))
    ht = _gnn(m.gnn_t.lin, et, _knn(z_t.tolist(), 3))
    hol = 0.0
    for i in range(B):
        r = index[i].item()
        smooth_t = _unit([0.75 * a + 0.25 * b for a, b in zip(mt[r], ht[i])])
        smooth_s = _unit([0.75 * a + 0.25 * b for a, b in zip(ms[r], hs[i])])
        hol += _nce(hs[i], smooth_t, [ms[n] for n in neg[i].tolist()], tau)
        hol += _nce(ht[i], smooth_s, [mt[n] for n in neg[i].tolist()], tau)
    assert abs(got - (ind + hol / B)) < 1e-9
    # a batch smaller than k keeps only the individual term
    small = m.holistic_loss(e_s[:2], e_t[:2], z_s[:2], z_t[:2], index[:2], neg[:2]).item()
    want_small = sum(_nce(es[i], mt[index[i]], [ms[n] for n in neg[i].tolist()], tau) +
                     _nce(et[i], ms[index[i]], [mt[n] for n in neg[i].tolist()], tau) for i in range(2)) / 2
    assert abs(small - want_small) < 1e-9


def test_hkd_updates_the_banks_with_momentum():
    torch.manual_seed(0)
    m = make("hkd", nce_k=4)
    index = torch.tensor([5, 9, 2, 7, 1, 3, 4, 6, 8])
    m.batch_extras = {"index": index}
    before_s = m.memory_s.clone()
    x, y = torch.randn(9, 3, 16, 16), torch.arange(9) % 10
    out = m.forward_train(x, y)
    assert set(out) == {"ce", "kd", "hkd"}
    _, sf = m.student_forward(x)
    e = torch.nn.functional.normalize(m.embed_s(sf["pool"]), dim=1).detach()
    for k, r in enumerate(index.tolist()):
        v = [0.9 * a + 0.1 * b for a, b in zip(before_s[r].tolist(), e[k].tolist())]
        n = math.sqrt(sum(a * a for a in v))
        assert max(abs(a / n - b) for a, b in zip(v, m.memory_s[r].tolist())) < 1e-5
    assert torch.equal(m.memory_s[0], before_s[0])  # rows outside the batch untouched
