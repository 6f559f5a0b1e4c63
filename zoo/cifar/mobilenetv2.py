"""MobileNetV2 (Sandler et al. 2018), the CIFAR variant of the KD benchmarks ("mobile_half" in
RepDistiller): width multiplier 0.5, expansion 6, first stride 2 and the second block group at
stride 1, a 1280-channel 1×1 head. Every inverted residual keeps its expansion convolution, as
there."""
from __future__ import annotations

import torch.nn as nn

from kdsuite.zoo.cifar._register import cifar_model
from kdsuite.zoo.cifar.common import CifarNet, init_weights


def _conv_bn(cin, cout, k, stride, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([nn.ReLU(inplace=True)] if relu else [])


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(*_conv_bn(cin, mid, 1, 1), *_conv_bn(mid, mid, 3, stride, groups=mid),
                                  *_conv_bn(mid, cout, 1, 1, relu=False))

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.residual else out


class CifarMobileNetV2(CifarNet):
    # (expansion, channels, repeats, stride) of the seven block groups
    SETTING = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    # block groups forming each tapped stage (the positions RepDistiller reads features from)
    STAGES = [(0, 2), (2, 3), (3, 5), (5, 7)]

    def __init__(self, num_classes: int = 100, in_chans: int = 3, width: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        cin = int(32 * width)
        self.stem = nn.Sequential(*_conv_bn(in_chans, cin, 3, 2))
        groups = []
        for t, c, n, s in self.SETTING:
            cout = int(c * width)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
            groups.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList([nn.Sequential(*groups[a:b]) for a, b in self.STAGES])
        chans = [int(self.SETTING[b - 1][1] * width) for _, b in self.STAGES]
        self.stage_acts = nn.ModuleList([nn.Identity() for _ in self.STAGES])
        self.num_features = 1280
        self.final = nn.Sequential(*_conv_bn(cin, self.num_features, 1, 1))
        self.fc = nn.Linear(self.num_features, num_classes)
        self._finish_init(int(32 * width), chans, (2, 4, 8, 16))
        init_weights(self, linear_std=0.01)


cifar_model("cifar_mobilenetv2", "MobileNetV2", CifarMobileNetV2)
