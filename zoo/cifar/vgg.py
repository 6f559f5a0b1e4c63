"""VGG with batch norm for CIFAR (Simonyan & Zisserman 2015) in RepDistiller's layout: five conv
blocks, adaptive average pooling, one linear classifier — vgg8, vgg11, vgg13, vgg16, vgg19.

Pooling follows RepDistiller's ``models/vgg.py`` (and mdistiller's copy of it), the code behind every
published vgg13/vgg8 number: a 2×2 max-pool before blocks 1, 2 and 3, but before the last block only
for 64×64 inputs (its Tiny-ImageNet setting). At 32×32 the last two blocks therefore both run at 4×4
(features 32, 16, 8, 4, 4). ``last_pool="always"`` pools before every block instead (last map 2×2 at
32×32); parameters and state-dict keys are the same either way."""
from __future__ import annotations

from functools import partial

import torch.nn as nn
import torch.nn.functional as F

from kdsuite.zoo.cifar._register import cifar_model
from kdsuite.zoo.cifar.common import CifarNet, init_weights

CONFIGS = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]],
}


def _block(cin: int, widths) -> nn.Sequential:
    """conv-BN-ReLU per width, the last ReLU left to the stage activation."""
    layers = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        cin = w
    return nn.Sequential(*layers[:-1])


class PoolFor64(nn.Module):
    """The pool before the last block: 2×2 max-pool only when the image was 64×64, i.e. when this
    block's input (after three 2× pools) is 8 pixels high — RepDistiller's ``if h == 64: pool3``."""

    def forward(self, x):
        return F.max_pool2d(x, 2, 2) if x.shape[-2] == 64 // 8 else x


LAST_POOL = ("reference", "always")


class CifarVGG(CifarNet):
    def __init__(self, cfg, num_classes: int = 100, in_chans: int = 3, last_pool: str = "reference"):
        super().__init__()
        if last_pool not in LAST_POOL:
            raise ValueError(f"last_pool = {last_pool!r}: expected one of {LAST_POOL}")
        self.num_classes = num_classes
        self.stem = nn.Sequential(_block(in_chans, cfg[0]), nn.ReLU(inplace=True))
        stages, cin = [], cfg[0][-1]
        for i, widths in enumerate(cfg[1:]):
            last = i == len(cfg) - 2
            pool = PoolFor64() if last and last_pool == "reference" else nn.MaxPool2d(2, 2)
            stages.append(nn.Sequential(pool, _block(cin, widths)))
            cin = widths[-1]
        self.stages = nn.ModuleList(stages)
        self.stage_acts = nn.ModuleList([nn.ReLU() for _ in stages])
        self.final = nn.Identity()
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)
        # reductions at 32×32 (the last one is 16 for "always" and for 64×64 inputs)
        self._finish_init(cfg[0][-1], [w[-1] for w in cfg[1:]], (2, 4, 8, 8 if last_pool == "reference" else 16))
        init_weights(self, linear_std=0.01)


for _name, _cfg in CONFIGS.items():
    cifar_model(f"cifar_{_name}", _name, partial(CifarVGG, _cfg))
