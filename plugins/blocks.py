"""The MSG-GAN / PGGAN convolution blocks (akanimax/BMSG-GAN layout) and minibatch std-dev."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganforge import hookimpl
from ganforge.layers import Layers

SLOPE = 0.2  # LeakyReLU slope used throughout PGGAN and MSG-GAN


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(SLOPE)


class LatentNorm(nn.Module):
    """Scales each latent vector to norm √latent_dim (the reference trainer does this to z)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * math.sqrt(z.shape[1]) / z.norm(dim=1, keepdim=True).clamp_min(1e-8)


class GeneratorStem(nn.Module):
    """``[B, latent] -> [B, C, 4, 4]``: 4×4 transposed conv from 1×1, LReLU, 3×3 conv, LReLU, norm."""

    def __init__(self, latent_dim: int, out_channels: int, layers: Layers, normalize_latent: bool):
        super().__init__()
        self.latent_norm = LatentNorm() if normalize_latent else nn.Identity()
        self.deconv = layers.conv_transpose(latent_dim, out_channels, 4)
        self.conv = layers.conv(out_channels, out_channels, 3, padding=1)
        self.act = _lrelu()
        self.norm = layers.feature_norm(out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.act(self.deconv(self.latent_norm(z)[:, :, None, None]))
        return self.norm(self.act(self.conv(x)))


class GeneratorUp(nn.Module):
    """``[B, Cin, H, W] -> [B, Cout, 2H, 2W]``: nearest ×2, then (3×3 conv, LReLU, norm) twice."""

    def __init__(self, in_channels: int, out_channels: int, layers: Layers):
        super().__init__()
        self.conv1 = layers.conv(in_channels, out_channels, 3, padding=1)
        self.norm1 = layers.feature_norm(out_channels)
        self.conv2 = layers.conv(out_channels, out_channels, 3, padding=1)
        self.norm2 = layers.feature_norm(out_channels)
        self.act = _lrelu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.norm1(self.act(self.conv1(x)))
        return self.norm2(self.act(self.conv2(x)))


class MinibatchStdDev(nn.Module):
    """Appends one channel: the mean std-dev of features across a group of samples.

    ``group_size = 0`` uses the whole batch (BMSG-GAN); otherwise groups of ``group_size``
    (PGGAN/StyleGAN use 4). The rule when the batch (per process) does not divide: the group shrinks
    to the largest divisor of the batch below ``group_size``, as PGGAN's ``min(group_size, N)`` does
    for small batches. A batch of 7 then gives groups of 1, whose std-dev carries no signal, so
    that case is warned about (once per layer).
    """

    def __init__(self, group_size: int, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.eps = group_size, eps
        self._warned = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        g = B if self.group_size == 0 else min(self.group_size, B)
        while B % g:
            g -= 1
        if g == 1 < min(self.group_size, B) and not self._warned:
            self._warned = True
            warnings.warn(
                f"minibatch std-dev: a batch of {B} does not divide into groups of {self.group_size}; groups of 1 "
                "carry no signal (make the batch per process divisible by group_size, or set group_size = 0)",
                stacklevel=2,
            )
        y = x.reshape(g, B // g, C, H, W)
        y = torch.sqrt((y - y.mean(dim=0)).pow(2).mean(dim=0) + self.eps)  # [B/g, C, H, W]
        y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(g, 1, H, W)  # sample n gets group n % (B/g)
        return torch.cat([x, y], dim=1)


class DiscriminatorDown(nn.Module):
    """``[B, Cin, H, W] -> [B, Cout, H/2, W/2]``: 3×3 conv (Cin→Cin), LReLU, 3×3 conv (→Cout), LReLU, avg-pool 2."""

    def __init__(self, in_channels: int, out_channels: int, layers: Layers):
        super().__init__()
        self.conv1 = layers.conv(in_channels, in_channels, 3, padding=1)
        self.conv2 = layers.conv(in_channels, out_channels, 3, padding=1)
        self.act = _lrelu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(self.act(self.conv1(x))))
        return F.avg_pool2d(x, 2)


class DiscriminatorHead(nn.Module):
    """``[B, Cin, 4, 4] -> [B]``: [minibatch std-dev], 3×3 conv, LReLU, 4×4 conv, LReLU, 1×1 conv."""

    def __init__(self, in_channels: int, width: int, layers: Layers, minibatch_std: bool, group_size: int):
        super().__init__()
        self.mbstd = MinibatchStdDev(group_size) if minibatch_std else nn.Identity()
        self.conv1 = layers.conv(in_channels + int(minibatch_std), width, 3, padding=1)
        self.conv2 = layers.conv(width, width, 4)
        self.out = layers.conv(width, 1, 1)
        self.act = _lrelu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(self.mbstd(x)))
        x = self.act(self.conv2(x))
        return self.out(x).flatten()


class MSGGeneratorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    normalize_latent: bool = Field(True, description="scale z to norm √latent_dim (pixel norm of z)")


class MSGGeneratorBlocks:
    """MSG-GAN/PGGAN generator blocks: deconv stem, nearest-upsampling 3×3 conv pairs."""

    def __init__(self, *, layers: Layers, normalize_latent: bool):
        self.layers, self.normalize_latent = layers, normalize_latent

    def stem(self, latent_dim: int, out_channels: int) -> nn.Module:
        return GeneratorStem(latent_dim, out_channels, self.layers, self.normalize_latent)

    def up(self, in_channels: int, out_channels: int) -> nn.Module:
        return GeneratorUp(in_channels, out_channels, self.layers)


class MSGDiscriminatorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minibatch_std: bool = Field(True, description="append the minibatch std-dev channel in the head")
    group_size: int = Field(
        0,
        ge=0,
        description="minibatch std-dev group; 0 = whole batch (BMSG-GAN); a batch that does not divide by it "
        "uses the largest divisor below it",
    )
    head_channels: int = Field(0, ge=0, description="width of the head convs; 0 = its input width")


class MSGDiscriminatorBlocks:
    """MSG-GAN/PGGAN discriminator blocks: 3×3 conv pairs with avg-pool, minibatch std-dev head."""

    def __init__(self, *, layers: Layers, minibatch_std: bool, group_size: int, head_channels: int):
        self.layers = layers
        self.minibatch_std, self.group_size, self.head_channels = minibatch_std, group_size, head_channels

    def down(self, in_channels: int, out_channels: int) -> nn.Module:
        return DiscriminatorDown(in_channels, out_channels, self.layers)

    def head(self, in_channels: int) -> nn.Module:
        width = self.head_channels or in_channels
        return DiscriminatorHead(in_channels, width, self.layers, self.minibatch_std, self.group_size)


@hookimpl
def ganforge_register(registry):
    registry.register("generator_block", "msg", MSGGeneratorBlocks, MSGGeneratorParams)
    registry.register("discriminator_block", "msg", MSGDiscriminatorBlocks, MSGDiscriminatorParams)
