"""The zoo's forward and feature taps against RepDistiller's model equations, one family at a time.

Each reference forward below is written from RepDistiller's ``models/*.py`` (what ``forward(x, is_feat=True,
preact=...)`` computes, eval-mode batch norm) and reads the weights by the *reference's* key names; the zoo
model gets the same weights through ``kdsuite.zoo.reference_keys``. Equal logits and taps therefore also prove that
the key mapping puts every tensor in its place (shape checks alone cannot tell apart two same-shape
convolutions). float64 throughout.
"""
import pytest
import timm
import torch
import torch.nn.functional as F

from kdsuite.zoo import reference_keys, taps

from tests.test_teacher_import import _random_state, _resnet8_reference_forward
from tests.test_zoo_reference import ref_mobilenetv2, ref_resnet, ref_shufflev1, ref_shufflev2, ref_wrn


def _bn(sd, p, x):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        False, 0.0, 1e-5)


def _conv(sd, p, x, stride=1, depthwise=False):
    w = sd[f"{p}.weight"]
    groups = w.shape[0] if depthwise else x.shape[1] // w.shape[1]
    return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)


def _shuffle(x, g):
    b, c, h, w = x.shape
    return x.view(b, g, c // g, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)


def wrn_forward(sd, x):
    """models/wrn.py: post taps are the raw block outputs; pre taps the next layer's bn1 of them."""
    t = _conv(sd, "conv1", x)
    post, pre, b = [t], [t], 1
    while f"block{b}.layer.0.bn1.weight" in sd:
        j = 0
        while f"block{b}.layer.{j}.bn1.weight" in sd:
            p, stride = f"block{b}.layer.{j}", (2 if j == 0 and b > 1 else 1)
            a = F.relu(_bn(sd, f"{p}.bn1", t))
            o = _conv(sd, f"{p}.conv2", F.relu(_bn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv1", a, stride))))
            t = (_conv(sd, f"{p}.convShortcut", a, stride) if f"{p}.convShortcut.weight" in sd else t) + o
            j += 1
        post.append(t)
        b += 1
    for i in range(1, len(post)):
        pre.append(_bn(sd, f"block{i + 1}.layer.0.bn1" if i < len(post) - 1 else "bn1", post[i]))
    t = F.relu(_bn(sd, "bn1", t))
    return F.linear(F.avg_pool2d(t, 8).flatten(1), sd["fc.weight"], sd["fc.bias"]), post, pre


def mobilenetv2_forward(sd, x):
    """models/mobilenetv2.py mobile_half: taps after conv1, blocks[1], blocks[2], blocks[4], blocks[6]."""
    strides = [1, 1, 2, 2, 1, 2, 1]
    t = F.relu(_bn(sd, "conv1.1", _conv(sd, "conv1.0", x, 2)))
    post = [t]
    for g, s in enumerate(strides):
        i = 0
        while f"blocks.{g}.{i}.conv.0.weight" in sd:
            p, stride = f"blocks.{g}.{i}.conv", (s if i == 0 else 1)
            h = F.relu(_bn(sd, f"{p}.1", _conv(sd, f"{p}.0", t)))
            h = F.relu(_bn(sd, f"{p}.4", _conv(sd, f"{p}.3", h, stride, depthwise=True)))
            h = _bn(sd, f"{p}.7", _conv(sd, f"{p}.6", h))
            t = t + h if stride == 1 and t.shape[1] == h.shape[1] else h
            i += 1
        if g in (1, 2, 4, 6):
            post.append(t)
    t = F.relu(_bn(sd, "conv2.1", _conv(sd, "conv2.0", t)))
    t = F.avg_pool2d(t, 2, ceil_mode=True)  # AvgPool2d(input_size // 16) at 32×32
    return F.linear(t.flatten(1), sd["classifier.0.weight"], sd["classifier.0.bias"]), post, post


def shufflev1_forward(sd, x):
    """models/ShuffleNetv1.py: pre taps are the last block's sum/concatenation before its ReLU."""
    t = F.relu(_bn(sd, "bn1", _conv(sd, "conv1", x)))
    post, pre = [t], [t]
    for L in (1, 2, 3):
        j = 0
        while f"layer{L}.{j}.conv1.weight" in sd:
            p, stride = f"layer{L}.{j}", (2 if j == 0 else 1)
            w1 = sd[f"{p}.conv1.weight"]
            o = F.relu(_bn(sd, f"{p}.bn1", _conv(sd, f"{p}.conv1", t)))
            o = _shuffle(o, t.shape[1] // w1.shape[1])
            o = F.relu(_bn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv2", o, stride, depthwise=True)))
            o = _bn(sd, f"{p}.bn3", _conv(sd, f"{p}.conv3", o))
            z = torch.cat([o, F.avg_pool2d(t, 3, 2, 1)], 1) if stride == 2 else o + t
            t = F.relu(z)
            j += 1
        post.append(t)
        pre.append(z)
    return F.linear(F.avg_pool2d(t, 4).flatten(1), sd["linear.weight"], sd["linear.bias"]), post, pre


def shufflev2_forward(sd, x):
    """models/ShuffleNetv2.py: out = shuffle(cat[x1, relu(b)]), preact = cat[x1, b] (not shuffled)."""
    t = F.relu(_bn(sd, "bn1", _conv(sd, "conv1", x)))
    post, pre = [t], [t]
    for L in (1, 2, 3):
        p = f"layer{L}.0"
        o1 = _bn(sd, f"{p}.bn1", _conv(sd, f"{p}.conv1", t, 2, depthwise=True))
        o1 = F.relu(_bn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv2", o1)))
        o2 = F.relu(_bn(sd, f"{p}.bn3", _conv(sd, f"{p}.conv3", t)))
        o2 = _bn(sd, f"{p}.bn4", _conv(sd, f"{p}.conv4", o2, 2, depthwise=True))
        o2 = F.relu(_bn(sd, f"{p}.bn5", _conv(sd, f"{p}.conv5", o2)))
        t = _shuffle(torch.cat([o1, o2], 1), 2)
        j = 1
        while f"layer{L}.{j}.conv1.weight" in sd:
            p = f"layer{L}.{j}"
            c = t.shape[1] // 2
            x1, x2 = t[:, :c], t[:, c:]
            o = F.relu(_bn(sd, f"{p}.bn1", _conv(sd, f"{p}.conv1", x2)))
            o = _bn(sd, f"{p}.bn3", _conv(sd, f"{p}.conv3", _bn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv2", o, depthwise=True))))
            z = torch.cat([x1, o], 1)
            t = _shuffle(torch.cat([x1, F.relu(o)], 1), 2)
            j += 1
        post.append(t)
        pre.append(z)
    t = F.relu(_bn(sd, "bn2", _conv(sd, "conv2", t)))
    return F.linear(F.avg_pool2d(t, 4).flatten(1), sd["linear.weight"], sd["linear.bias"]), post, pre


def resnet8_forward(sd, x):
    return _resnet8_reference_forward(sd, x), None, None


CASES = {
    "cifar_resnet8x4": (lambda: ref_resnet(8, (32, 64, 128, 256)), resnet8_forward),
    "cifar_wrn_16_2": (lambda: ref_wrn(16, 2), wrn_forward),
    "cifar_mobilenetv2": (ref_mobilenetv2, mobilenetv2_forward),
    "cifar_shufflenetv1": (ref_shufflev1, shufflev1_forward),
    "cifar_shufflenetv2": (ref_shufflev2, shufflev2_forward),
}


@pytest.mark.parametrize("arch", sorted(CASES))
def test_forward_and_taps_equal_the_reference_equations(arch):
    layout, forward = CASES[arch]
    sd = {k: v.double() if v.is_floating_point() else v for k, v in _random_state(layout()).items()}
    m = timm.create_model(arch, num_classes=100).double().eval()
    names = reference_keys.reference_names(arch, m)
    m.load_state_dict({k: sd[r] for k, r in names.items()})
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, post, pre = forward(sd, x)
        n = len(m.feature_info)
        got_logits, got = taps.extract(m, x, taps.resolve(m, [f"feat{i}" for i in range(n)]
                                                          + [f"feat{i}_pre" for i in range(n)]))
    tol = dict(rtol=1e-9, atol=1e-9 * float(want.abs().max()))
    assert torch.allclose(got_logits, want, **tol), (got_logits - want).abs().max()
    if post is not None:
        assert len(post) == n
        for i in range(n):
            assert torch.allclose(got[f"feat{i}"], post[i], rtol=1e-9, atol=1e-9 * float(post[i].abs().max())), i
            assert torch.allclose(got[f"feat{i}_pre"], pre[i], rtol=1e-9, atol=1e-9 * float(pre[i].abs().max())), i
