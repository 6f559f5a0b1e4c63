"""Taps of every timm family through timm's own ``forward_intermediates`` (issue 28): each tap says what it
is (an NCHW map or a token sequence with or without prefix tokens, its grid, channels and relative depth),
and turning tokens into a map is an explicit, recorded step (``connectors.tokens_to_map``)."""
from functools import partial

import pytest
import timm
import torch
from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock

from kdsuite import zoo
from kdsuite.core.errors import ConfigError
from kdsuite.methods.components.connectors import map_to_tokens, tokens_to_map
from kdsuite.zoo import taps


def tiny(name):
    """Tiny instances (16×16 images, patch 4, 2–3 blocks) of each family."""
    if name == "vit":
        return timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=16, patch_size=4, depth=3,
                                 embed_dim=16, num_heads=2)
    if name == "deit":  # class + distillation token
        return timm.create_model("deit_tiny_distilled_patch16_224", num_classes=10, img_size=16, patch_size=4,
                                 depth=2, embed_dim=16, num_heads=2)
    if name == "vit_reg":  # register tokens, no class token
        return timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=16, patch_size=4, depth=2,
                                 embed_dim=16, num_heads=2, reg_tokens=3, class_token=False, global_pool="avg")
    if name == "swin":
        return timm.create_model("swin_tiny_patch4_window7_224", num_classes=10, img_size=32, patch_size=4,
                                 window_size=2, embed_dim=8, depths=(1, 1, 1), num_heads=(1, 1, 1))
    if name == "convnext":
        return timm.create_model("convnext_atto", num_classes=10, dims=(8, 16, 24, 32), depths=(1, 1, 1, 1))
    if name == "mixer":
        return MlpMixer(num_classes=10, img_size=16, patch_size=4, num_blocks=2, embed_dim=16)
    if name == "resmlp":
        return MlpMixer(num_classes=10, img_size=16, patch_size=4, num_blocks=2, embed_dim=16, mlp_ratio=4,
                        block_layer=partial(ResBlock, init_values=1e-4), norm_layer=Affine)
    if name == "efficientnet":
        return timm.create_model("efficientnet_b0", num_classes=10)
    if name == "mobilenet":
        return timm.create_model("mobilenetv3_small_050", num_classes=10)
    if name == "cifar":
        return zoo.create_model("cifar_resnet8", num_classes=10)
    raise KeyError(name)


SIZE = {"swin": 32, "convnext": 32}
# (family, kind of every stage tap, prefix tokens)
EXPECTED = {"vit": ("ViT", "tokens", 1), "deit": ("ViT", "tokens", 2), "vit_reg": ("ViT", "tokens", 3),
            "swin": ("Swin", "map", 0), "convnext": ("CNN", "map", 0), "mixer": ("MLP", "tokens", 0),
            "resmlp": ("MLP", "tokens", 0), "efficientnet": ("CNN", "map", 0), "mobilenet": ("CNN", "map", 0),
            "cifar": ("CNN", "map", 0)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_family_describes_its_taps(name):
    torch.manual_seed(0)
    m = tiny(name).eval()
    size = SIZE.get(name, 16)
    fam, kind, prefix = EXPECTED[name]
    assert taps.family(m) == fam
    stage_taps = taps.resolve(m, ["stages"])
    n = taps.feature_count(m)
    # isotropic token models: every block is a stage; hierarchical ones: feature 0 is a stem / first stage
    assert len(stage_taps) == (n if kind == "tokens" else n - 1)
    info = taps.tap_info(m, stage_taps + ["pool"], (3, size, size))
    x = torch.randn(2, 3, size, size)
    logits, feats = taps.extract(m, x, stage_taps + ["pool"])
    assert torch.allclose(logits, m(x), atol=1e-5)  # the taps' forward is the model's forward
    depths = [info[t].depth for t in stage_taps]
    assert depths == sorted(depths) and depths[-1] == 1.0 and 0 < depths[0] < 1
    for t in stage_taps:
        i = info[t]
        assert (i.kind, i.prefix_tokens, i.family) == (kind, prefix, fam)
        f = feats[t]
        if kind == "tokens":
            h, w = i.grid
            assert f.shape == (2, prefix + h * w, i.channels)
            assert (h, w) == (size // 4, size // 4)  # patch 4
            assert "tokens" in i.describe() and (f"{prefix} prefix" in i.describe()) == (prefix > 0)
        else:
            assert f.shape == (2, i.channels, *i.grid)
    assert info["pool"].kind == "vector" and feats["pool"].shape == (2, info["pool"].channels)


def test_vit_tokens_are_the_blocks_outputs_prefix_first():
    """Independent of timm's forward_intermediates: run the blocks by hand."""
    torch.manual_seed(0)
    m = tiny("deit").eval()
    x = torch.randn(2, 3, 16, 16)
    _, feats = taps.extract(m, x, ["feat0", "feat1"])
    h = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
    for i, blk in enumerate(m.blocks):
        h = blk(h)
        assert torch.allclose(feats[f"feat{i}"], h, atol=1e-6)
    assert feats["feat1"].shape[1] == 2 + 16  # class and distillation token, then the 4×4 grid


def test_tokens_to_map_is_timm_layout_and_round_trips():
    torch.manual_seed(0)
    m = tiny("vit").eval()
    x = torch.randn(2, 3, 16, 16)
    _, feats = taps.extract(m, x, ["feat1"])
    info = taps.tap_info(m, ["feat1"], (3, 16, 16))["feat1"]
    fmap = tokens_to_map(feats["feat1"], info.grid, info.prefix_tokens)
    ref = m.forward_intermediates(x, indices=[1], output_fmt="NCHW", intermediates_only=True)[0]  # timm's own
    assert torch.equal(fmap, ref)
    assert torch.equal(map_to_tokens(fmap), feats["feat1"][:, 1:])
    # a hand-made sequence: token (r, c) of the grid is map position [:, r, c]
    t = torch.arange(2 * (1 + 6) * 3, dtype=torch.float64).reshape(2, 7, 3)
    mp = tokens_to_map(t, (2, 3), 1)
    assert torch.equal(mp[1, :, 1, 2], t[1, 1 + 1 * 3 + 2])
    with pytest.raises(ValueError, match="prefix"):
        tokens_to_map(t, (2, 2), 1)


def test_relative_depth_rule():
    cnn, vit = tiny("cifar"), timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=16,
                                                patch_size=4, depth=12, embed_dim=16, num_heads=2)
    assert [taps.relative_depth(cnn, i) for i in range(4)] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert taps.relative_depth(vit, 3) == pytest.approx(1 / 3) and taps.relative_depth(vit, -1) == 1.0


def test_patch_models_are_checked_against_the_data_at_build_time():
    default = zoo.create_model("vit_tiny_patch16_224", num_classes=10)
    with pytest.raises(ConfigError, match=r"built for 224×224 images.*16×16.*img_size"):
        zoo.check_input(default, "vit_tiny_patch16_224", (3, 16, 16))
    odd = zoo.create_model("vit_tiny_patch16_224", num_classes=10, img_size=18, patch_size=4, depth=1)
    with pytest.raises(ConfigError, match="patch size 4×4 does not divide"):
        zoo.check_input(odd, "vit_tiny_patch16_224", (3, 18, 18))
    zoo.check_input(tiny("vit"), "vit_tiny_patch16_224", (3, 16, 16))  # fits: nothing raised
    zoo.check_input(tiny("cifar"), "cifar_resnet8", (3, 16, 16))
