"""MLKD against the authors' code (github.com/Jin-Ying/Multi-Level-Logit-Distillation,
mdistiller/distillers/KD_ours.py; the logit-standardisation fork's MLKD.py for ``--logit-stand``): float64
formulas written here from that code, term by term as it sums them, on the plugin's own logits."""
import numpy as np
import pytest
import torch

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.config import validate
from kdsuite.testing import make


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _norm(z):
    return (z - z.mean(1, keepdims=True)) / (1e-7 + z.std(1, ddof=1, keepdims=True))


def _kd(s, t, T, stand=False):
    s, t = (_norm(s), _norm(t)) if stand else (s, t)
    ps, pt = _softmax(s / T), _softmax(t / T)
    return T * T * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), 1))


def _cc(s, t, T):
    ps, pt = _softmax(s / T), _softmax(t / T)
    return ((pt.T @ pt - ps.T @ ps) ** 2).sum() / s.shape[1]


def _bc(s, t, T):
    ps, pt = _softmax(s / T), _softmax(t / T)
    return ((pt @ pt.T - ps @ ps.T) ** 2).sum() / s.shape[0]


def _ce(z, y):
    lz = z - z.max(1, keepdims=True)
    lp = lz - np.log(np.exp(lz).sum(1, keepdims=True))
    return -lp[np.arange(len(y)), y].mean()


def _ref(sw, ss, tw, ts, y, T=4.0, ce_w=0.1, w=0.9, quirk=True, stand=False):
    """KD_ours.forward_train: a scalar loss times a boolean mask, averaged — the mask's mean as a factor."""
    pw = _softmax(tw)
    conf = pw.max(1)
    mask = (conf <= np.percentile(conf, 50)).astype(float)
    ccf = pw.sum(0)
    cmask = (ccf <= np.percentile(ccf, 50)).astype(float)
    temps = [T, 3.0, 5.0, 2.0, 6.0]
    kd_weak = sum(w * (_kd(sw, tw, t, stand) * mask).mean() for t in temps)
    late = (sw, tw) if quirk else (ss, ts)
    kd_strong = sum(w * _kd(ss, ts, t, stand) for t in temps[:3]) + sum(w * _kd(*late, t, stand) for t in temps[3:])
    return {"ce": ce_w * (_ce(sw, y) + _ce(ss, y)), "kd": kd_weak + kd_strong,
            "cc": sum(w * (_cc(sw, tw, t) * cmask).mean() for t in temps),
            "bc": sum(w * (_bc(sw, tw, t) * mask).mean() for t in temps)}


def _case(seed=0, b=6, **hp):
    torch.manual_seed(seed)
    m = make("mlkd", **hp)
    m.double()
    m.teacher.double()
    m.train()
    x = torch.randn(b, 3, 16, 16, dtype=torch.float64)
    x2 = x.flip(3) + 0.3 * torch.randn_like(x)
    y = torch.randint(0, 10, (b,))
    m.batch_extras = {"aug_x": x2}
    out = {k: v.item() for k, v in m.forward_train(x, y).items()}
    with torch.no_grad():
        logits = [f(v).numpy() for f in (m.student, m.teacher) for v in (x, x2)]
    return m, out, logits, y.numpy()


@pytest.mark.parametrize("hp, ref_kw", [({}, {}), ({"strong_weak_terms": False}, {"quirk": False}),
                                        ({"standardize": True, "T": 2.0, "kd_weight": 9.0},
                                         {"stand": True, "T": 2.0, "w": 9.0})])
def test_mlkd_terms_match_the_authors_code_in_float64(hp, ref_kw):
    m, out, (sw, ss, tw, ts), y = _case(b=7, **hp)
    assert (m.hp.ce_weight, m.hp.T) == (0.1, ref_kw.get("T", 4.0))
    want = _ref(sw, ss, tw, ts, y, **ref_kw)
    for k in ("ce", "kd", "cc", "bc"):
        assert out[k] == pytest.approx(want[k], rel=1e-9), k


def test_the_strong_view_and_its_two_weak_read_terms_matter():
    """The variants differ where the code says they do: the quirk off changes only the kd term."""
    _, a, *_ = _case(seed=3)
    _, b, *_ = _case(seed=3, strong_weak_terms=False)
    assert a["kd"] != pytest.approx(b["kd"], rel=1e-6)
    assert (a["ce"], a["cc"], a["bc"]) == pytest.approx((b["ce"], b["cc"], b["bc"]), rel=1e-12)


def test_mlkd_needs_two_views_and_a_one_view_method_refuses_two():
    base = {"student": "cifar_resnet8", "method": "mlkd", "teachers": [{"checkpoint": "t.pt"}]}
    with pytest.raises(ConfigError, match=r"dataset.aug_views = None: method 'mlkd' trains on two views"):
        validate(base)
    with pytest.raises(ConfigError, match=r"dataset.aug_views = \['strong'\].*two views"):
        validate(dict(base, dataset={"aug_views": ["strong"]}))
    with pytest.raises(ConfigError, match=r"method 'kd' trains on one view"):
        validate(dict(base, method="kd", dataset={"aug_views": ["weak", "strong"]}))
