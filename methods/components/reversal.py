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

import math

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


class SigmoidTemperature(nn.Module):
    """CTKD's global temperature (``models/temp_global.py`` + ``helper/loops.py`` of github.com/zhengli97/CTKD):
    a free parameter θ (initialised at ``init``; the authors' ``Global_T`` starts at 1) passed through gradient
    reversal, then mapped into (``start``, ``start + span``) by τ = start + span·sigmoid(θ) (their ``t_start``
    1 and ``t_end`` 20). ``forward(scale)`` returns the 0-d τ; the gradient reaching θ is −scale times the
    gradient of the loss, so an optimizer stepping θ raises the loss the student lowers."""

    def __init__(self, init: float = 1.0, start: float = 1.0, span: float = 20.0):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(float(init)))
        self.start, self.span = float(start), float(span)

    def forward(self, scale: float = 1.0) -> torch.Tensor:
        return self.start + self.span * torch.sigmoid(grad_reverse(self.theta, scale))


def cosine_curriculum(epoch: float, epochs: float, low: float = 0.0, high: float = 1.0) -> float:
    """CTKD's ``CosineDecay`` as the strength of the reversal: rises from ``low`` at epoch 0 to ``high`` at
    ``epochs`` and stays there, λ(e) = low + (high − low)·(1 − cos(π·min(e, epochs)/epochs))/2. (The authors'
    class decays a signed multiplier from ``decay_max`` 0 to ``decay_min`` −1 applied without negation, the
    same gradient as a reversal of strength λ from 0 to 1.) ``epochs`` ≤ 0: ``high`` throughout."""
    if epochs <= 0:
        return float(high)
    e = min(max(float(epoch), 0.0), float(epochs))
    return float(low) + (float(high) - float(low)) * (1.0 - math.cos(math.pi * e / epochs)) / 2.0
