import math

import numpy as np
import torch

from kdsuite.experiments.data import TensorLoader
from kdsuite.methods.plugins.dkd import dkd_terms
from kdsuite.engine.trainer import Trainer, TrainSettings
from kdsuite.testing import make
from tests.parity_helpers import ce64, fixed_batch, forward_once, real_pair


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


def _dkd_reference(s, t, y, alpha, beta, T):
    """mdistiller DKD.py without the warm-up, float64 loops: T²·(α·TCKD + β·NCKD), each KL summed over
    classes and averaged over the batch; NCKD over the softmax of the non-target classes."""
    tck, nck = [], []
    for i in range(len(y)):
        ps, pt = _sm(s[i] / T), _sm(t[i] / T)
        c = int(y[i])
        bs, bt = [ps[c], 1 - ps[c]], [pt[c], 1 - pt[c]]
        tck.append(sum(bt[k] * math.log(bt[k] / bs[k]) for k in range(2)))
        others = [k for k in range(len(s[i])) if k != c]
        qs, qt = _sm(np.array([s[i][k] for k in others]) / T), _sm(np.array([t[i][k] for k in others]) / T)
        nck.append(sum(qt[k] * math.log(qt[k] / qs[k]) for k in range(len(others))))
    return T * T * (alpha * sum(tck) + beta * sum(nck)) / len(y)


def test_dkd_warmup_is_mdistillers_one_based_epoch_weight_constant_within_each_epoch():
    """Driven by the real trainer: 5 epochs × 3 steps, warm-up 3. The weight actually applied at each
    (epoch, step) — the term divided by the same term with the warm-up off — is min(e/3, 1) with e the
    1-based epoch: 1/3, 2/3, 1, 1, 1, the same for every step of an epoch."""
    torch.manual_seed(0)
    m = make("dkd", warmup=3.0)
    m.ctx.epochs = 5  # the main stage's length
    loader = TensorLoader(torch.randn(24, 3, 16, 16), torch.arange(24) % 10, batch_size=8, shuffle=True)
    seen = []
    real = m.forward_train

    def recorded(x, y):
        out = real(x, y)
        warm, m.hp.warmup = m.hp.warmup, 0.0
        with torch.no_grad():
            full = real(x, y)["dkd"].item()
        m.hp.warmup = warm
        seen.append((m.progress.epoch, m.progress.step, out["dkd"].item() / full))
        return out

    m.forward_train = recorded
    Trainer(m, loader, None, TrainSettings(epochs=5, optim={"lr": 0.01})).fit()
    assert [(e, s) for e, s, _ in seen] == [(e, e * 3 + s) for e in range(5) for s in range(3)]
    for epoch, step, w in seen:
        assert abs(w - min((epoch + 1) / 3.0, 1.0)) < 1e-6, (epoch, step, w)


def test_dkd_default_is_mdistillers_recipe_and_beta_is_settable_per_pair():
    m = make("dkd")
    assert (m.hp.alpha, m.hp.beta, m.hp.T, m.hp.warmup, m.hp.ce_weight) == (1.0, 8.0, 4.0, 20.0, 1.0)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    for beta in (2.0, 6.0):
        mb = make("dkd", beta=beta, warmup=0.0)
        out, seen = forward_once(mb, x, y)
        want = _dkd_reference(seen["s_logits"], seen["t_logits"], y.numpy(), 1.0, beta, 4.0)
        assert abs(out["dkd"] - want) < 1e-5 * want


def test_dkd_scale_vs_ce_on_resnet32x4_resnet8x4_at_init():
    """First step of a run (epoch 0 of the trainer = mdistiller's epoch 1): weight 1/20."""
    m = real_pair("dkd")
    x, y = fixed_batch()
    out, seen = forward_once(m, x, y)
    ref = (1 / 20) * _dkd_reference(seen["s_logits"], seen["t_logits"], y.numpy(), 1.0, 8.0, 4.0) \
        / ce64(seen["s_logits"], y.numpy())
    got = out["dkd"] / out["ce"]
    print(f"dkd/CE at init, first epoch (resnet32x4 → resnet8x4): plugin {got:.6g}, reference {ref:.6g}")
    assert abs(got - ref) < 1e-4 * ref
