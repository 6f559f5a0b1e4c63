"""Feature-map helpers shared by plugins that compare student and teacher maps stage by stage."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def match_resolution(s: torch.Tensor, t: torch.Tensor):
    """Average-pool two maps to their common (per-dimension smallest) spatial size; a map already
    that size is returned as is. AT, FT, FSP, NST, VID and CA-MKD all compare maps this way."""
    if s.shape[-2:] == t.shape[-2:]:
        return s, t
    size = tuple(min(a, b) for a, b in zip(s.shape[-2:], t.shape[-2:]))
    return (s if s.shape[-2:] == size else F.adaptive_avg_pool2d(s, size),
            t if t.shape[-2:] == size else F.adaptive_avg_pool2d(t, size))
