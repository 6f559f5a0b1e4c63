"""ReviewKD against mdistiller (github.com/megvii-research/mdistiller: mdistiller/distillers/ReviewKD.py ABF and
hcl_loss, engine/cfg.py, configs/cifar100/reviewkd.yaml): the ABF chain and HCL rewritten here in float64 numpy
from that code, applied to the plugin's own weights and taps."""
import numpy as np
import pytest
import torch

from kdsuite.methods.components.fusion import ReviewFusion, hcl_loss
from kdsuite.testing import make
from tests.parity_helpers import real_pair


def _np(t):
    return t.detach().double().numpy()


def _bn(x, bn):
    """BatchNorm2d in training mode: batch statistics, biased variance."""
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mu) / np.sqrt(var + bn.eps) * _np(bn.weight)[None, :, None, None] + _np(bn.bias)[None, :, None, None]


def _conv1x1(x, conv):
    y = np.einsum("oc,bchw->bohw", _np(conv.weight)[:, :, 0, 0], x)
    return y + _np(conv.bias)[None, :, None, None] if conv.bias is not None else y


def _conv3x3(x, conv):
    w = _np(conv.weight)
    b, c, h, wd = x.shape
    p = np.zeros((b, c, h + 2, wd + 2))
    p[:, :, 1:-1, 1:-1] = x
    return sum(np.einsum("oc,bchw->bohw", w[:, :, i, j], p[:, :, i:i + h, j:j + wd]) for i in range(3) for j in range(3))


def _nearest(x, size):
    h, w = x.shape[2:]
    rows = (np.arange(size[0]) * h) // size[0]
    cols = (np.arange(size[1]) * w) // size[1]
    return x[:, :, rows][:, :, :, cols]


def _abf(abf, x, residual, out_size):
    x = _bn(_conv1x1(x, abf.conv1[0]), abf.conv1[1])
    if abf.att_conv is not None:
        residual = _nearest(residual, x.shape[2:])
        z = 1.0 / (1.0 + np.exp(-_conv1x1(np.concatenate([x, residual], 1), abf.att_conv[0])))
        x = x * z[:, 0:1] + residual * z[:, 1:2]
    if tuple(x.shape[2:]) != tuple(out_size):
        x = _nearest(x, out_size)
    return _bn(_conv3x3(x, abf.conv2[0]), abf.conv2[1]), x


def _chain(fusion, feats):
    xs = feats[::-1]
    out, res = _abf(fusion.abfs[0], xs[0], None, fusion.out_sizes[0])
    results = [out]
    for x, abf, size in zip(xs[1:], fusion.abfs[1:], fusion.out_sizes[1:]):
        out, res = _abf(abf, x, res, size)
        results.insert(0, out)
    return results


def _pool(x, lv):
    b, c, h, w = x.shape
    return x.reshape(b, c, lv, h // lv, lv, w // lv).mean(axis=(3, 5))


def _hcl(fs_list, ft_list):
    total = 0.0
    for fs, ft in zip(fs_list, ft_list):
        terms, weights = [np.mean((fs - ft) ** 2)], [1.0]
        for k, lv in enumerate(lv for lv in (4, 2, 1) if lv < fs.shape[2]):
            weights.append(0.5 ** (k + 1))
            terms.append(np.mean((_pool(fs, lv) - _pool(ft, lv)) ** 2))
        total += sum(w * t for w, t in zip(weights, terms)) / sum(weights)
    return total


def test_hcl_matches_the_written_out_pyramid():
    g = torch.Generator().manual_seed(0)
    fs = [torch.randn(2, 3, s, s, generator=g, dtype=torch.float64) for s in (8, 4, 1)]
    ft = [torch.randn(2, 3, s, s, generator=g, dtype=torch.float64) for s in (8, 4, 1)]
    got = hcl_loss(fs, ft).item()
    assert got == pytest.approx(_hcl([_np(a) for a in fs], [_np(b) for b in ft]), rel=1e-12)
    # 8×8: full + 4×4 (½) + 2×2 (¼) + 1×1 (⅛), over 1.875; 4×4: full + 2×2 + 1×1 over 1.75; 1×1: full alone
    a, b = _np(fs[0]), _np(ft[0])
    by_hand = (np.mean((a - b) ** 2) + 0.5 * np.mean((_pool(a, 4) - _pool(b, 4)) ** 2)
               + 0.25 * np.mean((_pool(a, 2) - _pool(b, 2)) ** 2) + 0.125 * np.mean((_pool(a, 1) - _pool(b, 1)) ** 2)) / 1.875
    assert hcl_loss(fs[:1], ft[:1]).item() == pytest.approx(by_hand, rel=1e-12)


def test_abf_chain_matches_mdistillers_fusion_in_float64():
    torch.manual_seed(0)
    fusion = ReviewFusion([3, 4, 5], [2, 6, 5], [(8, 8), (4, 4), (1, 1)]).double().train()
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(3, c, s, s, generator=g, dtype=torch.float64) for c, s in ((3, 8), (4, 4), (5, 1))]
    got = fusion(feats)
    want = _chain(fusion, [_np(f) for f in feats])
    assert [tuple(t.shape) for t in got] == [(3, 2, 8, 8), (3, 6, 4, 4), (3, 5, 1, 1)]
    for a, b in zip(got, want):
        assert np.allclose(_np(a), b, rtol=1e-10, atol=1e-12)
    assert fusion.abfs[0].att_conv is None and all(a.att_conv is not None for a in fusion.abfs[1:])
    assert fusion.abfs[0].conv1[0].out_channels == 5  # mid = min(512, channels of the deepest input)


def test_reviewkd_loss_on_the_plugins_taps_with_mdistillers_weights_and_warmup():
    torch.manual_seed(2)
    m = make("reviewkd")
    assert (m.hp.weight, m.hp.ce_weight, m.hp.warmup) == (5.0, 1.0, 20.0)
    assert m.t_keys == ["feat1_pre", "feat2_pre", "feat3_pre", "pool"] and m.s_keys == ["feat1", "feat2", "feat3", "pool"]
    m.double()
    m.teacher.double()
    m.train()
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    for epoch, w in ((0, 1 / 20), (9, 10 / 20), (40, 1.0)):
        m.progress.epoch = epoch
        torch.manual_seed(3)
        out = m.forward_train(x, y)
        with torch.no_grad():
            _, sf = m.student_forward(x)
            _, tf = m.teacher_forward(x)
        s = [_np(sf[k]) if sf[k].dim() == 4 else _np(sf[k])[:, :, None, None] for k in m.s_keys]
        t = [_np(tf[k]) if tf[k].dim() == 4 else _np(tf[k])[:, :, None, None] for k in m.t_keys]
        want = 5.0 * w * _hcl(_chain(m.fusion, s), t)
        assert out["review"].item() == pytest.approx(want, rel=1e-9), epoch


def test_resnet32x4_to_resnet8x4_builds_mdistillers_configuration():
    m = real_pair("reviewkd")
    # mdistiller cfg: IN_CHANNELS [64, 128, 256, 256], OUT_CHANNELS [64, 128, 256, 256], SHAPES/OUT_SHAPES [1, 8, 16, 32]
    deep_to_shallow = [(a.conv1[0].in_channels, a.conv2[0].out_channels) for a in m.fusion.abfs]
    assert deep_to_shallow == [(256, 256), (256, 256), (128, 128), (64, 64)]
    assert m.fusion.out_sizes == [(1, 1), (8, 8), (16, 16), (32, 32)]
    assert {a.conv1[0].out_channels for a in m.fusion.abfs} == {256}
