"""Feature-map helpers shared by plugins that compare student and teacher maps stage by stage."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def match_resolution(s: torch.Tensor, t: torch.Tensor):
    """Average-pool the larger of two maps to the smaller one's spatial size."""
    if s.shape[-2:] == t.shape[-2:]:
        return s, t
    if s.shape[-1] > t.shape[-1]:
        return F.adaptive_avg_pool2d(s, t.shape[-2:]), t
    return s, F.adaptive_avg_pool2d(t, s.shape[-2:])
