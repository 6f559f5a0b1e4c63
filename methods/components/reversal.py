"""Gradient reversal and a learnable temperature trained through it (the min-max pieces of CTKD-style
methods: Li et al. 2023, "Curriculum Temperature for Knowledge Distillation", AAAI — Eq. 6–8: the
temperature maximises the distillation loss the student minimises, by a gradient-reversal layer whose
strength λ a curriculum raises).

Role in the flow: a plugin builds a :class:`LearnableTemperature` in ``__init__``, names its parameter in
an adversary optimizer group (``adversary_groups``) and steps the student and the temperature from one
backward with ``trainer.optimize(["student", "temperature"], losses)``; the losses of
:mod:`kdsuite.methods.losses` take the resulting tensor temperature as they take a float.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by ``−scale`` (Ganin & Lempitsky 2015)."""
    return _Reverse.apply(x, float(scale))


class LearnableTemperature(nn.Module):
    """One global temperature τ (a parameter, initialised at ``init``); ``forward(scale)`` returns τ through
    gradient reversal, so an optimizer stepping it raises what the rest of the graph lowers. ``low`` keeps
    τ positive however far it is pushed (CTKD clamps likewise)."""

    def __init__(self, init: float = 1.0, low: float = 0.05):
        super().__init__()
        self.tau = nn.Parameter(torch.tensor(float(init)))
        self.low = float(low)

    def forward(self, scale: float = 1.0) -> torch.Tensor:
        return grad_reverse(self.tau, scale).clamp(min=self.low)
