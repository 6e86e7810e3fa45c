"""What the losses see as the discriminator: D behind the configured ``d_augment`` (DiffAugment, ADA).

The losses call ``D(images)`` and know nothing of augmentation; :class:`AugmentedDiscriminator`
augments every list of images it is given, real or generated, before D scores it, in the D step,
the G step and the regularizers alike, so G learns through the augmentation. In the D step it is
told which list is the real batch, and hands D's scores of it to the augmentations (ADA's
feedback).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .kinds import DiscriminatorAugment

Scorer = Callable[[list[torch.Tensor]], torch.Tensor]


class AugmentedDiscriminator:
    """``D(augment(images))`` for the losses; ``real``: the D step's real list, whose scores are fed back."""

    def __init__(self, D: Scorer, augments: Sequence[DiscriminatorAugment], real: list[torch.Tensor] | None = None):
        self.D, self.augments, self.real = D, augments, real

    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        given = images
        for augment in self.augments:
            images = augment(images)
        scores = self.D(images)
        if given is self.real:  # the very list the trainer named (the losses pass it on unchanged)
            for augment in self.augments:
                augment.feedback(scores)
        return scores


class DiscriminatorAugments(nn.ModuleList):
    """The run's ``d_augment`` components in order; a module, so their state goes into checkpoints."""

    def seen_by_losses(self, D: Scorer, real: list[torch.Tensor] | None = None) -> Scorer:
        """What the losses should call: ``D`` itself when nothing augments (no wrapper, no cost)."""
        return AugmentedDiscriminator(D, list(self), real) if len(self) else D
