"""What the losses see as the discriminator: D behind the configured ``d_augment`` (DiffAugment, ADA).

The losses call ``D(images)`` and know nothing of augmentation; :class:`AugmentedDiscriminator`
augments every list of images it is given, real or generated, before D scores it, in the D step,
the G step and the regularizers alike, so G learns through the augmentation. In the D step it is
told which list is the real batch, and keeps D's scores of it and of the generated batch for the
augmentations (ADA's feedback).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import nn

from .kinds import DiscriminatorAugment

Scorer = Callable[[list[torch.Tensor]], torch.Tensor]


class AugmentedDiscriminator:
    """``D(augment(images))`` for the losses. ``real``: the D step's real list; the scores of it and of the
    first other list (the generated one) are kept for :meth:`DiscriminatorAugments.feedback`."""

    def __init__(self, D: Scorer, augments: Sequence[DiscriminatorAugment], real: list[torch.Tensor] | None = None):
        self.D, self.augments, self.real = D, augments, real
        self.real_scores: torch.Tensor | None = None
        self.fake_scores: torch.Tensor | None = None

    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        given = images
        for augment in self.augments:
            images = augment(images)
        scores = self.D(images)
        if self.real is not None:
            if given is self.real:  # the very list the trainer named (the losses pass it on unchanged)
                self.real_scores = scores.detach()
            elif self.fake_scores is None:
                self.fake_scores = scores.detach()
        return scores


class DiscriminatorAugments(nn.ModuleList):
    """The run's ``d_augment`` components in order; a module, so their state goes into checkpoints."""

    @property
    def members(self) -> list[DiscriminatorAugment]:
        return cast(list[DiscriminatorAugment], list(self))

    def seen_by_losses(self, D: Scorer, real: list[torch.Tensor] | None = None) -> Scorer:
        """What the losses should call: ``D`` itself when nothing augments (no wrapper, no cost)."""
        return AugmentedDiscriminator(D, self.members, real) if len(self) else D

    def feedback(self, seen: Scorer) -> None:
        """After a D step's loss: D's scores of the augmented real and generated images to each augmentation."""
        if isinstance(seen, AugmentedDiscriminator) and seen.real_scores is not None and seen.fake_scores is not None:
            for augment in self.members:
                augment.feedback(seen.real_scores, seen.fake_scores)

    def figures(self) -> dict[str, float]:
        """What the augmentations report with the losses (ADA: its probability)."""
        return {k: v for augment in self.members for k, v in augment.figures().items()}
