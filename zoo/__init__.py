"""Backbones: any timm model by name, plus the CIFAR-style KD family registered into timm's registry
under a ``cifar_`` prefix (``import zoo`` registers it), feature taps and teacher checkpoints.

Role in the flow: ``kdsuite.experiments.run`` asks :func:`create_model` for the student (and online peers);
teachers come from :mod:`kdsuite.zoo.teachers` records; method plugins read features through :mod:`kdsuite.zoo.taps`.
"""
from __future__ import annotations

if __name__ != "kdsuite.zoo":  # this folder is installed as kdsuite.zoo; a second copy under another name would split state
    raise ImportError("the 'zoo' folder is the package kdsuite.zoo: import kdsuite.zoo")

import difflib
from typing import List

import timm
import torch.nn as nn

import kdsuite.zoo.cifar  # noqa: F401  (registers the cifar_* family into timm)
from kdsuite.zoo.cifar import LITERATURE_NAMES
from kdsuite.zoo.names import PAPER_NAMES, pair_name, paper_name  # noqa: F401  (tables' and figures' names)

_TIMM_NAMES = None


def list_models(pattern: str = "*") -> List[str]:
    """Every model name ``create_model`` accepts that matches ``pattern`` (timm's listing)."""
    return timm.list_models(pattern)


def known_arch(arch: str) -> bool:
    """``arch`` is a timm/zoo model name, or a timm name with one of its pretrained-weight tags
    (``resnet34.tv_in1k``: the architecture ``resnet34``; ``pretrained: true`` then loads those weights)."""
    global _TIMM_NAMES
    if _TIMM_NAMES is None:
        _TIMM_NAMES = set(timm.list_models())
    base, _, tag = arch.partition(".")
    if not tag:
        return arch in _TIMM_NAMES
    return base in _TIMM_NAMES and arch in timm.list_pretrained(arch)


def create_model(arch: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """``timm.create_model`` with a clear error for unknown names (closest matches listed)."""
    from kdsuite.core.errors import ConfigError

    if not known_arch(arch):
        close = difflib.get_close_matches(arch, _TIMM_NAMES, n=5, cutoff=0.6)
        raise ConfigError(f"unknown model '{arch}': not in timm's registry. The CIFAR KD family: "
                          f"{', '.join(sorted(LITERATURE_NAMES))}"
                          + (f"; closest timm names: {', '.join(close)}" if close else "")
                          + " (list all with `kdsuite models`)")
    return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


def display_name(arch: str) -> str:
    """The literature's table name (resnet8x4, wrn_40_2, MobileNetV2 ...) or the timm name."""
    return LITERATURE_NAMES.get(arch, arch)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
