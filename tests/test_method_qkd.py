import math

import torch
import torch.nn.utils.parametrize as P

from kdsuite.methods.components.lowbit import ActQuant, BucketWeight, bucket_minmax_quantize
from kdsuite.testing import make


def _bucket_ref(values, bits, bucket):
    """Polino et al.: per bucket, v → lo + span·round((v − lo)/span·(s − 1))/(s − 1), s = 2^bits."""
    out, levels = [], 2 ** bits - 1
    for k in range(0, len(values), bucket):
        chunk = values[k:k + bucket]
        lo, hi = min(chunk), max(chunk)
        span = hi - lo if hi - lo >= 1e-10 else 1.0
        out += [lo + span * round((v - lo) / span * levels) / levels for v in chunk]
    return out


def test_bucket_minmax_quantisation_matches_the_formula_and_passes_gradients_straight_through():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)  # 30 values: buckets of 8, 8, 8 and a tail of 6
    for bits in (2, 4, 8):
        want = _bucket_ref(w.flatten().tolist(), bits, 8)
        got = bucket_minmax_quantize(w, bits, 8).flatten().tolist()
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-12
        assert len({round(v, 9) for v in got[:8]}) <= 2 ** bits
    wp = w.clone().requires_grad_(True)
    coeff = torch.randn(w.shape, generator=g, dtype=torch.float64)
    (BucketWeight(4, 8)(wp) * coeff).sum().backward()
    assert torch.equal(wp.grad, coeff)  # STE: ∂L/∂Q(w) is applied to w unchanged


def test_affine_activation_fake_quant_observer_and_formula():
    g = torch.Generator().manual_seed(1)
    aq = ActQuant(4, "affine")
    x1 = torch.randn(6, 5, generator=g) * 2 + 0.5
    x2 = torch.randn(6, 5, generator=g) * 3
    aq.train()
    aq(x1)
    out = aq(x2)
    lo = float(x1.min()) + 0.01 * (float(x2.min()) - float(x1.min()))
    hi = float(x1.max()) + 0.01 * (float(x2.max()) - float(x1.max()))
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 15
    zp = min(max(round(-lo / scale), 0), 15)
    want = [(min(max(round(v / scale) + zp, 0), 15) - zp) * scale for v in x2.flatten().tolist()]
    assert max(abs(a - b) for a, b in zip(out.flatten().tolist(), want)) < 1e-5
    aq.eval()
    before = (aq.lo.clone(), aq.hi.clone())
    xg = (x2 * 1.0).requires_grad_(True)
    aq(xg * 10).sum().backward()  # evaluation never moves the range
    assert torch.equal(aq.lo, before[0]) and torch.equal(aq.hi, before[1])
    # the straight-through gradient passes where 10·x is inside the range and is 0 where it was clamped
    inside = [(lo - scale / 2) < 10 * v < (hi + scale / 2) for v in x2.flatten().tolist()]
    assert [float(gv) for gv in xg.grad.flatten()] == [10.0 if i else 0.0 for i in inside]
    assert any(inside) and not all(inside)


def test_qkd_student_is_quantised_and_the_loss_is_polino_distillation():
    torch.manual_seed(0)
    m = make("qkd", bits_w=3, bucket=16)
    layers = [mod for mod in m.student.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(P.is_parametrized(mod, "weight") for mod in layers)  # first and last layer too
    conv = layers[1]
    orig = conv.parametrizations.weight.original.detach().double()
    want = _bucket_ref(orig.flatten().tolist(), 3, 16)
    assert max(abs(a - b) for a, b in zip(conv.weight.detach().flatten().tolist(), want)) < 1e-5
    x, y = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 5])
    out = m.forward_train(x, y)
    s, t = m.student(x).double().tolist(), m.teacher(x).double().tolist()
    T, alpha, kl, ce = 2.0, 0.7, 0.0, 0.0
    for si, ti, yi in zip(s, t, y.tolist()):
        zs = sum(math.exp(v / T) for v in si)
        zt = sum(math.exp(v / T) for v in ti)
        for a, b in zip(si, ti):
            p, q = math.exp(b / T) / zt, math.exp(a / T) / zs
            kl += p * math.log(p / q)
        ce += -(si[yi] - math.log(sum(math.exp(v) for v in si)))
    assert abs(out["kd"].item() - alpha * T * T * kl / 6) < 1e-4
    assert abs(out["ce"].item() - (1 - alpha) * ce / 6) < 1e-4
