"""Batched augmentation of image tensors on their own device: random crop (with padding) and flip.

Role in the flow: :class:`kdsuite.experiments.data_tensor.TensorLoader` augments each training batch with
:func:`random_crop_flip`, which reproduces torchvision's ``RandomCrop(padding=…)`` + ``RandomHorizontalFlip``
on a whole batch at once, drawn from the loader's generator (so an epoch replays exactly).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator,
                     fill: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Batched RandomCrop(size, padding=pad) + RandomHorizontalFlip on ``x`` (B, C, H, W), drawn
    from ``generator`` (which lives on ``x``'s device). ``fill`` (C,) is the value of the padding per
    channel: torchvision pads the raw image with black *before* normalising, so on normalised tensors
    the matching fill is (0 − mean) / std, not 0 (which would be the mean colour)."""
    b, _, h, w = x.shape
    if pad > 0:
        if fill is not None:
            f = fill.to(x.device, x.dtype).view(1, -1, 1, 1)
            padded = F.pad(x - f, (pad, pad, pad, pad)) + f
        else:
            padded = F.pad(x, (pad, pad, pad, pad))
        dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
        dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (B, H)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (B, W)
        idx_b = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        do = torch.rand(b, device=x.device, generator=generator) < 0.5
        x = torch.where(do[:, None, None, None], x.flip(3), x)
    return x.contiguous()
