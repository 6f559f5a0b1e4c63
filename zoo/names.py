"""How papers typeset architecture names (``cifar_resnet32x4`` → ``ResNet32×4``), for tables and figures.

Role in the flow: :mod:`kdsuite.analysis` labels table headers and plot panels with :func:`paper_name`.
Run folders and the records' ``pair`` field keep the stable literature keys of
:func:`kdsuite.zoo.display_name` (``resnet32x4``); these names are for reading only.
"""
from __future__ import annotations

from typing import Dict

PAPER_NAMES: Dict[str, str] = {
    # the CIFAR KD family (RepDistiller / CRD tables)
    "cifar_resnet8": "ResNet8", "cifar_resnet14": "ResNet14", "cifar_resnet20": "ResNet20",
    "cifar_resnet32": "ResNet32", "cifar_resnet44": "ResNet44", "cifar_resnet56": "ResNet56",
    "cifar_resnet110": "ResNet110", "cifar_resnet8x4": "ResNet8×4", "cifar_resnet32x4": "ResNet32×4",
    "cifar_resnet50": "ResNet50", "cifar_wrn_16_1": "WRN-16-1", "cifar_wrn_16_2": "WRN-16-2",
    "cifar_wrn_40_1": "WRN-40-1", "cifar_wrn_40_2": "WRN-40-2", "cifar_vgg8": "VGG8", "cifar_vgg11": "VGG11",
    "cifar_vgg13": "VGG13", "cifar_vgg16": "VGG16", "cifar_vgg19": "VGG19", "cifar_mobilenetv2": "MobileNetV2",
    "cifar_shufflenetv1": "ShuffleNetV1", "cifar_shufflenetv2": "ShuffleNetV2",
    # ImageNet models of the shipped grids and references (timm names)
    "resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50", "resnet101": "ResNet101",
    "mobilenetv1_100": "MobileNetV1", "mobilenetv2_100": "MobileNetV2",
}


def paper_name(arch: str) -> str:
    """``arch``'s name as papers print it; a timm weight tag is dropped (``resnet34.tv_in1k`` →
    ``ResNet34``); an architecture without an entry keeps its registry key."""
    if arch in PAPER_NAMES:
        return PAPER_NAMES[arch]
    base = arch.partition(".")[0]
    return PAPER_NAMES.get(base, arch)


def pair_name(teacher_archs: str, student_arch: str) -> str:
    """A table column / plot panel title: ``ResNet32×4→ResNet8×4`` (teachers joined by ``+``), or the
    student alone for runs without a teacher."""
    teachers = [t for t in (teacher_archs or "").split("+") if t]
    s = paper_name(student_arch)
    return f"{'+'.join(paper_name(t) for t in teachers)}→{s}" if teachers else s
