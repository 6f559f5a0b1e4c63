"""An imported teacher's own input: its images normalised with its mean / std and resized to its size.

Role in the flow: ``kdsuite teacher import --format timm|torchvision`` records timm's
``resolve_model_data_config`` of the teacher (``data_config``: input size, interpolation, mean / std — what the
released weights were trained with). When a run loads such a teacher (``experiments.run``), :func:`for_record`
builds the step from the run's batches — normalised with the data's mean / std at the data's size, which the
student keeps — to the teacher's input: undo the data's normalisation, resize (the teacher's interpolation) to
its size when it differs, normalise with the teacher's mean / std. :func:`attach` puts the step in front of the
teacher's ``forward`` (a pre-hook: evaluation, cached logits, plain ``teacher(x)`` calls) and
:func:`kdsuite.zoo.taps.extract` applies it before ``forward_intermediates``, so every path of the teacher sees
its own input. The crop (``crop_pct``) is not applied: the batch is already framed by the data pipeline.
A record whose config cannot be bridged (another channel count, data without a stated mean / std) is
refused by name. Teachers kdsuite trained, and CIFAR files imported in RepDistiller's format (their
``data_config`` is timm's default for a model timm does not know), keep the data's input.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.core.errors import ConfigError

BRIDGED_FORMATS = ("timm", "torchvision")
MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest", "area": "area"}


class TeacherInput:
    """Data batch → the teacher's own input (see the module docstring)."""

    def __init__(self, data_mean: Sequence[float], data_std: Sequence[float], mean: Sequence[float],
                 std: Sequence[float], size: Optional[Sequence[int]], interpolation: str = "bilinear"):
        self.data_mean, self.data_std = tuple(map(float, data_mean)), tuple(map(float, data_std))
        self.mean, self.std = tuple(map(float, mean)), tuple(map(float, std))
        self.size = tuple(int(s) for s in size) if size else None
        self.mode = MODES.get(interpolation, "bilinear")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        def col(v):
            return torch.tensor(v, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)

        x = x * col(self.data_std) + col(self.data_mean)
        if self.size and tuple(x.shape[-2:]) != self.size:
            kw = {"align_corners": False, "antialias": True} if self.mode in ("bilinear", "bicubic") else {}
            x = F.interpolate(x, size=self.size, mode=self.mode, **kw)
        return (x - col(self.mean)) / col(self.std)

    def describe(self) -> Dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "size": list(self.size) if self.size else None,
                "interpolation": self.mode, "from_data": {"mean": list(self.data_mean), "std": list(self.data_std)}}


def for_record(meta: Mapping[str, Any], data_mean: Sequence[float], data_std: Sequence[float],
               input_shape: Sequence[int], field: str) -> Optional[TeacherInput]:
    """The step to the teacher's own input from its record's ``data_config``; None when the record has none to
    apply (not imported through timm, or a config equal to the data's)."""
    dc = meta.get("data_config")
    if not dc or (meta.get("source") or {}).get("format") not in BRIDGED_FORMATS:
        return None
    size = list(dc.get("input_size") or [])
    chans = int(size[0]) if size else int(input_shape[0])
    if chans != int(input_shape[0]) or len(dc.get("mean") or ()) != chans or len(dc.get("std") or ()) != chans:
        raise ConfigError(f"{field}: the teacher's data_config (input_size {size}, mean {dc.get('mean')}, std "
                          f"{dc.get('std')}) is for {chans}-channel images; the data has {input_shape[0]} channels")
    if len(data_mean) != chans or len(data_std) != chans:
        raise ConfigError(f"{field}: the teacher's data_config asks for its own normalisation, but the data states "
                          f"no per-channel mean / std to undo (mean {tuple(data_mean)}, std {tuple(data_std)})")
    step = TeacherInput(data_mean, data_std, dc["mean"], dc["std"], size[1:] or None, str(dc.get("interpolation")))
    same_norm = all(abs(a - b) < 1e-6 for a, b in zip(step.mean + step.std, step.data_mean + step.data_std))
    if same_norm and (step.size is None or step.size == tuple(int(s) for s in input_shape[-2:])):
        return None
    return step


def attach(model: nn.Module, step: TeacherInput) -> None:
    """Every later call of ``model`` (and :func:`kdsuite.zoo.taps.extract` on it) sees ``step(x)``."""
    object.__setattr__(model, "_kdsuite_input", step)
    model.register_forward_pre_hook(lambda m, args: (step(args[0]),) + tuple(args[1:]))


def adapt(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``model``'s own input (unchanged for a model without an attached step)."""
    step = getattr(model, "_kdsuite_input", None)
    return step(x) if step is not None else x


def input_shape(model: nn.Module, data_shape: Sequence[int]):
    """The (C, H, W) ``model`` sees for batches of ``data_shape``."""
    step = getattr(model, "_kdsuite_input", None)
    return (int(data_shape[0]), *step.size) if step is not None and step.size else tuple(data_shape)
