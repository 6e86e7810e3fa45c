"""Image connections: single-scale (image only at the top) and MSG-GAN multi-scale gradients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganforge import hookimpl
from ganforge.kinds import DiscriminatorInput, FixedSchedule, GeneratorHead, Schedule
from ganforge.layers import Layers


class ImageHeads(GeneratorHead):
    """A 1×1 conv to image channels (linear, no tanh) at each of ``resolutions``."""

    def __init__(self, channels: dict[int, int], resolutions: Sequence[int], image_channels: int, layers: Layers):
        super().__init__()
        self.to_image = nn.ModuleDict({str(r): layers.conv(channels[r], image_channels, 1) for r in resolutions})

    def forward(self, features: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        return [conv(features[int(res)]) for res, conv in self.to_image.items()]


def average_pyramid(images: torch.Tensor, resolutions: Sequence[int]) -> list[torch.Tensor]:
    """``images`` average-pooled to each of ``resolutions``, coarse to fine (the finest is ``images``)."""
    top = images.shape[-1]
    return [images if r == top else F.avg_pool2d(images, top // r) for r in sorted(resolutions)]


class SkipHeads(ImageHeads):
    """StyleGAN2's skip generator, read out as a pyramid: every scale adds to one image.

    The image at scale r is the bilinearly upsampled image at r/2 plus a 1×1 conv of the features
    at r; the finest is the output. D gets it average-pooled to every scale, built as the real
    pyramid is, so no scale contradicts another; each head still gets D's gradient directly, through
    the sum, from every scale D reads. Same parameters as :class:`ImageHeads`.
    """

    def forward(self, features: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        (coarsest, conv), *finer = self.to_image.items()  # coarse to fine
        image = conv(features[int(coarsest)])
        for res, conv in finer:
            image = F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False)
            image = image + conv(features[int(res)])
        return average_pyramid(image, [int(r) for r in self.to_image])


class PooledHead(ImageHeads):
    """One 1×1 conv at the finest scale; D gets its image average-pooled to every scale, as a real one."""

    def __init__(self, channels: dict[int, int], image_channels: int, layers: Layers):
        super().__init__(channels, [max(channels)], image_channels, layers)
        self.resolutions = sorted(channels)

    def forward(self, features: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        return average_pyramid(super().forward(features)[0], self.resolutions)


class SingleScaleInput(DiscriminatorInput):
    """The image enters once, at the finest scale, through a 1×1 conv."""

    def __init__(self, channels: dict[int, int], image_channels: int, layers: Layers):
        super().__init__()
        self.channels = dict(channels)
        self.top = max(channels)
        self.from_image = layers.conv(image_channels, channels[self.top], 1)

    def in_channels(self, resolution: int) -> int:
        return self.channels[resolution]

    def forward(self, resolution: int, features: torch.Tensor | None, images: list[torch.Tensor]) -> torch.Tensor:
        return self.from_image(images[-1]) if features is None else features


class _Fixed:
    """A connection that does not grow the networks: every step at the model's resolution."""

    def schedule(self, resolution: int, batch_size: int) -> Schedule:
        return FixedSchedule(resolution, batch_size)


class SingleScaleConnection(_Fixed):
    """Plain GAN: G emits only the final image; D sees it only at its first layer."""

    def generator_head(self, channels: dict[int, int], image_channels: int, layers: Layers) -> GeneratorHead:
        return ImageHeads(channels, [max(channels)], image_channels, layers)

    def discriminator_input(self, channels: dict[int, int], image_channels: int, layers: Layers) -> DiscriminatorInput:
        return SingleScaleInput(channels, image_channels, layers)

    def pyramid(self, images: torch.Tensor, resolutions: Sequence[int]) -> list[torch.Tensor]:
        return [images]


Combine = Literal["simple", "lin_cat", "cat_lin"]
Fakes = Literal["heads", "skip", "pooled"]


class MultiScaleInput(DiscriminatorInput):
    """MSG-GAN's discriminator input: the image at every scale joins the features there.

    At the finest scale a 1×1 conv maps the image to features. At every coarser scale r the image
    ``o_r`` joins the features ``a`` through the combine function:
    ``simple``: cat(o_r, a); ``lin_cat``: cat(conv1x1(o_r), a) (BMSG-GAN, PyTorch reference);
    ``cat_lin``: conv1x1(cat(o_r, a)) (MSG-StyleGAN, TF reference).
    """

    def __init__(self, channels: dict[int, int], image_channels: int, layers: Layers, combine: Combine):
        super().__init__()
        self.combine = combine
        self.channels = dict(channels)
        self.image_channels = image_channels
        self.top = max(channels)
        self.from_image = layers.conv(image_channels, channels[self.top], 1)
        coarser = [r for r in channels if r != self.top]
        if combine == "lin_cat":
            self.mix = nn.ModuleDict({str(r): layers.conv(image_channels, channels[r], 1) for r in coarser})
        elif combine == "cat_lin":
            self.mix = nn.ModuleDict(
                {str(r): layers.conv(image_channels + channels[r], channels[r], 1) for r in coarser}
            )
        else:
            self.mix = nn.ModuleDict()

    def in_channels(self, resolution: int) -> int:
        width = self.channels[resolution]
        if resolution == self.top or self.combine == "cat_lin":
            return width
        return width + (width if self.combine == "lin_cat" else self.image_channels)

    def forward(self, resolution: int, features: torch.Tensor | None, images: list[torch.Tensor]) -> torch.Tensor:
        image = images[resolution.bit_length() - 3]  # images[0] is 4×4
        if features is None:
            return self.from_image(image)
        if self.combine == "lin_cat":
            return torch.cat([self.mix[str(resolution)](image), features], dim=1)
        joined = torch.cat([image, features], dim=1)
        return self.mix[str(resolution)](joined) if self.combine == "cat_lin" else joined


class MultiScaleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    combine: Combine = Field("lin_cat", description="how each scale's image joins D's features")
    fakes: Fakes = Field(
        "heads",
        description="the generated pyramid: heads, G's own image at every scale (MSG-GAN); skip, G's scales "
        "sum into one image (StyleGAN2's skip generator); pooled, G's finest image only; for skip and pooled "
        "D gets the image average-pooled to every scale, as a real one",
    )


class MultiScaleConnection(_Fixed):
    """MSG-GAN multi-scale gradients: G emits an image at every scale, D takes each one in."""

    def __init__(self, *, combine: Combine, fakes: Fakes = "heads"):
        self.combine = combine
        self.fakes = fakes

    def generator_head(self, channels: dict[int, int], image_channels: int, layers: Layers) -> GeneratorHead:
        if self.fakes == "pooled":
            return PooledHead(channels, image_channels, layers)
        return (SkipHeads if self.fakes == "skip" else ImageHeads)(channels, sorted(channels), image_channels, layers)

    def discriminator_input(self, channels: dict[int, int], image_channels: int, layers: Layers) -> DiscriminatorInput:
        return MultiScaleInput(channels, image_channels, layers, self.combine)

    def pyramid(self, images: torch.Tensor, resolutions: Sequence[int]) -> list[torch.Tensor]:
        return average_pyramid(images, resolutions)


@hookimpl
def ganforge_register(registry):
    registry.register("connection", "single_scale", SingleScaleConnection)
    registry.register("connection", "multi_scale", MultiScaleConnection, MultiScaleParams)
