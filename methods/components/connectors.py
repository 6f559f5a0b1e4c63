"""Connectors that map a student feature map onto a teacher's (FitNet's ConvReg, used by FitNet and its one-stage
variant) and bridges between families: :func:`tokens_to_map` / :func:`map_to_tokens` (ViT / MLP tokens ↔ CNN maps;
the plugin base applies :func:`tokens_to_map` to token taps of methods that compare maps, and records it)."""
from __future__ import annotations

import torch
import torch.nn as nn

from kdsuite.core.errors import ConfigError


def conv_regressor(s_shape, t_shape, method: str = "fitnet") -> nn.Module:
    """RepDistiller's ConvReg from a student map ``(C, H, W)`` to a teacher map ``(C', H', W')``."""
    (sc, sh, sw), (tc, th, tw) = s_shape, t_shape
    if sh == 2 * th and sw == 2 * tw:
        conv = nn.Conv2d(sc, tc, 3, stride=2, padding=1)
    elif 2 * sh == th and 2 * sw == tw:
        conv = nn.ConvTranspose2d(sc, tc, 4, stride=2, padding=1)
    elif sh >= th and sw >= tw:
        conv = nn.Conv2d(sc, tc, (1 + sh - th, 1 + sw - tw))
    else:
        raise ConfigError(f"method '{method}': no regressor maps the student's guided feature {tuple(s_shape)} "
                          f"to the teacher's hint {tuple(t_shape)} (ConvReg needs a student map at least as "
                          f"large as the teacher's, or exactly half its size)")
    reg = nn.Sequential(conv, nn.BatchNorm2d(tc), nn.ReLU(inplace=True))
    with torch.no_grad():  # e.g. odd sizes with a stride-2 conv: check once, on a probe
        was = reg.training
        out = reg.eval()(torch.zeros(1, sc, sh, sw)).shape[1:]
        reg.train(was)
    if tuple(out) != (tc, th, tw):
        raise ConfigError(f"method '{method}': the regressor maps the student's guided feature {tuple(s_shape)} to "
                          f"{tuple(out)}, not to the teacher's hint {tuple(t_shape)}")
    return reg


# ---- bridges between families (token sequences ↔ feature maps) ---------------------------------------
def tokens_to_map(tokens: torch.Tensor, grid, prefix_tokens: int = 0) -> torch.Tensor:
    """A ViT / MLP-Mixer token sequence ``(B, P + H·W, C)`` as a feature map ``(B, C, H, W)``: the ``P``
    prefix (class / distillation / register) tokens are dropped and the patch tokens, in timm's row-major
    order, are laid out on their ``H×W`` grid (timm's own NLC → NCHW reshape)."""
    h, w = grid
    b, n, c = tokens.shape
    if n != prefix_tokens + h * w:
        raise ValueError(f"tokens_to_map: {n} tokens are not {prefix_tokens} prefix + a {h}×{w} grid")
    return tokens[:, prefix_tokens:, :].transpose(1, 2).reshape(b, c, h, w)


def map_to_tokens(fmap: torch.Tensor) -> torch.Tensor:
    """A feature map ``(B, C, H, W)`` as ``H·W`` tokens ``(B, H·W, C)`` (row-major, no prefix tokens)."""
    return fmap.flatten(2).transpose(1, 2)


TOKENS_TO_MAP = "tokens_to_map (prefix tokens dropped, patch tokens laid out on their grid)"
