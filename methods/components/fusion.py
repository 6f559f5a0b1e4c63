"""Multi-stage feature fusion: ReviewKD's attention-based fusion (ABF) chain and its hierarchical context
loss (HCL), built from the suite's existing taps.

Paper: Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021 (arXiv 2104.09044),
§3.3–3.4: the student's stages are visited from the deepest to the shallowest; each stage's feature is fused
with the (upsampled) fused result of the deeper stages by two attention maps predicted from both (ABF), and
each fused map is compared with the teacher's feature of the same stage by HCL, an MSE at full resolution
plus MSEs of average-pooled 4×4, 2×2 and 1×1 versions with halving weights.
Reference code: mdistiller (github.com/megvii-research/mdistiller) ``mdistiller/distillers/ReviewKD.py``
(``ABF``, ``hcl_loss``), which this follows: ABF = 1×1 conv + BN to ``mid`` channels, attention
``sigmoid(1×1 conv([x, y]))`` with two output maps, x·a₀ + y·a₁, nearest resize to the teacher's size, then
3×3 conv + BN to the teacher's channels; convs without bias initialised kaiming_uniform(a=1); mid =
min(512, channels of the deepest input).

Role in the flow: a plugin builds :class:`ReviewFusion` in ``__init__`` from the probed shapes of its taps
and calls it on the student's features (shallow → deep, the pooled vector last, as (B, C, 1, 1)).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

Size = Tuple[int, int]


class ABF(nn.Module):
    """One attention-based fusion step (mdistiller's ``ABF``)."""

    def __init__(self, in_channel: int, mid_channel: int, out_channel: int, fuse: bool):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channel, mid_channel, kernel_size=1, bias=False),
                                   nn.BatchNorm2d(mid_channel))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channel, out_channel, kernel_size=3, padding=1, bias=False),
                                   nn.BatchNorm2d(out_channel))
        self.att_conv = nn.Sequential(nn.Conv2d(mid_channel * 2, 2, kernel_size=1), nn.Sigmoid()) if fuse else None
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None,
                out_size: Optional[Size] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(output, residual)``: the output (teacher channels, ``out_size``) and the fused mid-channel map
        handed to the next, shallower step."""
        x = self.conv1(x)
        if self.att_conv is not None:
            residual = F.interpolate(residual, size=tuple(x.shape[2:]), mode="nearest")
            z = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * z[:, 0:1] + residual * z[:, 1:2]
        if out_size is not None and tuple(x.shape[2:]) != tuple(out_size):
            x = F.interpolate(x, size=tuple(out_size), mode="nearest")
        return self.conv2(x), x


class ReviewFusion(nn.Module):
    """The ABF chain over ``len(in_channels)`` student features (shallow → deep; the deepest one is not
    fused with anything). ``out_channels`` / ``out_sizes``: the teacher's features at the same positions."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], out_sizes: Sequence[Size],
                 max_mid_channel: int = 512):
        super().__init__()
        if not (len(in_channels) == len(out_channels) == len(out_sizes)):
            raise ValueError("ReviewFusion needs as many teacher features as student features")
        mid = min(max_mid_channel, in_channels[-1])
        n = len(in_channels)
        # stored deep → shallow, the order the chain runs in (mdistiller's ``abfs[::-1]``)
        self.abfs = nn.ModuleList([ABF(in_channels[i], mid, out_channels[i], i < n - 1) for i in reversed(range(n))])
        self.out_sizes = [tuple(s) for s in reversed(out_sizes)]

    def forward(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """The fused maps, in the order of ``feats`` (shallow → deep)."""
        xs = list(feats)[::-1]
        out, residual = self.abfs[0](xs[0], out_size=self.out_sizes[0])
        results = [out]
        for x, abf, size in zip(xs[1:], self.abfs[1:], self.out_sizes[1:]):
            out, residual = abf(x, residual, size)
            results.insert(0, out)
        return results


def hcl_loss(fstudent: Sequence[torch.Tensor], fteacher: Sequence[torch.Tensor],
             levels: Sequence[int] = (4, 2, 1)) -> torch.Tensor:
    """Hierarchical context loss (mdistiller's ``hcl_loss``): per pair, (MSE + Σ_k 2^-k·MSE(pool_lk)) / (1 + Σ_k
    2^-k) over the pooled sizes l_k of ``levels`` smaller than the map's height, summed over pairs."""
    total = 0.0
    for fs, ft in zip(fstudent, fteacher):
        h = fs.shape[2]
        loss = F.mse_loss(fs, ft)
        cnt, tot = 1.0, 1.0
        for lv in levels:
            if lv >= h:
                continue
            cnt /= 2.0
            loss = loss + F.mse_loss(F.adaptive_avg_pool2d(fs, (lv, lv)), F.adaptive_avg_pool2d(ft, (lv, lv))) * cnt
            tot += cnt
        total = total + loss / tot
    return total
