"""Loss primitives shared by method plugins (Gou et al. 2021, §2: the distance functions the survey
lists for response-, feature- and relation-based knowledge).

Every function reduces to a scalar mean over the batch unless stated; inputs are ``(B, ...)``.
They are written once here and tested against independently computed formulas in
``tests/test_losses.py``; plugins combine them with their weights.
"""
from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F


def ce(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with hard labels (class indices) or soft targets (probabilities)."""
    if target.dtype in (torch.long, torch.int, torch.int64, torch.int32):
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


Temperature = Union[float, torch.Tensor]


def _per_sample(T: Temperature, logits: torch.Tensor) -> Temperature:
    """A float, a 0-d tensor (one temperature, possibly learnable) or a ``(B,)`` tensor (one per sample,
    broadcast over the classes)."""
    if torch.is_tensor(T) and T.dim() == 1:
        if T.shape[0] != logits.shape[0]:
            raise ValueError(f"a per-sample temperature needs {logits.shape[0]} values, got {T.shape[0]}")
        return T.to(logits.dtype).unsqueeze(1)
    return T.to(logits.dtype) if torch.is_tensor(T) else T


def kl_div(p_logits: torch.Tensor, q_logits: torch.Tensor, T: Temperature = 1.0,
           reduction: str = "batchmean") -> torch.Tensor:
    """KL(σ(p/T) ‖ σ(q/T)): ``p`` is the target (teacher), ``q`` the learner (student).
    ``batchmean`` sums over classes and averages over the batch (Hinton et al.'s convention);
    ``none`` returns one value per sample. ``T``: a float or a tensor (0-d, e.g. a learnable
    temperature — gradients reach it — or ``(B,)``, one per sample)."""
    T = _per_sample(T, q_logits)
    log_p = F.log_softmax(p_logits / T, dim=1)
    log_q = F.log_softmax(q_logits / T, dim=1)
    per_sample = (log_p.exp() * (log_p - log_q)).sum(dim=1)
    if reduction == "none":
        return per_sample
    if reduction == "batchmean":
        return per_sample.mean()
    raise ValueError(f"reduction must be 'batchmean' or 'none', got {reduction!r}")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: Temperature) -> torch.Tensor:
    """Hinton et al. 2015 soft-target term: T² · KL(σ(t/T) ‖ σ(s/T)), batch mean. The T² keeps the
    gradient scale independent of the temperature. ``T`` as in :func:`kl_div`; a per-sample ``T``
    weighs each sample's KL by its own T²."""
    per_sample = kl_div(teacher_logits, student_logits, T, reduction="none")
    T = _per_sample(T, student_logits)
    scale = T.reshape(-1) ** 2 if torch.is_tensor(T) else T * T
    return (per_sample * scale).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over all elements."""
    return (a - b).abs().mean()


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over all elements (MSE)."""
    return (a - b).pow(2).mean()


mse = l2


def cosine_distance(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 − cos(a_i, b_i) over flattened samples, averaged over the batch."""
    a = a.flatten(1)
    b = b.flatten(1)
    return (1 - F.cosine_similarity(a, b, dim=1, eps=eps)).mean()


def _kernel(x: torch.Tensor, y: torch.Tensor, kernel: str, **kw) -> torch.Tensor:
    if kernel == "poly":
        # (c + x·y)^d; NST uses d=2, c=0 on ℓ2-normalised activations
        return (kw.get("c", 0.0) + x @ y.t()).pow(kw.get("degree", 2))
    if kernel == "linear":
        return x @ y.t()
    if kernel == "gaussian":
        sigma = kw.get("sigma", 1.0)
        return torch.exp(-torch.cdist(x, y).pow(2) / (2 * sigma * sigma))
    raise ValueError(f"kernel must be 'poly', 'linear' or 'gaussian', got {kernel!r}")


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: str = "poly", **kw) -> torch.Tensor:
    """Biased squared maximum mean discrepancy between sample sets ``x`` (n, d) and ``y`` (m, d):
    mean k(x,x') + mean k(y,y') − 2 mean k(x,y)."""
    return (_kernel(x, x, kernel, **kw).mean() + _kernel(y, y, kernel, **kw).mean()
            - 2 * _kernel(x, y, kernel, **kw).mean())


def standardize_logits(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Logit standardisation (Sun et al. 2024, Eq. 8): z-score each sample's logits before the
    softmax, so the student matches the teacher's logit *relations* rather than its scale."""
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)
