"""CBAM (Woo et al., ECCV 2018) as a ganforge attention plugin.

Channel attention (a shared MLP over average- and max-pooled features) followed by spatial
attention (a 7×7 conv over channel-wise average and max maps), both as sigmoid gates. As a GAN
layer it is blended in residually, ``y = x + γ·(CBAM(x) − x)`` with γ starting at 0, so a freshly
built model behaves as if the layer were absent (as SAGAN's γ does).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganforge import hookimpl
from ganforge.layers import Layers


class CBAMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reduction: int = Field(8, ge=1, description="hidden width of the channel MLP = C / reduction")
    kernel_size: int = Field(7, ge=1, description="size of the spatial-attention conv (odd)")
    residual: bool = Field(True, description="blend in with a learnable γ that starts at 0")


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate, then spatial gate. ``[B,C,H,W] -> [B,C,H,W]``."""

    def __init__(self, *, channels: int, layers: Layers, reduction: int, kernel_size: int, residual: bool):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"cbam.kernel_size must be odd, got {kernel_size}")
        hidden = max(1, channels // reduction)
        # layers.conv, not nn.Conv2d: the config's spectral norm / equalized lr reach these convs too.
        self.mlp = nn.Sequential(layers.conv(channels, hidden, 1), nn.ReLU(), layers.conv(hidden, channels, 1))
        self.spatial = layers.conv(2, 1, kernel_size, padding=kernel_size // 2)
        self.gamma = nn.Parameter(torch.zeros(1)) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))
        y = x * channel
        maps = torch.cat([y.mean(1, keepdim=True), y.amax(1, keepdim=True)], dim=1)
        y = y * torch.sigmoid(self.spatial(maps))
        return y if self.gamma is None else x + self.gamma * (y - x)


@hookimpl
def ganforge_register(registry):
    registry.register("attention", "cbam", CBAM, CBAMParams)
