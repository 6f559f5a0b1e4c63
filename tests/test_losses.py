"""Loss primitives against their formulas, computed here element by element in float64."""
import math

import numpy as np
import pytest
import torch

from kdsuite.methods import losses


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)


def test_ce_hard_and_soft(logits):
    s, t = logits
    y = torch.tensor([0, 3, 5, 1])
    want = np.mean([-math.log(_softmax(s[i].numpy())[y[i]]) for i in range(4)])
    assert losses.ce(s, y).item() == pytest.approx(want, rel=1e-10)
    q = torch.softmax(t, 1)
    want_soft = np.mean([-(q[i].numpy() * np.log(_softmax(s[i].numpy()))).sum() for i in range(4)])
    assert losses.ce(s, q).item() == pytest.approx(want_soft, rel=1e-10)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kl_and_kd(logits, T):
    s, t = logits
    per = []
    for i in range(4):
        p = _softmax(t[i].numpy() / T)
        q = _softmax(s[i].numpy() / T)
        per.append(sum(p[c] * math.log(p[c] / q[c]) for c in range(6)))
    assert losses.kl_div(t, s, T).item() == pytest.approx(np.mean(per), rel=1e-10)
    assert losses.kl_div(t, s, T, reduction="none").numpy() == pytest.approx(np.array(per), rel=1e-10)
    assert losses.kd_loss(s, t, T).item() == pytest.approx(T * T * np.mean(per), rel=1e-10)
    assert losses.kl_div(t, t, T).item() == pytest.approx(0.0, abs=1e-12)


def test_l1_l2_cosine():
    a = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0], [2.5, 3.0]], dtype=torch.float64)
    assert losses.l1(a, b).item() == pytest.approx((1 + 3 + 2 + 0) / 4)
    assert losses.l2(a, b).item() == pytest.approx((1 + 9 + 4 + 0) / 4)
    cos0 = (1 * 0 + -2 * 1) / (math.sqrt(5) * 1)
    cos1 = (0.5 * 2.5 + 3 * 3) / (math.sqrt(0.25 + 9) * math.sqrt(6.25 + 9))
    assert losses.cosine_distance(a, b).item() == pytest.approx(((1 - cos0) + (1 - cos1)) / 2)


@pytest.mark.parametrize("kernel,kw", [("poly", {"degree": 2, "c": 0.0}), ("linear", {}), ("gaussian", {"sigma": 1.5})])
def test_mmd(kernel, kw):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64) + 0.5

    def k(u, v):
        if kernel == "poly":
            return (kw["c"] + float(np.dot(u, v))) ** kw["degree"]
        if kernel == "linear":
            return float(np.dot(u, v))
        return math.exp(-float(np.sum((u - v) ** 2)) / (2 * kw["sigma"] ** 2))

    X, Y = x.numpy(), y.numpy()
    kxx = np.mean([[k(a, b) for b in X] for a in X])
    kyy = np.mean([[k(a, b) for b in Y] for a in Y])
    kxy = np.mean([[k(a, b) for b in Y] for a in X])
    assert losses.mmd2(x, y, kernel, **kw).item() == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-9)
    assert losses.mmd2(x, x, kernel, **kw).item() == pytest.approx(0.0, abs=1e-9)


def test_standardize_logits(logits):
    s, _ = logits
    z = losses.standardize_logits(s, eps=0.0)
    row = s[0].numpy()
    want = (row - row.mean()) / row.std(ddof=1)
    assert z[0].numpy() == pytest.approx(want, rel=1e-9)
    # invariant to shift and positive scale of the logits
    assert losses.standardize_logits(3 * s + 2, eps=0.0).numpy() == pytest.approx(z.numpy(), rel=1e-9)


def _kd_np(s, t, T):
    p, q = _softmax(t / T), _softmax(s / T)
    return T * T * sum(p[c] * math.log(p[c] / q[c]) for c in range(len(p)))


def test_a_learnable_temperature_is_a_tensor_and_gets_its_gradient(logits):
    s, t = logits
    tau = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    value = losses.kd_loss(s, t, tau)
    want = np.mean([_kd_np(s[i].numpy(), t[i].numpy(), 3.0) for i in range(4)])
    assert value.item() == pytest.approx(want, rel=1e-10)
    value.backward()
    # d/dτ by central differences of the float64 formula
    h = 1e-5
    fd = (np.mean([_kd_np(s[i].numpy(), t[i].numpy(), 3.0 + h) for i in range(4)])
          - np.mean([_kd_np(s[i].numpy(), t[i].numpy(), 3.0 - h) for i in range(4)])) / (2 * h)
    assert tau.grad.item() == pytest.approx(fd, rel=1e-6)
    assert losses.kd_loss(s, t, torch.tensor(3.0)).item() == pytest.approx(losses.kd_loss(s, t, 3.0).item())


def test_per_sample_temperatures_weigh_each_sample_by_its_own(logits):
    s, t = logits
    T = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    want = np.mean([_kd_np(s[i].numpy(), t[i].numpy(), float(T[i])) for i in range(4)])
    assert losses.kd_loss(s, t, T).item() == pytest.approx(want, rel=1e-10)
    per = [_kd_np(s[i].numpy(), t[i].numpy(), float(T[i])) / float(T[i]) ** 2 for i in range(4)]
    assert losses.kl_div(t, s, T, reduction="none").numpy() == pytest.approx(per, rel=1e-10)
    with pytest.raises(ValueError, match="needs 4 values, got 3"):
        losses.kd_loss(s, t, T[:3])
