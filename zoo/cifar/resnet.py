"""CIFAR ResNets (He et al. 2016, §4.2: 3 stages of basic blocks, 6n+2 layers) as used by the KD
benchmarks (RepDistiller / CRD, Tian et al. 2020): resnet8 … resnet110 with widths 16-16-32-64 and
the ×4 wide variants resnet8x4 / resnet32x4 (32-64-128-256); and the CIFAR ResNet50 (bottleneck
[3, 4, 6, 3], 3×3 stride-1 stem, no max-pool)."""
from __future__ import annotations

from functools import partial

import torch.nn as nn

from kdsuite.zoo.cifar._register import cifar_model
from kdsuite.zoo.cifar.common import CifarNet, init_weights


class BasicBlock(nn.Module):
    """3×3-3×3 residual block; ``final_relu=False`` returns the sum before its ReLU (stage ends)."""

    def __init__(self, cin: int, cout: int, stride: int, final_relu: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.final_relu = final_relu
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out) if self.final_relu else out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, final_relu: bool = True):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.final_relu = final_relu
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.relu(out) if self.final_relu else out


def _stage(block, cin: int, planes: int, n: int, stride: int) -> nn.Sequential:
    layers = []
    for i in range(n):
        layers.append(block(cin, planes, stride if i == 0 else 1, final_relu=i < n - 1))
        cin = planes * getattr(block, "expansion", 1)
    return nn.Sequential(*layers)


class CifarResNet(CifarNet):
    def __init__(self, depth: int, widths=(16, 16, 32, 64), num_classes: int = 100, in_chans: int = 3):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        self.stages = nn.ModuleList([_stage(BasicBlock, widths[0], widths[1], n, 1),
                                     _stage(BasicBlock, widths[1], widths[2], n, 2),
                                     _stage(BasicBlock, widths[2], widths[3], n, 2)])
        self.stage_acts = nn.ModuleList([nn.ReLU(), nn.ReLU(), nn.ReLU()])
        self.final = nn.Identity()
        self.num_features = widths[3]
        self.fc = nn.Linear(widths[3], num_classes)
        self._finish_init(widths[0], widths[1:], (1, 2, 4))
        init_weights(self)


class CifarResNet50(CifarNet):
    def __init__(self, num_classes: int = 100, in_chans: int = 3, blocks=(3, 4, 6, 3)):
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        chans, stages, cin = [], [], 64
        for planes, n, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)):
            stages.append(_stage(Bottleneck, cin, planes, n, stride))
            cin = planes * 4
            chans.append(cin)
        self.stages = nn.ModuleList(stages)
        self.stage_acts = nn.ModuleList([nn.ReLU() for _ in stages])
        self.final = nn.Identity()
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)
        self._finish_init(64, chans, (1, 2, 4, 8))
        init_weights(self)


for _d in (8, 14, 20, 32, 44, 56, 110):
    cifar_model(f"cifar_resnet{_d}", f"resnet{_d}", partial(CifarResNet, _d))
cifar_model("cifar_resnet8x4", "resnet8x4", partial(CifarResNet, 8, (32, 64, 128, 256)))
cifar_model("cifar_resnet32x4", "resnet32x4", partial(CifarResNet, 32, (32, 64, 128, 256)))
cifar_model("cifar_resnet50", "ResNet50", CifarResNet50)
