"""The CIFAR KD family: registered in timm, parameter counts of RepDistiller's models, one traversal
behind forward / forward_features / forward_intermediates / taps, pre-activation features."""
import pytest
import timm
import torch
import torch.nn.functional as F

from kdsuite import zoo
from kdsuite.zoo import taps

# num_classes=100, counted from RepDistiller's model code (shared/reference-numbers.md §F), in millions
PARAMS_M = dict(resnet8=0.0839, resnet14=0.1811, resnet20=0.2783, resnet32=0.4728, resnet44=0.6672, resnet56=0.8616,
                resnet110=1.7366, resnet8x4=1.2335, resnet32x4=7.4339, ResNet50=23.7053, wrn_16_1=0.1809,
                wrn_16_2=0.7033, wrn_40_1=0.5698, wrn_40_2=2.2552, vgg8=3.9650, vgg11=9.2773, vgg13=9.4622,
                vgg16=14.7744, vgg19=20.0867, MobileNetV2=0.8128, ShuffleV1=0.9493, ShuffleV2=1.3555)
EXPECTED = {"cifar_resnet8", "cifar_resnet14", "cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56",
            "cifar_resnet110", "cifar_resnet8x4", "cifar_resnet32x4", "cifar_wrn_16_1", "cifar_wrn_16_2",
            "cifar_wrn_40_1", "cifar_wrn_40_2", "cifar_vgg8", "cifar_vgg11", "cifar_vgg13", "cifar_vgg16",
            "cifar_vgg19", "cifar_mobilenetv2", "cifar_shufflenetv1", "cifar_shufflenetv2", "cifar_resnet50"}
SMALL = ["cifar_resnet8", "cifar_resnet8x4", "cifar_wrn_16_1", "cifar_vgg8", "cifar_mobilenetv2",
         "cifar_shufflenetv1", "cifar_shufflenetv2"]


def test_family_is_listed_by_timm():
    assert set(timm.list_models("cifar_*")) == EXPECTED
    assert {zoo.display_name(n) for n in EXPECTED} == set(PARAMS_M)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_count_matches_the_literature(name):
    m = timm.create_model(name, num_classes=100)
    n = sum(p.numel() for p in m.parameters()) / 1e6
    want = PARAMS_M[zoo.display_name(name)]
    assert abs(n - want) / want < 0.005, (name, n, want)


def test_pretrained_is_refused_and_unknown_names_listed():
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("cifar_resnet8", pretrained=True)
    from kdsuite.core.errors import ConfigError
    with pytest.raises(ConfigError, match="cifar_resnet8x4"):
        zoo.create_model("cifar_resnet8x5", num_classes=10)


@pytest.mark.parametrize("name", SMALL)
def test_one_traversal_behind_every_entry_point(name):
    torch.manual_seed(0)
    m = timm.create_model(name, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = m(x)
        assert torch.allclose(logits, m.forward_head(m.forward_features(x)), atol=1e-5)
        lt, feats, pooled = m.forward_taps(x)
        assert torch.allclose(logits, lt, atol=1e-5)
        assert [f.shape[1] for f in feats] == [d["num_chs"] for d in m.feature_info]
        last2 = m.forward_intermediates(x, indices=2, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(last2, feats[-2:]))
        _, pre, _ = m.forward_taps(x, preact=True)
        for i, act in enumerate(m.stage_acts, start=1):
            if isinstance(act, torch.nn.ReLU):
                post = feats[i]
                if name == "cifar_shufflenetv2":  # its pre-activation taps are unshuffled, as in RepDistiller
                    b, c, h, w = post.shape
                    post = post.view(b, c // 2, 2, h, w).transpose(1, 2).reshape(b, c, h, w)
                assert torch.allclose(F.relu(pre[i]), post, atol=1e-6), (name, i)
                assert (pre[i] < 0).any(), "a pre-activation should keep negative values"
        got_logits, got = taps.extract(m, x, taps.resolve(m, ["stages", "pool"]))
        assert torch.allclose(got_logits, logits, atol=1e-5) and torch.allclose(got["pool"], pooled)


def test_wrn_preactivation_is_the_next_batch_norm():
    torch.manual_seed(0)
    m = timm.create_model("cifar_wrn_16_1", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, post, _ = m.forward_taps(x)
        _, pre, _ = m.forward_taps(x, preact=True)
    assert torch.allclose(pre[1], m.stages[1][0].bn1(post[1]), atol=1e-6)
    assert torch.allclose(pre[3], m.final[0](post[3]), atol=1e-6)
    # taking the pre-activation in training mode counts the batch in BN's running statistics once,
    # exactly as a plain forward does
    with_pre = timm.create_model("cifar_wrn_16_1", num_classes=10)
    plain = timm.create_model("cifar_wrn_16_1", num_classes=10)
    plain.load_state_dict(with_pre.state_dict())
    with_pre.traverse(x, with_pre=True)
    plain.traverse(x, with_pre=False)
    for bn_a, bn_b in ((with_pre.stages[1][0].bn1, plain.stages[1][0].bn1), (with_pre.final[0], plain.final[0])):
        assert torch.equal(bn_a.running_mean, bn_b.running_mean) and bn_a.num_batches_tracked == 1


@pytest.mark.parametrize("name,size", [("cifar_resnet8", 8), ("cifar_wrn_16_1", 8), ("cifar_mobilenetv2", 8),
                                       ("cifar_shufflenetv2", 8), ("cifar_vgg8", 16), ("cifar_shufflenetv1", 16)])
def test_small_inputs_work(name, size):
    m = timm.create_model(name, num_classes=10)
    assert m(torch.randn(2, 3, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", SMALL)
def test_every_parameter_receives_a_gradient(name):
    m = timm.create_model(name, num_classes=10)
    m(torch.randn(2, 3, 16, 16)).sum().backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None]
    assert not dead, dead


def test_timm_models_get_taps_through_forward_intermediates():
    m = timm.create_model("resnet18", num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    names = taps.resolve(m, ["feat-1", "pool"])
    logits, feats = taps.extract(m, x, names)
    assert torch.allclose(logits, m(x), atol=1e-5)
    assert feats[names[0]].shape[1] == 512
    with pytest.raises(ValueError, match="pre-activation"):
        taps.resolve(m, ["feat2_pre"])


def test_registration_files_models_under_zoo_modules_not_functools():
    """timm appends each registered name to its function's module ``__all__``: that must be our module."""
    import functools

    import timm

    assert not [n for n in getattr(functools, "__all__", []) if n.startswith("cifar_")]
    mods = {m for m in timm.list_modules() if any(n.startswith("cifar_") for n in timm.list_models(module=m))}
    assert mods and mods <= {"resnet", "wrn", "vgg", "mobilenetv2", "shufflenet"}, mods
