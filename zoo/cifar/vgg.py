"""VGG with batch norm for CIFAR (Simonyan & Zisserman 2015) in RepDistiller's layout: five conv
blocks separated by 2×2 max-pools, adaptive average pooling, one linear classifier — vgg8, vgg11,
vgg13, vgg16, vgg19. Inputs from 16×16 up (four 2× poolings)."""
from __future__ import annotations

from functools import partial

import torch.nn as nn

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


class CifarVGG(CifarNet):
    def __init__(self, cfg, num_classes: int = 100, in_chans: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(_block(in_chans, cfg[0]), nn.ReLU(inplace=True))
        stages, cin = [], cfg[0][-1]
        for widths in cfg[1:]:
            stages.append(nn.Sequential(nn.MaxPool2d(2, 2), _block(cin, widths)))
            cin = widths[-1]
        self.stages = nn.ModuleList(stages)
        self.stage_acts = nn.ModuleList([nn.ReLU() for _ in stages])
        self.final = nn.Identity()
        self.num_features = cin
        self.fc = nn.Linear(cin, num_classes)
        self._finish_init(cfg[0][-1], [w[-1] for w in cfg[1:]], (2, 4, 8, 16))
        init_weights(self, linear_std=0.01)


for _name, _cfg in CONFIGS.items():
    cifar_model(f"cifar_{_name}", _name, partial(CifarVGG, _cfg))
