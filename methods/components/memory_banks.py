"""Memory banks of a contrastive objective: one ℓ2-normalised embedding per training sample, for the
student and for the teacher (Wu et al. 2018's non-parametric memory, as CRD and HKD keep them).

Role in the flow: a plugin calls :func:`add_memory_banks` when it builds its modules (the banks are
buffers ``memory_s`` / ``memory_t`` of the plugin, so checkpoints carry them) and
:func:`update_memory_banks` after computing its loss on a batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.core.errors import ConfigError


def add_memory_banks(plugin: nn.Module, method: str, num_train: int, dim: int) -> int:
    """Register ``memory_s`` and ``memory_t`` (num_train × dim, uniform in ±1/√(dim/3), as RepDistiller's
    ``ContrastMemory`` starts them) on ``plugin``; returns the number of rows."""
    if num_train <= 0:
        raise ConfigError(f"method '{method}': the training-set size (num_train = {num_train}) must be > 0; "
                          f"the memory banks hold one row per training sample")
    stdv = 1.0 / math.sqrt(dim / 3)
    plugin.register_buffer("memory_s", torch.rand(int(num_train), dim) * (2 * stdv) - stdv)
    plugin.register_buffer("memory_t", torch.rand(int(num_train), dim) * (2 * stdv) - stdv)
    return int(num_train)


@torch.no_grad()
def update_memory_banks(plugin: nn.Module, index: torch.Tensor, v_s: torch.Tensor, v_t: torch.Tensor,
                        momentum: float) -> None:
    """bank[i] ← normalise(m·bank[i] + (1 − m)·v_i) for the batch's rows ``index``, in both banks."""
    for bank, v in ((plugin.memory_s, v_s), (plugin.memory_t, v_t)):
        bank.index_copy_(0, index, F.normalize(bank[index] * momentum + v.detach() * (1 - momentum), dim=1))
