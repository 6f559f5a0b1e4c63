"""``ofa`` against the authors' code (github:Hao840/OFAKD, ``distillers/ofa.py`` and ``distillers/utils.py``,
read for the facts): its defaults are ``train.py``'s, its stages are their ``stage_info``'s, and on the same
tensors and weights every loss term equals an independent float64 computation written here from the
authors' description — functional SepConv / patch merging / ViT blocks and their loss
``−Σ (softmax(z_t) + 1_y)^ε − 1_y) · log softmax(z_s)``. A projector built otherwise (another activation,
another LayerNorm ε, other stages) or a loss written otherwise fails these."""
import math

import pytest
import torch
import torch.nn.functional as F
from timm.models.mlp_mixer import MlpMixer

from kdsuite import zoo
from kdsuite.methods.base import BuildContext
from kdsuite.methods.hparams import resolve_hparams
from kdsuite.methods.registry import get_method
from kdsuite.methods.plugins.ofa import SepConv, TokenProjector, pick_stages
from kdsuite.zoo import taps as ztaps

LN_EPS = 1e-5  # torch.nn.LayerNorm, the norm of timm 0.6.5's Block and of the authors' PatchMerging


def authors_loss(zs, zt, y, eps, T):
    ps, pt = F.softmax(zs / T, dim=1), F.softmax(zt / T, dim=1)
    mask = F.one_hot(y, zs.shape[1]).to(zs.dtype)
    return (-((pt + mask) ** eps - mask) * torch.log(ps)).sum(-1).mean()


def bn_train(x, bn):
    mean, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


def sepconv(x, blk):
    dw1, pw1, bn1, _, dw2, pw2, bn2, _ = list(blk)
    x = F.conv2d(x, dw1.weight, stride=2, padding=1, groups=x.shape[1])
    x = torch.relu(bn_train(F.conv2d(x, pw1.weight), bn1))
    x = F.conv2d(x, dw2.weight, stride=1, padding=1, groups=x.shape[1])
    return torch.relu(bn_train(F.conv2d(x, pw2.weight), bn2))


def conv_head(x, proj):
    for m in proj:
        if isinstance(m, SepConv):
            x = sepconv(x, m)
        elif isinstance(m, torch.nn.Conv2d):
            x = F.conv2d(x, m.weight, m.bias)
        elif isinstance(m, torch.nn.Linear):
            return F.linear(x.mean((2, 3)), m.weight, m.bias)
    raise AssertionError("no classifier at the end of the CNN projector")


def merge(x, grid, pm, gelu):
    b, _, c = x.shape
    h, w = grid
    x = x.reshape(b, h, w, c)
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1).reshape(b, -1, 4 * c)
    x = F.layer_norm(x, (4 * c,), pm.norm.weight, pm.norm.bias, LN_EPS) @ pm.reduce.weight.T
    return F.gelu(x) if gelu else x


def vit_block(x, blk, heads=4):
    b, n, c = x.shape
    h = F.layer_norm(x, (c,), blk.norm1.weight, blk.norm1.bias, LN_EPS)
    q, k, v = F.linear(h, blk.attn.qkv.weight, blk.attn.qkv.bias).reshape(b, n, 3, heads, c // heads).unbind(2)
    att = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(c // heads), -1)
    x = x + F.linear(torch.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, n, c), blk.attn.proj.weight,
                     blk.attn.proj.bias)
    h = F.layer_norm(x, (c,), blk.norm2.weight, blk.norm2.bias, LN_EPS)
    return x + F.linear(F.gelu(F.linear(h, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)


def token_head(x, proj, grid, prefix):
    merges = [m for m in proj.merge if not isinstance(m, torch.nn.Linear)]
    pre, x = x[:, :prefix], x[:, prefix:]
    for i, pm in enumerate(merges):  # the authors: GELU after merge 0, and after every merge but the last
        x = merge(x, grid, pm, gelu=i == 0 or i != len(merges) - 1)
        grid = (grid[0] // 2, grid[1] // 2)
    x = torch.cat([pre, x], 1)
    for blk in proj.blocks:
        x = vit_block(x, blk)
    head = proj.head
    return F.linear(x[:, 0] if prefix else x.mean(1), head.weight, head.bias)


def build(student, teacher, **hp):
    cls = get_method("ofa")
    ctx = BuildContext(num_classes=10, input_shape=(3, 16, 16), epochs=1, steps_per_epoch=2, batch_size=4)
    m = cls(student, [teacher.eval().requires_grad_(False)], resolve_hparams("ofa", cls.hparams, hp), ctx)
    teacher.double()
    return m.double().train()


def tiny_vit(depth, patch=2):
    return zoo.create_model("vit_tiny_patch16_224", num_classes=10, img_size=16, patch_size=patch, depth=depth,
                            embed_dim=32, num_heads=2)


def check_terms(m, x, y, heads, eps, T):
    torch.manual_seed(3)
    got = m.forward_train(x, y)
    t_logits = m.teacher(x)
    s_logits, feats = ztaps.extract(m.student, x, m.stage_taps)
    ofa = sum(authors_loss(heads(t, feats[t]), t_logits, y, eps, T) for t in m.stage_taps)
    ce = F.cross_entropy(s_logits, y)
    want = {"ce": ce, "kd": authors_loss(s_logits, t_logits, y, eps, T), "ofa": ofa}
    for k in ("ce", "kd", "ofa"):
        assert got[k].dtype == torch.float64
        assert got[k].item() == pytest.approx(want[k].item(), rel=1e-9, abs=1e-12), k


def test_defaults_are_the_authors_train_py():
    hp = get_method("ofa").hparams
    # train.py: --ofa-eps [1], --ofa-temperature 1, --ofa-loss-weight 1, --gt-loss-weight 1,
    # --kd-loss-weight 1, --ofa-stage 1 2 3 4; utils: final_patch_grid = 7
    assert {k: hp[k].default for k in ("eps", "T", "ofa_weight", "ce_weight", "kd_weight", "num_stages",
                                       "final_grid")} == {"eps": 1.0, "T": 1.0, "ofa_weight": 1.0, "ce_weight": 1.0,
                                                          "kd_weight": 1.0, "num_stages": 4, "final_grid": 7}


def test_stages_are_the_authors_stage_info():
    # their stage_info: ViT-S / DeiT-T / Mixer-B / ResMLP-S12 feature indices 1, 3, 9, 11; ResNet layer1-4
    assert pick_stages(tiny_vit(12, patch=4), 4) == ["feat1", "feat3", "feat9", "feat11"]
    mixer = MlpMixer(num_classes=10, img_size=32, patch_size=8, num_blocks=12, embed_dim=32)
    assert pick_stages(mixer, 4) == ["feat1", "feat3", "feat9", "feat11"]
    r18 = zoo.create_model("resnet18", num_classes=10)
    assert [r18.feature_info[int(t[4:])]["module"] for t in pick_stages(r18, 4)] == [f"layer{i}" for i in range(1, 5)]
    cnx = zoo.create_model("convnext_atto", num_classes=10)  # a stride-4 patchify stem: stages 0-3 all count
    assert [cnx.feature_info[int(t[4:])]["module"] for t in pick_stages(cnx, 4)] == [f"stages.{i}" for i in range(4)]


@pytest.mark.parametrize("eps,T", [(1.0, 1.0), (1.5, 2.0)])
def test_cnn_student_terms_equal_the_independent_float64_computation(eps, T):
    torch.manual_seed(0)
    m = build(zoo.create_model("cifar_resnet8", num_classes=10), tiny_vit(4, patch=4), eps=eps, T=T)
    x, y = torch.randn(6, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 9, 9])
    check_terms(m, x, y, lambda t, f: conv_head(f, m.projectors[t]), eps, T)


@pytest.mark.parametrize("final_grid,merges", [(4, 1), (2, 2)])
def test_vit_student_terms_equal_the_independent_float64_computation(final_grid, merges):
    torch.manual_seed(1)
    m = build(tiny_vit(12), zoo.create_model("cifar_resnet8", num_classes=10), eps=1.5, final_grid=final_grid)
    proj = m.projectors["feat1"]
    assert isinstance(proj, TokenProjector) and len(proj.merge) == merges  # 8×8 patch grid → final_grid
    assert [len(m.projectors[t].blocks) for t in m.stage_taps] == [3, 2, 1, 1]  # max(4 − stage, 1)
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.tensor([4, 1, 0, 7])
    check_terms(m, x, y, lambda t, f: token_head(f, m.projectors[t], (8, 8), 1), 1.5, 1.0)
