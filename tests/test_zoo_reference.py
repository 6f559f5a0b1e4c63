"""Reference parity of the cifar_* zoo: every model's output and feature-tap shapes at 32×32 (100 classes)
are those of RepDistiller's model code (``models/*.py``, ``forward(x, is_feat=True, preact=...)``), and a
state dict in RepDistiller's / mdistiller's key layout loads with no missing or unexpected key.

The reference layouts below are written out here from reading that code (module names and tensor shapes),
independently of ``kdsuite.zoo.reference_keys``; their parameter counts are checked against the counts measured
from RepDistiller's own code (``shared/reference-numbers.md`` §F) so that a wrong description fails too.
"""
import pytest
import timm
import torch
import torch.nn.functional as F

from kdsuite import zoo
from kdsuite.zoo import reference_keys, taps
from kdsuite.zoo.cifar import CIFAR_MODELS

from tests.test_zoo_cifar import PARAMS_M

NC = 100


# ---- the reference layouts: (key, shape) lists ---------------------------------------------------------
def _bn(p, c):
    return [(f"{p}.weight", (c,)), (f"{p}.bias", (c,)), (f"{p}.running_mean", (c,)), (f"{p}.running_var", (c,)),
            (f"{p}.num_batches_tracked", ())]


def _conv(p, cout, cin, k, bias=False):
    return [(f"{p}.weight", (cout, cin, k, k))] + ([(f"{p}.bias", (cout,))] if bias else [])


def _linear(p, cout, cin):
    return [(f"{p}.weight", (cout, cin)), (f"{p}.bias", (cout,))]


def ref_resnet(depth, w, nc=NC):
    """models/resnet.py: conv1, bn1, layer1..3 of BasicBlocks (downsample.0/.1), fc."""
    n = (depth - 2) // 6
    out = _conv("conv1", w[0], 3, 3) + _bn("bn1", w[0])
    cin = w[0]
    for L, (planes, stride) in enumerate(zip(w[1:], (1, 2, 2)), start=1):
        for j in range(n):
            p = f"layer{L}.{j}"
            out += _conv(f"{p}.conv1", planes, cin, 3) + _bn(f"{p}.bn1", planes)
            out += _conv(f"{p}.conv2", planes, planes, 3) + _bn(f"{p}.bn2", planes)
            if j == 0 and (stride != 1 or cin != planes):
                out += _conv(f"{p}.downsample.0", planes, cin, 1) + _bn(f"{p}.downsample.1", planes)
            cin = planes
    return out + _linear("fc", nc, w[3])


def ref_resnet50():
    """models/resnetv2.py ResNet50: conv1, bn1, layer1..4 of Bottlenecks (shortcut.0/.1), linear."""
    out = _conv("conv1", 64, 3, 3) + _bn("bn1", 64)
    cin = 64
    for L, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2)), start=1):
        for j in range(n):
            p = f"layer{L}.{j}"
            out += _conv(f"{p}.conv1", planes, cin, 1) + _bn(f"{p}.bn1", planes)
            out += _conv(f"{p}.conv2", planes, planes, 3) + _bn(f"{p}.bn2", planes)
            out += _conv(f"{p}.conv3", 4 * planes, planes, 1) + _bn(f"{p}.bn3", 4 * planes)
            if j == 0 and (stride != 1 or cin != 4 * planes):
                out += _conv(f"{p}.shortcut.0", 4 * planes, cin, 1) + _bn(f"{p}.shortcut.1", 4 * planes)
            cin = 4 * planes
    return out + _linear("linear", NC, 2048)


def ref_wrn(depth, k):
    """models/wrn.py: conv1, block1..3.layer.<j> (bn1, conv1, bn2, conv2, convShortcut), bn1, fc."""
    n = (depth - 4) // 6
    ch = [16, 16 * k, 32 * k, 64 * k]
    out = _conv("conv1", 16, 3, 3)
    for b in range(3):
        for j in range(n):
            cin, cout = (ch[b] if j == 0 else ch[b + 1]), ch[b + 1]
            p = f"block{b + 1}.layer.{j}"
            out += _bn(f"{p}.bn1", cin) + _conv(f"{p}.conv1", cout, cin, 3) + _bn(f"{p}.bn2", cout)
            out += _conv(f"{p}.conv2", cout, cout, 3)
            if cin != cout:
                out += _conv(f"{p}.convShortcut", cout, cin, 1)
    return out + _bn("bn1", ch[3]) + _linear("fc", NC, ch[3])


VGG_CFG = {"vgg8": [[64], [128], [256], [512], [512]],
           "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
           "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
           "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
           "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4]}


def ref_vgg(cfg, nc=NC):
    """models/vgg.py (batch_norm=True): block<b>.<3m> conv with bias, block<b>.<3m+1> BN, classifier."""
    out, cin = [], 3
    for b, widths in enumerate(cfg):
        for m, v in enumerate(widths):
            out += _conv(f"block{b}.{3 * m}", v, cin, 3, bias=True) + _bn(f"block{b}.{3 * m + 1}", v)
            cin = v
    return out + _linear("classifier", nc, 512)


def ref_mobilenetv2():
    """models/mobilenetv2.py mobile_half (T 6, width 0.5): conv1.0/.1, blocks.<g>.<i>.conv.{0,1,3,4,6,7},
    conv2.0/.1 (1280), classifier.0."""
    setting = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    out = _conv("conv1.0", 16, 3, 3) + _bn("conv1.1", 16)
    cin = 16
    for g, (t, c, n, _) in enumerate(setting):
        cout = c // 2
        for i in range(n):
            p, mid = f"blocks.{g}.{i}.conv", cin * t
            out += _conv(f"{p}.0", mid, cin, 1) + _bn(f"{p}.1", mid)
            out += _conv(f"{p}.3", mid, 1, 3) + _bn(f"{p}.4", mid)
            out += _conv(f"{p}.6", cout, mid, 1) + _bn(f"{p}.7", cout)
            cin = cout
    return out + _conv("conv2.0", 1280, cin, 1) + _bn("conv2.1", 1280) + _linear("classifier.0", NC, 1280)


def ref_shufflev1():
    """models/ShuffleNetv1.py ShuffleV1 (groups 3): conv1, bn1, layer1..3 Bottlenecks (conv1..3, bn1..3), linear."""
    out = _conv("conv1", 24, 3, 1) + _bn("bn1", 24)
    cin = 24
    for L, (w, n) in enumerate(zip((240, 480, 960), (4, 8, 4)), start=1):
        for j in range(n):
            o = w - cin if j == 0 else w
            mid, g = o // 4, (1 if cin == 24 else 3)
            p = f"layer{L}.{j}"
            out += _conv(f"{p}.conv1", mid, cin // g, 1) + _bn(f"{p}.bn1", mid)
            out += _conv(f"{p}.conv2", mid, 1, 3) + _bn(f"{p}.bn2", mid)
            out += _conv(f"{p}.conv3", o, mid // 3, 1) + _bn(f"{p}.bn3", o)
            cin = w
    return out + _linear("linear", NC, 960)


def ref_shufflev2():
    """models/ShuffleNetv2.py ShuffleV2 (net_size 1): conv1, bn1, layer<i>.0 DownBlock (conv1..5, bn1..5),
    layer<i>.<j> BasicBlocks on half the channels (conv1..3, bn1..3), conv2, bn2 (1024), linear."""
    out = _conv("conv1", 24, 3, 1) + _bn("bn1", 24)
    cin = 24
    for L, (w, n) in enumerate(zip((116, 232, 464), (3, 7, 3)), start=1):
        mid, p = w // 2, f"layer{L}.0"
        out += _conv(f"{p}.conv1", cin, 1, 3) + _bn(f"{p}.bn1", cin) + _conv(f"{p}.conv2", mid, cin, 1) + _bn(f"{p}.bn2", mid)
        out += _conv(f"{p}.conv3", mid, cin, 1) + _bn(f"{p}.bn3", mid) + _conv(f"{p}.conv4", mid, 1, 3) + _bn(f"{p}.bn4", mid)
        out += _conv(f"{p}.conv5", mid, mid, 1) + _bn(f"{p}.bn5", mid)
        for j in range(1, n + 1):
            p = f"layer{L}.{j}"
            out += _conv(f"{p}.conv1", mid, mid, 1) + _bn(f"{p}.bn1", mid) + _conv(f"{p}.conv2", mid, 1, 3)
            out += _bn(f"{p}.bn2", mid) + _conv(f"{p}.conv3", mid, mid, 1) + _bn(f"{p}.bn3", mid)
        cin = w
    return out + _conv("conv2", 1024, 464, 1) + _bn("bn2", 1024) + _linear("linear", NC, 1024)


def reference_layout(arch):
    name = zoo.display_name(arch)
    if name.startswith("resnet"):
        depth = int(name[len("resnet"):].split("x")[0])
        return ref_resnet(depth, (32, 64, 128, 256) if name.endswith("x4") else (16, 16, 32, 64))
    if name == "ResNet50":
        return ref_resnet50()
    if name.startswith("wrn_"):
        _, d, k = name.split("_")
        return ref_wrn(int(d), int(k))
    if name.startswith("vgg"):
        return ref_vgg(VGG_CFG[name])
    return {"MobileNetV2": ref_mobilenetv2, "ShuffleV1": ref_shufflev1, "ShuffleV2": ref_shufflev2}[name]()


# ---- the reference forward's feature shapes at 32×32 (is_feat=True: [f0, .., fN, pooled], logits) ----------
def _res(w):
    return [(w[0], 32, 32), (w[1], 32, 32), (w[2], 16, 16), (w[3], 8, 8)]


def reference_feature_shapes(arch):
    name = zoo.display_name(arch)
    if name.startswith("resnet"):
        w = (32, 64, 128, 256) if name.endswith("x4") else (16, 16, 32, 64)
        return _res(w), w[3]
    if name == "ResNet50":
        return [(64, 32, 32), (256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048, 4, 4)], 2048
    if name.startswith("wrn_"):
        k = int(name.split("_")[2])
        return _res((16, 16 * k, 32 * k, 64 * k)), 64 * k
    if name.startswith("vgg"):
        # pool0..pool2 halve 32 → 4; pool3 only runs for 64×64 inputs, so block3 and block4 are both 4×4
        return [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4)], 512
    if name == "MobileNetV2":
        return [(16, 16, 16), (12, 16, 16), (16, 8, 8), (48, 4, 4), (160, 2, 2)], 1280
    if name == "ShuffleV1":
        return [(24, 32, 32), (240, 16, 16), (480, 8, 8), (960, 4, 4)], 960
    if name == "ShuffleV2":
        return [(24, 32, 32), (116, 16, 16), (232, 8, 8), (464, 4, 4)], 1024
    raise KeyError(name)


def test_every_cifar_model_is_covered():
    assert len(CIFAR_MODELS) == 22
    for arch in CIFAR_MODELS:
        reference_layout(arch), reference_feature_shapes(arch)


@pytest.mark.parametrize("arch", CIFAR_MODELS)
def test_reference_layout_loads_with_no_missing_or_unexpected_key(arch):
    layout = reference_layout(arch)
    # the description above has RepDistiller's parameter count (BN buffers are not parameters)
    n = sum(torch.Size(s).numel() for k, s in layout if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert round(n / 1e6, 4) == PARAMS_M[zoo.display_name(arch)], (arch, n)
    g = torch.Generator().manual_seed(0)
    ref_state = {k: (torch.randn(s, generator=g) if s else torch.tensor(7)) for k, s in layout}
    model = timm.create_model(arch, num_classes=NC)
    names = reference_keys.reference_names(arch, model)
    assert sorted(names.values()) == sorted(ref_state), (
        f"missing {sorted(set(ref_state) - set(names.values()))[:5]}, "
        f"unexpected {sorted(set(names.values()) - set(ref_state))[:5]}")
    missing, unexpected = model.load_state_dict({k: ref_state[names[k]] for k in names}, strict=True)
    assert not missing and not unexpected
    got = model.state_dict()
    assert all(torch.equal(got[k], ref_state[r]) for k, r in names.items())


@pytest.mark.parametrize("arch", CIFAR_MODELS)
def test_output_and_every_tap_have_the_reference_shape_at_32(arch):
    feats, pooled = reference_feature_shapes(arch)
    m = timm.create_model(arch, num_classes=NC).eval()
    n = len(m.feature_info)
    assert n == len(feats)
    names = taps.resolve(m, [f"feat{i}" for i in range(n)] + [f"feat{i}_pre" for i in range(n)] + ["pool"])
    with torch.no_grad():
        logits, got = taps.extract(m, torch.randn(2, 3, 32, 32), names)
    assert tuple(logits.shape) == (2, NC)
    assert tuple(got["pool"].shape) == (2, pooled)
    for i, shape in enumerate(feats):
        assert tuple(got[f"feat{i}"].shape[1:]) == shape, (arch, i)
        assert tuple(got[f"feat{i}_pre"].shape[1:]) == shape, (arch, i)
    assert taps.probe_shapes(m, ["feat-1"], (3, 32, 32))["feat-1"] == feats[-1]


def _vgg8_reference_forward(sd, x):
    """RepDistiller's VGG.forward for vgg8 (cfg 'S', one conv per block) written from its equations:
    relu(block0) → pool0 → block1 → relu → pool1 → block2 → relu → pool2 → block3 → relu → [pool3 only if
    h == 64] → block4 → relu → global average → classifier. Eval-mode batch norm."""
    h = x.shape[2]

    def block(b, t):
        t = F.conv2d(t, sd[f"block{b}.0.weight"], sd[f"block{b}.0.bias"], padding=1)
        return F.batch_norm(t, sd[f"block{b}.1.running_mean"], sd[f"block{b}.1.running_var"],
                            sd[f"block{b}.1.weight"], sd[f"block{b}.1.bias"], False, 0.0, 1e-5)

    t = F.relu(block(0, x))
    for b in (1, 2, 3):
        t = F.relu(block(b, F.max_pool2d(t, 2)))
    if h == 64:
        t = F.max_pool2d(t, 2)
    t = F.relu(block(4, t))
    return F.linear(t.mean((2, 3)), sd["classifier.weight"], sd["classifier.bias"])


@pytest.mark.parametrize("size", [32, 64])
def test_vgg_forward_is_the_reference_forward(size):
    torch.manual_seed(0)
    layout = reference_layout("cifar_vgg8")
    sd = {k: (torch.randn(s) * (0.05 if len(s) > 1 else 1) if s else torch.tensor(0)) for k, s in layout}
    for k in sd:
        if k.endswith("running_var"):
            sd[k] = sd[k].abs() + 0.5
    m = timm.create_model("cifar_vgg8", num_classes=NC).eval()
    names = reference_keys.reference_names("cifar_vgg8", m)
    m.load_state_dict({k: sd[r] for k, r in names.items()})
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want = _vgg8_reference_forward(sd, x)
        got = m(x)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    # the old behaviour (a pool before every block) stays available as an option and differs at 32×32
    old = timm.create_model("cifar_vgg8", num_classes=NC, last_pool="always").eval()
    old.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.allclose(old(x), want, atol=1e-4) == (size == 64)


def test_shufflenetv2_preactivation_taps_are_not_shuffled():
    """RepDistiller's ShuffleV2 block returns ``out = shuffle(cat[x1, relu(b)])`` and ``preact = cat[x1, b]``:
    the shuffled ReLU of the pre-activation tap is the post-activation tap, and its first half is the
    untouched half of the last block's input."""
    torch.manual_seed(0)
    m = timm.create_model("cifar_shufflenetv2", num_classes=NC).eval()
    x = torch.randn(2, 3, 32, 32)
    block_inputs = {}
    for s in range(3):
        m.stages[s][-1].register_forward_pre_hook(lambda mod, a, s=s: block_inputs.__setitem__(s, a[0].clone()))
    with torch.no_grad():
        _, post, _ = m.forward_taps(x)
        _, pre, _ = m.forward_taps(x, preact=True)
    for i in (1, 2, 3):
        b, c, h, w = pre[i].shape
        shuffled = F.relu(pre[i]).view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        assert torch.allclose(shuffled, post[i], atol=1e-6), i
        assert torch.equal(pre[i][:, : c // 2], block_inputs[i - 1][:, : c // 2]), i
