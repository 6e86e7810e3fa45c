"""The layer factory handed to every component that creates convolutions.

Components ask ``layers.conv(...)`` instead of constructing ``nn.Conv2d`` themselves, so the weight
normalizations named in the config (spectral norm, equalized learning rate, ...) reach every
convolution, and the feature normalization (pixel norm) is inserted where a block asks for it,
without any component knowing which normalizations exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, TypeVar

from torch import nn

from .kinds import WeightNorm

ConvLayer = TypeVar("ConvLayer", nn.Conv2d, nn.ConvTranspose2d)


@dataclass
class Layers:
    """Creates conv layers with the configured weight norms; creates feature norms on request."""

    weight_norms: Sequence[WeightNorm] = ()
    feature_norm_factory: Callable[[int], nn.Module] | None = None

    def conv(
        self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, bias: bool = True
    ) -> nn.Conv2d:
        """``nn.Conv2d`` (stride 1) with every configured weight norm applied."""
        layer = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        return self._normalized(layer, in_channels * kernel_size * kernel_size)

    def conv_transpose(
        self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True
    ) -> nn.ConvTranspose2d:
        """``nn.ConvTranspose2d`` (stride 1, no padding); its fan-in is ``in_channels``, as for a 1×1 input."""
        layer = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, bias=bias)
        return self._normalized(layer, in_channels)

    def feature_norm(self, channels: int) -> nn.Module:
        """The configured feature normalization, or ``nn.Identity`` when there is none."""
        if self.feature_norm_factory is None:
            return nn.Identity()
        return self.feature_norm_factory(channels)

    def _normalized(self, layer: ConvLayer, fan_in: int) -> ConvLayer:
        for norm in self.weight_norms:
            norm.apply(layer, fan_in)
        return layer
