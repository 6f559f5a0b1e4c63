"""Connectors that map a student feature map onto a teacher's (FitNet's ConvReg, used by FitNet and its one-stage variant)."""
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
