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

import torch
from torch import nn
from torch.nn.utils import parametrize

from .kinds import WeightNorm

ConvLayer = TypeVar("ConvLayer", nn.Conv2d, nn.ConvTranspose2d)


class AutocastWeight(nn.Module):
    """The last parametrization of a normalized weight: under autocast, cast to autocast's dtype.

    Autocast caches its casts of leaf tensors only, so a parametrized weight (equalized lr, spectral
    norm) was cast again on every call, even within ``parametrize.cached()``, where the trainer
    computes each weight once per update. With the cast inside the parametrization the cache holds the
    cast weight: one cast per update, as autocast does for a plain weight (and, as there, the gradients
    of a weight's calls are summed in autocast's dtype before the cast back). Outside autocast it is the
    identity, so fp32 is unchanged.
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        device = weight.device.type
        if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            return weight.to(torch.get_autocast_dtype(device))
        return weight


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
        if parametrize.is_parametrized(layer, "weight"):
            # unsafe: it changes the dtype (under autocast), and registering it must not run the chain
            # (spectral norm's power iteration would advance once more than before).
            parametrize.register_parametrization(layer, "weight", AutocastWeight(), unsafe=True)
        return layer
