"""Wide residual networks for CIFAR (Zagoruyko & Komodakis 2016): pre-activation blocks, depth 6n+4,
widths 16, 16k, 32k, 64k — wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2 as in RepDistiller.

Stage outputs carry no trailing activation (the next block's BN-ReLU comes first); the
pre-activation feature of a stage is therefore the BN that feeds the next ReLU, as RepDistiller
defines it for AB."""
from __future__ import annotations

from functools import partial

import torch.nn as nn
import torch.nn.functional as F

from kdsuite.zoo.cifar._register import cifar_model
from kdsuite.zoo.cifar.common import CifarNet, init_weights


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(act))))
        # with a projection the shortcut sees the activated input, as in the reference code
        return out + (x if self.equal else self.shortcut(act))


class WideResNet(CifarNet):
    def __init__(self, depth: int, widen: int, num_classes: int = 100, in_chans: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        self.num_classes = num_classes
        self.stem = nn.Conv2d(in_chans, ch[0], 3, 1, 1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            stages.append(nn.Sequential(*[PreActBlock(ch[i] if j == 0 else ch[i + 1], ch[i + 1], stride if j == 0 else 1)
                                          for j in range(n)]))
        self.stages = nn.ModuleList(stages)
        self.stage_acts = nn.ModuleList([nn.Identity() for _ in stages])
        self.final = nn.Sequential(nn.BatchNorm2d(ch[3]), nn.ReLU(inplace=True))
        self.num_features = ch[3]
        self.fc = nn.Linear(ch[3], num_classes)
        self._finish_init(ch[0], ch[1:], (1, 2, 4))
        init_weights(self, zero_linear_bias=True)

    def preact_of(self, index, pre, post):
        if index == 0 or index > len(self.stages):
            return pre
        bn = self.stages[index][0].bn1 if index < len(self.stages) else self.final[0]
        # the same normalisation the next layer applies, without counting the batch twice in BN's
        # running statistics
        if bn.training:
            return F.batch_norm(post, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
        return F.batch_norm(post, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


for _d, _k in ((16, 1), (16, 2), (40, 1), (40, 2)):
    cifar_model(f"cifar_wrn_{_d}_{_k}", f"wrn_{_d}_{_k}", partial(WideResNet, _d, _k))
