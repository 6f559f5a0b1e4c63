"""``ofa``: One-for-All KD, distillation between heterogeneous architectures (CNN ↔ ViT ↔ MLP).

Paper: Hao, Guo, Chen, Tang, Han, Xu, Xu & Wang, "One-for-All: Bridge the Gap Between Heterogeneous
Architectures in Knowledge Distillation", NeurIPS 2023 (arXiv 2310.19444), §3.2–3.3, Eq. (5)–(7);
reference code github:Hao840/OFAKD (``distillers/ofa.py``, ``distillers/utils.py``), read, not copied.

- Per-stage projectors map intermediate student features into the logits space, so that no feature of
  one family is ever compared with a feature of another: only logits meet the teacher's. A CNN stage map
  (C, H, W) goes through log2(H / H_last) depth-wise separable stride-2 blocks (the authors' SepConv:
  dw 3×3 s2, pw 1×1, BN, ReLU, dw 3×3, pw 1×1, BN, ReLU), channels doubling and the last block giving
  max(d_s, d_t) channels (d = the pre-logit width of student and teacher); the last stage gets a 1×1
  conv to max(d_s, d_t); then global average pooling and a linear layer to the classes. A ViT / MLP
  stage (tokens, taken as the model gives them, prefix tokens included: ``feature_format = "native"``)
  goes through patch merging (Swin-style 2×2, LayerNorm, linear; down to a ``final_grid`` × ``final_grid``
  grid, 7 in the authors' code: max(⌊log2(grid / 7)⌋, 0) merges, GELU after the first merge and after every
  one but the last), then max(n − k, 1) ViT blocks (4 heads, torch LayerNorm as timm 0.6.5's) for the k-th
  of n projected stages, then the class token (or the token mean without prefix tokens) and
  a linear layer. Weights initialised as the authors' (kaiming fan-out convs, truncated-normal 0.02 linears).
- The OFA loss (Eq. 7) with the modulating exponent ε on the target class: with p_t, p_s the softmaxes at
  temperature T and 1_y the one-hot label,
  L_OFA = −Σ_c [(p_t,c + 1_y,c)^ε − 1_y,c] · log p_s,c, averaged over the batch;
  ε = 1 is the soft cross-entropy H(p_t, p_s) (KD at T = 1 up to the teacher's entropy); ε > 1 raises the
  target class's weight (p_t,y + 1)^ε − 1 above p_t,y, most for confident teachers (adaptive target
  enhancement), and shrinks the other classes' p_t,c^ε.
- Total: ce_weight·CE(y, z_s) + kd_weight·L_OFA(z_s, z_t; ε) + ofa_weight·Σ_k L_OFA(h_k(F_k), z_t; ε).
Defaults are the authors' (train.py): ε = 1 (their CIFAR-100 runs; 1.5 on ImageNet), T = 1, every weight
1, four stages. Stages, as the authors' ``stage_info``: an isotropic ViT / MLP student's blocks nearest
relative depths 2/12, 4/12, 10/12, 1 (blocks 2, 4, 10, 12 of 12, the authors' choice for ViT-S, DeiT-T,
Mixer-B and ResMLP-S12); a hierarchical student's stages nearest k/4 (``kdsuite.zoo.taps.relative_depth``;
all of them when it has at most ``num_stages``: ResNet layers 1–4, ConvNeXt / Swin stages 1–4); another
``num_stages`` n: depths k/n. Deviations: one ε for every stage (the
authors allow one per stage); a Swin student's stages reach the plugin as timm's NCHW maps and get the CNN
projector (the authors use token blocks for Swin).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method
from kdsuite.zoo import taps as ztaps


def ofa_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, eps: float,
             T: float = 1.0) -> torch.Tensor:
    """Eq. (7): −Σ_c [(p_t + 1_y)^ε − 1_y]_c · log p_s,c, batch mean (softmaxes at temperature T)."""
    onehot = F.one_hot(target, student_logits.shape[1]).to(student_logits.dtype)
    p_t = F.softmax(teacher_logits / T, dim=1)
    weight = (p_t + onehot).pow(eps) - onehot
    return -(weight * F.log_softmax(student_logits / T, dim=1)).sum(1).mean()


class SepConv(nn.Sequential):
    """Depth-wise separable stride-2 block of the CNN projector (halves the map, ``cin`` → ``cout`` channels)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), nn.Conv2d(cin, cin, 1, bias=False),
                         nn.BatchNorm2d(cin), nn.ReLU(),
                         nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class PatchMerge(nn.Module):
    """2×2 neighbouring patch tokens concatenated (LayerNorm of 4C, linear to ``cout``): halves the grid."""

    def __init__(self, grid, cin: int, cout: int, act: bool):
        super().__init__()
        self.grid = grid
        self.norm = nn.LayerNorm(4 * cin)
        self.reduce = nn.Linear(4 * cin, cout, bias=False)
        self.act = nn.GELU() if act else nn.Identity()

    def forward(self, x):
        h, w = self.grid
        b, n, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.act(self.reduce(self.norm(x.reshape(b, -1, 4 * c))))


class TokenProjector(nn.Module):
    """ViT / MLP stage tokens → logits: patch merging on the patch tokens (prefix tokens pass through),
    ViT blocks over all tokens, the class token (or the token mean) and a linear classifier."""

    def __init__(self, grid, prefix: int, dim: int, width: int, num_classes: int, blocks: int, final_grid: int):
        super().__init__()
        self.prefix = prefix
        merges = max(int(math.log2(grid[0] / final_grid)), 0) if grid[0] >= final_grid else 0
        mods, g, c = [], tuple(grid), dim
        for i in range(merges):  # the authors' GELU: after the first merge always, after the last never (unless first)
            mods.append(PatchMerge(g, c, width, act=i == 0 or i != merges - 1))
            g, c = (g[0] // 2, g[1] // 2), width
        if c != width:  # no merge and another width than the pre-logits: a linear map (the authors' widths agree)
            mods.append(nn.Linear(c, width))
        self.merge = nn.Sequential(*mods)
        heads = 4 if width % 4 == 0 else 1
        # torch's LayerNorm (eps 1e-5) as in timm 0.6.5's Block, the authors' version (today's timm: 1e-6)
        self.blocks = nn.Sequential(*[Block(dim=width, num_heads=heads, norm_layer=nn.LayerNorm)
                                      for _ in range(blocks)])
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        pre, patches = x[:, :self.prefix], x[:, self.prefix:]
        patches = self.merge(patches)
        if self.prefix and pre.shape[-1] != patches.shape[-1]:
            raise RuntimeError("prefix tokens of another width than the merged patches")  # guarded at build
        x = self.blocks(torch.cat([pre, patches], dim=1) if self.prefix else patches)
        return self.head(x[:, 0] if self.prefix else x.mean(1))


def conv_projector(shape, last_hw: int, width: int, num_classes: int) -> nn.Module:
    c, h, _ = shape
    n_down = max(int(round(math.log2(max(h, 1) / max(last_hw, 1)))), 0)
    mods = []
    if n_down == 0:
        mods.append(nn.Conv2d(c, width, 1))
    for i in range(n_down):
        cout = width if i == n_down - 1 else 2 * c
        mods.append(SepConv(c, cout))
        c = cout
    return nn.Sequential(*mods, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


def init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _first_reduction(model: nn.Module) -> int:
    info = model.feature_info
    return int(info.reduction()[0]) if hasattr(info, "reduction") else int(info[0].get("reduction", 1))


# the authors' blocks for their 12-block ViT / DeiT / Mixer / ResMLP students: 2, 4, 10 and 12 (stage_info)
TOKEN_DEPTHS = (2 / 12, 4 / 12, 10 / 12, 1.0)


def target_depths(model: nn.Module, n: int):
    """Relative depths the projected stages sit nearest: k/n, or the authors' 2/12, 4/12, 10/12, 1 for an
    isotropic token model (ViT, MLP) with the default four stages."""
    if n == len(TOKEN_DEPTHS) and ztaps.is_token_model(model):
        return TOKEN_DEPTHS
    return tuple(k / n for k in range(1, n + 1))


def pick_stages(model: nn.Module, n: int):
    """The model's stages nearest the :func:`target_depths` (all of them when it has at most n), in order.
    A hierarchical model whose first feature is already at stride 4 (ConvNeXt, Swin: a patchify stem) has
    it as its first stage, as the authors count them, where ``stages`` leaves feature 0 out as a stem."""
    stages = ztaps.resolve(model, ["stages"])
    if not ztaps.is_token_model(model) and ztaps.feature_count(model) > 1 and _first_reduction(model) >= 4:
        stages = ["feat0"] + stages
    if len(stages) <= n:
        return stages
    depth = {t: ztaps.relative_depth(model, int(t[4:])) for t in stages}
    picked = []
    for d in target_depths(model, n):
        t = min(stages, key=lambda s: (abs(depth[s] - d), -depth[s]))
        if t not in picked:
            picked.append(t)
    return picked


@register_method
class OFA(Distiller):
    name = "ofa"
    display_name = "OFA"
    category = "response"
    scheme = "offline"
    paper = "Hao et al. 2023, One-for-All: Bridge the Gap Between Heterogeneous Architectures in KD (NeurIPS)"
    equation = ("ce_w·CE + kd_w·L_OFA(z_s, z_t) + ofa_w·Σ_k L_OFA(h_k(F_k), z_t), "
                "L_OFA = −Σ_c[(p_t+1_y)^ε − 1_y]_c log p_s,c (Eq. 7)")
    hparams = {
        "eps": HParam(1.0, low=0.0, low_open=True, doc="modulating exponent ε on the target class (authors: 1 on "
                                                        "CIFAR-100, 1.5 on ImageNet)"),
        "T": HParam(1.0, low=0.0, low_open=True, doc="softmax temperature of the OFA loss"),
        "ofa_weight": HParam(1.0, low=0.0, doc="weight of the per-stage projector losses"),
        "kd_weight": HParam(1.0, low=0.0, doc="weight of the OFA loss on the student's own logits"),
        "ce_weight": HParam(1.0, low=0.0, doc="weight of the hard-label cross-entropy"),
        "num_stages": HParam(4, low=1, doc="student stages given a projector (nearest relative depths k/n)"),
        "final_grid": HParam(7, low=1, doc="token grid the ViT/MLP projectors merge patches down to"),
    }
    feature_format = "native"  # token stages go to token projectors as token sequences
    teacher_taps = ()

    def __init__(self, student, teachers, hp, ctx):
        self.student_taps = tuple(pick_stages(student, hp.num_stages)) + ("pool",)
        super().__init__(student, teachers, hp, ctx)
        self.stage_taps = [t for t in self.s_taps if t != "pool"]
        s_shapes = self.student_shapes()
        d_s = s_shapes["pool"][-1]
        d_t = ztaps.probe_shapes(self.teacher, ["pool"], ctx.input_shape)["pool"][-1]
        width = max(d_s, d_t)
        infos = self.tap_infos(student, self.stage_taps)
        n = len(self.stage_taps)
        projectors = {}
        if ztaps.is_token_model(student):
            for k, t in enumerate(self.stage_taps, start=1):
                i = infos[t]
                if i.prefix_tokens and i.channels != d_s:
                    raise ConfigError(f"method 'ofa': the student's {t} tokens are {i.channels} wide but its "
                                      f"pre-logits {d_s}; the class token cannot join the merged patches")
                projectors[t] = TokenProjector(i.grid, i.prefix_tokens, i.channels, d_s, ctx.num_classes,
                                               blocks=max(n - k, 1), final_grid=hp.final_grid)
        else:
            last_hw = s_shapes[self.stage_taps[-1]][-2]
            for t in self.stage_taps:
                projectors[t] = conv_projector(s_shapes[t], last_hw, width, ctx.num_classes)
        self.projectors = nn.ModuleDict(projectors)
        self.projectors.apply(init_weights)

    def forward_train(self, x, y):
        t_logits, _ = self.teacher_forward(x)
        s_logits, feats = self.student_forward(x)
        hp = self.hp
        ofa = sum(ofa_loss(self.projectors[t](feats[t]), t_logits, y, hp.eps, hp.T) for t in self.stage_taps)
        return {"ce": hp.ce_weight * losses.ce(s_logits, y),
                "kd": hp.kd_weight * ofa_loss(s_logits, t_logits, y, hp.eps, hp.T),
                "ofa": hp.ofa_weight * ofa}
