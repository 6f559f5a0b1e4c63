import itertools
import math

import pytest
import torch

from kdsuite.methods.plugins.rkd import angle_potential, distance_potential


def _huber(a, b):
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def test_rkd_potentials_and_losses_match_the_paper():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    n = 4

    def dist(e):
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
        mu = sum(float((e[i] - e[j]).norm()) for i, j in pairs) / len(pairs)
        return {(i, j): float((e[i] - e[j]).norm()) / mu for i in range(n) for j in range(n)}

    def angle(e):
        out = {}
        for i, j, k in itertools.product(range(n), repeat=3):
            a, b = e[i] - e[j], e[k] - e[j]
            na, nb = float(a.norm()), float(b.norm())
            out[(i, j, k)] = float(a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0
        return out

    ds, dt = dist(s), dist(t)
    got = distance_potential(s)
    for (i, j), v in ds.items():
        assert abs(got[i, j].item() - v) < 1e-9
    want_d = sum(_huber(ds[k], dt[k]) for k in ds) / len(ds)
    assert abs(torch.nn.functional.smooth_l1_loss(distance_potential(s), distance_potential(t)).item() - want_d) < 1e-9
    as_, at_ = angle(s), angle(t)
    want_a = sum(_huber(as_[k], at_[k]) for k in as_) / len(as_)
    got_a = torch.nn.functional.smooth_l1_loss(angle_potential(s), angle_potential(t)).item()
    assert abs(got_a - want_a) < 1e-9
    assert not math.isnan(got_a)


def test_rkd_plugin_uses_pooled_features_with_weights_25_and_50():
    """RepDistiller's RKDLoss(w_d=25, w_a=50) on feat[-1] (the pooled embedding), -b 1; loops in float64."""
    from kdsuite.testing import make

    torch.manual_seed(0)
    m = make("rkd")
    x, y = torch.randn(5, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4])
    out = m.forward_train(x, y)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    s, t = sf["pool"].detach().double().flatten(1), tf["pool"].double().flatten(1)
    n = 5

    def dist(e):
        d = {(i, j): float((e[i] - e[j]).norm()) for i in range(n) for j in range(n)}
        mu = sum(v for (i, j), v in d.items() if i != j) / (n * (n - 1))
        return {k: v / mu for k, v in d.items()}

    def angle(e):
        out_ = {}
        for i, j, k in itertools.product(range(n), repeat=3):
            a, b = e[i] - e[j], e[k] - e[j]
            na, nb = float(a.norm()), float(b.norm())
            out_[(i, j, k)] = float(a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0
        return out_

    ds, dt, as_, at_ = dist(s), dist(t), angle(s), angle(t)
    want = 25 * sum(_huber(ds[k], dt[k]) for k in ds) / len(ds) + 50 * sum(_huber(as_[k], at_[k]) for k in as_) / len(as_)
    assert out["rkd"].item() == pytest.approx(want, rel=1e-4)


def test_a_one_sample_batch_has_no_relational_term_and_stays_finite():
    """The last batch of a 129-image transfer set at batch 32 holds one image: no pair, so no RKD term (the
    mean pair distance was the mean of nothing: NaN, and the demo's rkd run diverged at that step)."""
    from kdsuite.methods import losses
    from kdsuite.testing import make

    torch.manual_seed(0)
    m = make("rkd")
    x, y = torch.randn(1, 3, 16, 16), torch.tensor([3])
    out = m.forward_train(x, y)
    assert out["rkd"].item() == 0.0 and torch.isfinite(out["ce"])
    s_logits, _ = m.student_forward(x)
    assert out["ce"].item() == pytest.approx(losses.ce(s_logits, y).item(), rel=1e-5)
    assert torch.isnan(distance_potential(torch.randn(1, 4))).any()  # what the guard avoids
