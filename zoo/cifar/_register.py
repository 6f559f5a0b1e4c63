"""Registration of the CIFAR family into timm's registry (``cifar_`` prefix)."""
from __future__ import annotations

import sys
from typing import Callable, Dict

from timm.models import register_model

LITERATURE_NAMES: Dict[str, str] = {}
_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "features_only", "drop_rate",
                     "drop_path_rate", "global_pool")


def cifar_model(name: str, literature: str, build: Callable[..., object]):
    """Register ``build(num_classes, in_chans, **options)`` as timm model ``name`` shown as ``literature``."""

    def entry(pretrained: bool = False, num_classes: int = 100, in_chans: int = 3, **kwargs):
        if pretrained:
            raise ValueError(f"{name}: no pretrained weights exist for the CIFAR KD family; train a teacher "
                             f"with `kdsuite train-teacher --arch {name}`")
        for k in _TIMM_ONLY_KWARGS:
            kwargs.pop(k, None)
        try:  # model options (e.g. VGG's last_pool) pass through; anything else is refused by name
            return build(num_classes=num_classes, in_chans=in_chans, **kwargs)
        except TypeError as e:
            if kwargs:
                raise TypeError(f"{name}: unexpected arguments {sorted(kwargs)} ({e})") from None
            raise

    entry.__name__ = name
    entry.__qualname__ = name
    entry.__doc__ = f"{literature} (CIFAR variant of the KD benchmark literature)"
    # timm files the model under (and appends its name to the __all__ of) the function's module: that
    # must be the zoo module calling us, never ``functools`` (builds are often ``functools.partial``)
    entry.__module__ = sys._getframe(1).f_globals.get("__name__", __name__)
    register_model(entry)
    LITERATURE_NAMES[name] = literature
    return entry
