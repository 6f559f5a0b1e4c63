"""ShuffleNet V1 (Zhang et al. 2018; groups 3, widths 240-480-960, blocks 4-8-4) and ShuffleNet V2
(Ma et al. 2018; 1× widths 116-232-464, blocks 3-7-3, 1024-channel head), the CIFAR variants of the
KD benchmarks (RepDistiller's ShuffleV1 / ShuffleV2): 1×1 stem at stride 1, three stride-2 stages."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.zoo.cifar._register import cifar_model
from kdsuite.zoo.cifar.common import CifarNet


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class V1Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int, final_relu: bool = True):
        super().__init__()
        self.stride, self.final_relu = stride, final_relu
        mid = cout // 4
        g = 1 if cin == 24 else groups  # the first block after the stem uses an ungrouped 1×1
        self.g = g
        self.conv1 = nn.Conv2d(cin, mid, 1, groups=g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else None

    def forward(self, x):
        out = channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.g)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = torch.cat([out, self.pool(x)], 1) if self.stride == 2 else out + x
        return F.relu(out) if self.final_relu else out


class CifarShuffleV1(CifarNet):
    def __init__(self, num_classes: int = 100, in_chans: int = 3, widths=(240, 480, 960), blocks=(4, 8, 4), groups=3):
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        stages, cin = [], 24
        for w, n in zip(widths, blocks):
            layers = []
            for i in range(n):
                # the stride-2 block concatenates its pooled input, so its branch makes the rest
                layers.append(V1Block(cin, w - cin if i == 0 else w, 2 if i == 0 else 1, groups, final_relu=i < n - 1))
                cin = w
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.stage_acts = nn.ModuleList([nn.ReLU() for _ in stages])
        self.final = nn.Identity()
        self.num_features = widths[-1]
        self.fc = nn.Linear(widths[-1], num_classes)
        self._finish_init(24, list(widths), (2, 4, 8))


class V2Basic(nn.Module):
    """Split in halves, transform one, concatenate, shuffle. ``final_relu=False`` returns the
    shuffled concatenation before the branch's last ReLU; the untouched half is the output of a
    ReLU already, so the stage's ReLU then gives exactly the block's usual output.
    :meth:`CifarShuffleV2.preact_of` undoes the shuffle for the pre-activation tap."""

    def __init__(self, c: int, final_relu: bool = True):
        super().__init__()
        h = c // 2
        self.conv1 = nn.Conv2d(h, h, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(h)
        self.conv2 = nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False)
        self.bn2 = nn.BatchNorm2d(h)
        self.conv3 = nn.Conv2d(h, h, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(h)
        self.final_relu = final_relu

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        out = self.bn3(self.conv3(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x2)))))))
        if self.final_relu:
            out = F.relu(out)
        return channel_shuffle(torch.cat([x1, out], 1), 2)


class V2Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.left = nn.Sequential(nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                  nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        self.right = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                                   nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                                   nn.Conv2d(mid, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))

    def forward(self, x):
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class CifarShuffleV2(CifarNet):
    """Pre-activation taps (``feat<i>_pre``) are the concatenation [untouched half, branch before its
    ReLU] *before* the channel shuffle, as RepDistiller's ShuffleV2 returns them (and mdistiller's
    copy); the post-activation taps are shuffled, as the blocks' outputs are."""

    def __init__(self, num_classes: int = 100, in_chans: int = 3, widths=(116, 232, 464), blocks=(3, 7, 3), head=1024):
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        stages, cin = [], 24
        for w, n in zip(widths, blocks):
            stages.append(nn.Sequential(V2Down(cin, w), *[V2Basic(w, final_relu=i < n - 1) for i in range(n)]))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.stage_acts = nn.ModuleList([nn.ReLU() for _ in stages])
        self.final = nn.Sequential(nn.Conv2d(cin, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU(inplace=True))
        self.num_features = head
        self.fc = nn.Linear(head, num_classes)
        self._finish_init(24, list(widths), (2, 4, 8))

    def preact_of(self, index, pre, post):
        if index == 0:
            return pre
        # a stage's pre-activation comes out of its last block already shuffled (2 groups); shuffling
        # again with C/2 groups is the inverse permutation
        return channel_shuffle(pre, pre.shape[1] // 2)


cifar_model("cifar_shufflenetv1", "ShuffleV1", CifarShuffleV1)
cifar_model("cifar_shufflenetv2", "ShuffleV2", CifarShuffleV2)
