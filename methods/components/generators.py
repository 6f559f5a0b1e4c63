"""Image generators of the data-free methods (DAFL's DCGAN-style generator, reused by DFAD)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class Generator(nn.Module):
    """DAFL's DCGAN-style generator: z → FC → 128×(s/4)² → BN → 2× up, conv 128 → BN, LReLU →
    2× up, conv 64 → BN, LReLU → conv C → tanh → BN (no affine) to match normalised data."""

    def __init__(self, nz: int, channels: int, size: int):
        super().__init__()
        self.init = max(size // 4, 1)
        self.fc = nn.Linear(nz, 128 * self.init ** 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(128), nn.Upsample(scale_factor=2), nn.Conv2d(128, 128, 3, padding=1),
            nn.BatchNorm2d(128, 0.8), nn.LeakyReLU(0.2, inplace=True), nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, padding=1), nn.BatchNorm2d(64, 0.8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, channels, 3, padding=1), nn.Tanh(), nn.BatchNorm2d(channels, affine=False))
        self.size = size

    def forward(self, z):
        x = self.body(self.fc(z).view(len(z), 128, self.init, self.init))
        return x if x.shape[-1] == self.size else F.interpolate(x, size=(self.size, self.size), mode="bilinear")
