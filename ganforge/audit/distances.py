"""Nearest-training-image distances in one feature space, computed once per evaluation.

The three privacy metrics and the pairs grid all need the same distances (generated → training,
held-out → training); :func:`distances` keeps them in the :class:`~ganforge.evaluation.EvalContext`
memo, keyed by the feature space, so each space's nearest-neighbour search runs once.
"""

from __future__ import annotations

import torch

from ..config import ComponentRef
from ..evaluation import EvalContext
from ..kinds import FeatureSpace
from .neighbours import nearest_of_views


class Distances:
    """Generated and held-out images' distances to their nearest training image, in ``space``.

    Each query image is matched in every view the space names; its distance is the smallest.
    """

    def __init__(self, ctx: EvalContext, space: FeatureSpace):
        self.space, self._ctx = space, ctx
        self.train = space(ctx, "real")
        self.fake_views = self.views("fake")
        self.fake_points = self.fake_views[0]
        self.fake, self.fake_index, self.fake_view = nearest_of_views(self.fake_views, self.train, ctx.device)
        self._held: tuple[torch.Tensor, torch.Tensor] | None = None

    def views(self, side: str) -> list[torch.Tensor]:
        """The features of every view of one set, the images as they are first."""
        return [self.space(self._ctx, side, view=v) for v in range(len(self.space.views))]

    @property
    def held(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances, features) of the held-out set; an error when the context has none."""
        if self._held is None:
            views = self.views("holdout")
            self._held = nearest_of_views(views, self.train, self._ctx.device)[0], views[0]
        return self._held


def space_key(space: ComponentRef) -> str:
    """One string per feature space and parameters: spaces named alike with other parameters differ."""
    return f"{space.name}{sorted(space.params.items())!r}"


def distances(ctx: EvalContext, space: ComponentRef) -> Distances:
    """The distances in the feature space ``space`` names, shared by every metric of ``ctx``."""
    registry = ctx.registry
    if registry is None:
        raise ValueError("the privacy metrics need ctx.registry to build their feature space")
    key = ("distances", space_key(space))
    return ctx.memo(key, lambda: Distances(ctx, registry.build("feature_space", space.name, space.params)))
