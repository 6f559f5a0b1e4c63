"""State-dict key names of the reference CIFAR model code (RepDistiller's ``models/``; mdistiller's
``mdistiller/models/cifar/`` is the same code with the same module names) for every ``cifar_*`` model.

Role in the flow: ``kdsuite teacher import`` (:mod:`kdsuite.zoo.teacher_import`) renames the tensors of a
released RepDistiller / mdistiller teacher into this suite's layout; it never guesses — every key of
the model must be found in the file and every key of the file must be used.

The mapping is written per architecture family as rules from a kdsuite key to the reference key
(``stages.1.0.conv1.weight`` → ``layer2.0.conv1.weight``); :func:`reference_names` applies them to a
model's own state dict, so the reverse direction is exact and one-to-one by construction.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, List, Tuple, Union

import torch.nn as nn

from kdsuite.core.errors import ConfigError

Rule = Tuple[str, Union[str, Callable[[re.Match], str]]]

_RESNET: List[Rule] = [(r"^stem\.0\.", "conv1."), (r"^stem\.1\.", "bn1."),
                       (r"^stages\.(\d+)\.", lambda m: f"layer{int(m[1]) + 1}.")]
# CIFAR ResNets (models/resnet.py): conv1, bn1, layer1..3 (downsample.0/.1), fc
RESNET = _RESNET
# CIFAR ResNet50 (models/resnetv2.py): the same, bottleneck shortcuts named shortcut.0/.1, classifier `linear`
RESNET50 = _RESNET + [(r"^fc\.", "linear.")]
# WRN (models/wrn.py): conv1, block1..3.layer.<j> (bn1, conv1, bn2, conv2, convShortcut), bn1, fc
WRN: List[Rule] = [(r"^stem\.", "conv1."),
                   (r"^stages\.(\d+)\.(\d+)\.shortcut\.", lambda m: f"block{int(m[1]) + 1}.layer.{m[2]}.convShortcut."),
                   (r"^stages\.(\d+)\.(\d+)\.", lambda m: f"block{int(m[1]) + 1}.layer.{m[2]}."),
                   (r"^final\.0\.", "bn1.")]
# VGG (models/vgg.py): block0..4 as conv/BN/ReLU sequences (the same indices), classifier
VGG: List[Rule] = [(r"^stem\.0\.", "block0."),
                   (r"^stages\.(\d+)\.1\.", lambda m: f"block{int(m[1]) + 1}."),
                   (r"^fc\.", "classifier.")]
# ShuffleV1 (models/ShuffleNetv1.py): conv1, bn1, layer1..3, linear
SHUFFLEV1 = _RESNET + [(r"^fc\.", "linear.")]
# ShuffleV2 (models/ShuffleNetv2.py): layer<i>.0 is the DownBlock with conv1..5 / bn1..5
_V2DOWN = {"left.0": "conv1", "left.1": "bn1", "left.2": "conv2", "left.3": "bn2", "right.0": "conv3",
           "right.1": "bn3", "right.3": "conv4", "right.4": "bn4", "right.5": "conv5", "right.6": "bn5"}
SHUFFLEV2: List[Rule] = [(r"^stem\.0\.", "conv1."), (r"^stem\.1\.", "bn1."),
                         (r"^stages\.(\d+)\.0\.(left|right)\.(\d+)\.",
                          lambda m: f"layer{int(m[1]) + 1}.0.{_V2DOWN[f'{m[2]}.{m[3]}']}."),
                         (r"^stages\.(\d+)\.", lambda m: f"layer{int(m[1]) + 1}."),
                         (r"^final\.0\.", "conv2."), (r"^final\.1\.", "bn2."), (r"^fc\.", "linear.")]


def _mbv2_rules() -> List[Rule]:
    from kdsuite.zoo.cifar.mobilenetv2 import CifarMobileNetV2

    first = [a for a, _ in CifarMobileNetV2.STAGES]  # kdsuite stage s holds reference groups first[s]..
    return [(r"^stem\.", "conv1."),
            (r"^stages\.(\d+)\.(\d+)\.", lambda m: f"blocks.{first[int(m[1])] + int(m[2])}."),
            (r"^final\.", "conv2."), (r"^fc\.", "classifier.0.")]


# MobileNetV2 = RepDistiller's mobile_half (models/mobilenetv2.py): conv1.<k>, blocks.<g>.<i>.conv.<k>,
# conv2.<k>, classifier.0
FAMILIES: Dict[str, Callable[[], List[Rule]]] = {
    "resnet": lambda: RESNET, "resnet50": lambda: RESNET50, "wrn": lambda: WRN, "vgg": lambda: VGG,
    "mobilenetv2": _mbv2_rules, "shufflenetv1": lambda: SHUFFLEV1, "shufflenetv2": lambda: SHUFFLEV2,
}


def family(arch: str) -> str:
    """The reference family of a ``cifar_*`` architecture."""
    name = arch[len("cifar_"):] if arch.startswith("cifar_") else arch
    if name == "resnet50":
        return "resnet50"
    for fam in ("resnet", "wrn", "vgg", "mobilenetv2", "shufflenetv1", "shufflenetv2"):
        if name.startswith(fam):
            return fam
    raise ConfigError(f"arch = {arch!r}: no reference key layout known; the RepDistiller/mdistiller layouts "
                      f"cover the cifar_* family (`kdsuite models 'cifar_*'`)")


def reference_name(arch: str, key: str) -> str:
    """The reference model's name for kdsuite state-dict key ``key`` of ``arch``."""
    for pattern, repl in FAMILIES[family(arch)]():
        new, n = re.subn(pattern, repl, key, count=1)
        if n:
            return new
    return key


def reference_names(arch: str, model: nn.Module) -> Dict[str, str]:
    """``{kdsuite key: reference key}`` for every entry of ``model.state_dict()``."""
    out = {k: reference_name(arch, k) for k in model.state_dict()}
    if len(set(out.values())) != len(out):  # a rule bug, never user input
        raise AssertionError(f"{arch}: the reference key mapping is not one-to-one")
    return out
