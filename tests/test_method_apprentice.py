import math

import torch
import torch.nn.utils.parametrize as P

from kdsuite.methods.components.lowbit import ActQuant, WrpnWeight
from kdsuite.testing import make


def test_wrpn_weights_and_activations_match_the_formula_with_straight_through_gradients():
    w = torch.tensor([-1.7, -1.0, -0.61, -0.2, 0.0, 0.13, 0.47, 0.93, 1.4], dtype=torch.float64, requires_grad=True)
    for bits in (2, 4, 8):
        n = 2 ** (bits - 1) - 1
        got = WrpnWeight(bits)(w)
        want = [round(min(max(v, -1.0), 1.0) * n) / n for v in w.tolist()]
        # torch's fake-quant op holds the scale 1/n in float32: equal to ~1e-7, the same rounding (no ties here)
        assert max(abs(a - b) for a, b in zip(got.tolist(), want)) < 1e-6
    w.grad = None
    WrpnWeight(4)(w).sum().backward()
    assert w.grad.tolist() == [0.0 if abs(v) > 1.0 + 1 / 14 else 1.0 for v in w.tolist()]
    a = torch.tensor([-0.4, 0.0, 0.07, 0.33, 0.52, 0.999, 1.3], requires_grad=True)
    out = ActQuant(4, "wrpn")(a)
    assert max(abs(o - round(min(max(v, 0.0), 1.0) * 15) / 15) for o, v in zip(out.tolist(), a.tolist())) < 1e-6
    out.sum().backward()
    assert a.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_apprentice_keeps_first_and_last_layer_full_precision_and_its_loss_is_the_papers():
    torch.manual_seed(0)
    m = make("apprentice")
    layers = {n: mod for n, mod in m.student.named_modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))}
    # resnet8: the stem conv sees the image, fc is the classifier; every other conv is low precision
    full = {n for n, mod in layers.items() if not P.is_parametrized(mod, "weight")}
    assert full == {"stem.0", "fc"} and len(layers) == 10
    assert len(m.act_quant) == len(layers) - 2
    x, y = torch.randn(5, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4])
    out = m.forward_train(x, y)
    s, t = m.student(x).double().tolist(), m.teacher(x).double().tolist()
    ce = soft = 0.0
    for si, ti, yi in zip(s, t, y.tolist()):
        log_zs = math.log(sum(math.exp(v) for v in si))
        zt = sum(math.exp(v) for v in ti)
        ce += -(si[yi] - log_zs)
        soft += -sum(math.exp(b) / zt * (a - log_zs) for a, b in zip(si, ti))
    assert abs(out["ce"].item() - 0.5 * ce / 5) < 1e-4
    assert abs(out["apprentice"].item() - 0.5 * soft / 5) < 1e-4


def test_float_export_keeps_the_clamped_activations_and_leaves_the_student_intact():
    from kdsuite.methods.components.lowbit import _plain_copy

    torch.manual_seed(0)
    m = make("apprentice", bits_a=8)
    x = torch.randn(32, 3, 16, 16) * 3
    m.eval()
    with torch.no_grad():
        before = m.student(x)
        exported = _plain_copy(m.student)(x)
        after = m.student(x)
    assert torch.equal(before, after)  # the live, parametrized student still works after an export
    # the export differs from the fake-quantised student only by the 8-bit rounding of activations
    assert (exported - before).abs().max() < 0.05 * before.abs().max()
    clamps = {n: mod for n, mod in _plain_copy(m.student).named_modules() if isinstance(mod, torch.nn.Hardtanh)}
    assert len(clamps) == len(m.act_quant)
