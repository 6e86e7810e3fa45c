"""Progressive growing (PGGAN, Karras et al. 2018) as a connection: the networks grow 4×4 → R.

All layers exist from the start; the connection decides which resolution is trained. Each phase
shows a number of images at one resolution; a new resolution fades in over ``fade_images``
images: G's output is ``α·toRGB_r(x_r) + (1 − α)·upsample(toRGB_{r/2}(x_{r/2}))`` and D's input
``α·block_r(fromRGB_r(img)) + (1 − α)·fromRGB_{r/2}(avgpool(img))``; real images are faded the
same way. The phase, α and batch size are a pure function of the step, so resuming in the
middle of a fade continues at the same phase and α. The head's current resolution and α are
buffers, so a weights file saved mid-growth samples at the resolution it was trained at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganforge import hookimpl
from ganforge.kinds import DiscriminatorInput, GeneratorHead, Growth
from ganforge.layers import Layers


class _GrowthBuffers(nn.Module):
    """Current resolution and fade-in α, kept as buffers so they travel with the weights."""

    resolution: torch.Tensor
    alpha: torch.Tensor

    def __init__(self, resolution: int):
        super().__init__()
        self.register_buffer("resolution", torch.tensor(resolution))
        self.register_buffer("alpha", torch.tensor(1.0))

    def set_growth(self, resolution: int, alpha: float) -> None:
        self.resolution.fill_(resolution)
        self.alpha.fill_(alpha)

    def current(self) -> tuple[int, float]:
        return int(self.resolution), float(self.alpha)


class ProgressiveHead(GeneratorHead):
    """G's output at the current resolution, faded with the upsampled output one scale below."""

    def __init__(self, channels: dict[int, int], image_channels: int, layers: Layers, start: int):
        super().__init__()
        self.start = start
        self.growth = _GrowthBuffers(start)
        self.to_image = nn.ModuleDict({str(r): layers.conv(channels[r], image_channels, 1) for r in channels})

    def set_growth(self, resolution: int, alpha: float) -> None:
        self.growth.set_growth(resolution, alpha)

    def active_resolution(self) -> int:
        return self.growth.current()[0]

    def forward(self, features: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        resolution, alpha = self.growth.current()
        image = self.to_image[str(resolution)](features[resolution])
        if alpha < 1 and resolution > self.start:
            low = self.to_image[str(resolution // 2)](features[resolution // 2])
            image = torch.lerp(F.interpolate(low, scale_factor=2.0, mode="nearest"), image, alpha)
        return [image]


class ProgressiveInput(DiscriminatorInput):
    """D's image input at the current resolution, faded with the downsampled path one scale below."""

    def __init__(self, channels: dict[int, int], image_channels: int, layers: Layers, start: int):
        super().__init__()
        self.channels, self.start = dict(channels), start
        self.growth = _GrowthBuffers(start)
        self.from_image = nn.ModuleDict({str(r): layers.conv(image_channels, channels[r], 1) for r in channels})

    def set_growth(self, resolution: int, alpha: float) -> None:
        self.growth.set_growth(resolution, alpha)

    def in_channels(self, resolution: int) -> int:
        return self.channels[resolution]

    def forward(
        self, resolution: int, features: torch.Tensor | None, images: list[torch.Tensor]
    ) -> torch.Tensor | None:
        current, alpha = self.growth.current()
        image = images[-1]
        if resolution > current:
            return None
        if resolution == current:
            return self.from_image[str(resolution)](image)
        if resolution == current // 2 and alpha < 1:
            low = self.from_image[str(resolution)](F.avg_pool2d(image, 2))
            assert features is not None  # the block below the finest computed it
            return torch.lerp(low, features, alpha)
        return features


class ProgressiveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_resolution: int = Field(4, ge=4, description="the first phase's resolution")
    phase_images: dict[int, int] = Field(
        default_factory=dict, description="images shown per resolution (fade + stable)"
    )
    default_phase_images: int = Field(800_000, ge=1, description="for resolutions missing from phase_images")
    fade_images: int = Field(800_000, ge=0, description="images over which a new resolution fades in (α 0 → 1)")
    batch_sizes: dict[int, int] = Field(default_factory=dict, description="batch size per resolution")
    default_batch_size: int = Field(16, ge=1, description="for resolutions missing from batch_sizes")


class ProgressiveSchedule:
    """Phases of ``ceil(images / batch)`` steps per resolution; α ramps over a new one's first ``fade_images``."""

    def __init__(self, phases: list[tuple[int, int, int]], fade_images: int):
        self.phases, self.fade_images = phases, fade_images  # (resolution, steps, batch size) per phase

    def total_steps(self) -> int:
        return sum(steps for _, steps, _ in self.phases)

    def growth(self, step: int) -> Growth:
        seen = 0
        for index, (resolution, steps, batch) in enumerate(self.phases):
            last = index == len(self.phases) - 1
            if step < steps or last:
                shown = step * batch
                fading = index > 0 and self.fade_images > 0
                alpha = min(1.0, shown / self.fade_images) if fading else 1.0
                return Growth(resolution, alpha, batch, seen + shown)
            step -= steps
            seen += steps * batch
        raise AssertionError("a progressive schedule has at least one phase")


class ProgressiveConnection:
    """Progressive growing (PGGAN): grow from start_resolution to the model resolution with fade-ins."""

    def __init__(
        self,
        *,
        start_resolution: int,
        phase_images: dict[int, int],
        default_phase_images: int,
        fade_images: int,
        batch_sizes: dict[int, int],
        default_batch_size: int,
    ):
        self.start = start_resolution
        self.phase_images, self.default_phase_images = phase_images, default_phase_images
        self.fade_images = fade_images
        self.batch_sizes, self.default_batch_size = batch_sizes, default_batch_size
        self._input: ProgressiveInput | None = None  # D's input, whose stage the real pyramid follows

    def _check(self, resolution: int) -> None:
        if self.start > resolution:
            raise ValueError(f"progressive.start_resolution {self.start} is above the model resolution")

    def generator_head(self, channels: dict[int, int], image_channels: int, layers: Layers) -> GeneratorHead:
        self._check(max(channels))
        return ProgressiveHead(channels, image_channels, layers, self.start)

    def discriminator_input(self, channels: dict[int, int], image_channels: int, layers: Layers) -> DiscriminatorInput:
        self._check(max(channels))
        self._input = ProgressiveInput(channels, image_channels, layers, self.start)
        return self._input

    def schedule(self, resolution: int, batch_size: int) -> ProgressiveSchedule:
        """The phases 4×4 (or ``start_resolution``) → ``resolution``; ``train.batch_size`` is not used."""
        self._check(resolution)
        phases = []
        for r in (4 << k for k in range(int(math.log2(resolution // 4)) + 1)):  # the model's 4, 8, …, resolution
            if r >= self.start:
                batch = self.batch_sizes.get(r, self.default_batch_size)
                phases.append((r, math.ceil(self.phase_images.get(r, self.default_phase_images) / batch), batch))
        return ProgressiveSchedule(phases, self.fade_images)

    def pyramid(self, images: torch.Tensor, resolutions: Sequence[int]) -> list[torch.Tensor]:
        """The real images at D's current stage, faded as G's output is."""
        if self._input is None:
            raise RuntimeError("the progressive connection feeds real images only once it built D's input")
        resolution, alpha = self._input.growth.current()
        x = F.avg_pool2d(images, images.shape[-1] // resolution) if images.shape[-1] != resolution else images
        if alpha < 1 and resolution > self.start:
            x = torch.lerp(F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest"), x, alpha)
        return [x]


@hookimpl
def ganforge_register(registry):
    registry.register("connection", "progressive", ProgressiveConnection, ProgressiveParams)
