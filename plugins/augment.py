"""Augmentations of real batches."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from ganforge import hookimpl


class FlipParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p: float = Field(0.5, ge=0, le=1, description="probability that an image is mirrored")


class HorizontalFlip:
    """Horizontal flip of each image with probability p (SAMGAN's 'FA' column)."""

    def __init__(self, *, p: float):
        self.p = p

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(images.shape[0], device=images.device) < self.p
        return torch.where(flip[:, None, None, None], images.flip(-1), images)


@hookimpl
def ganforge_register(registry):
    registry.register("augment", "hflip", HorizontalFlip, FlipParams)
