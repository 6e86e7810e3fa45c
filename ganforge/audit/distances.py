"""Nearest-training-image distances in one feature space, computed once per evaluation.

The three privacy metrics and the pairs grid all need the same distances (generated → training,
held-out → training); :func:`distances` keeps them in the :class:`~ganforge.evaluation.EvalContext`
memo, keyed by the feature space, so each space's nearest-neighbour search runs once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import torch

from ..config import ComponentRef
from ..evaluation import EvalContext
from ..kinds import FeatureSpace
from .neighbours import nearest_of_views


class Views(Sequence[torch.Tensor]):
    """The features of every view of one set, the images as they are first, each computed when
    read: a space with many views (the pixel space's shifts) never holds them all at once."""

    def __init__(self, space: FeatureSpace, ctx: EvalContext, side: str):
        self._space, self._ctx, self._side = space, ctx, side

    def __len__(self) -> int:
        return len(self._space.views)

    @overload
    def __getitem__(self, view: int) -> torch.Tensor: ...
    @overload
    def __getitem__(self, view: slice) -> list[torch.Tensor]: ...
    def __getitem__(self, view: int | slice) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(view, slice):
            return [self[v] for v in range(len(self))[view]]
        if not -len(self) <= view < len(self):
            raise IndexError(view)
        return self._space(self._ctx, self._side, view=view % len(self))


class Distances:
    """Generated and held-out images' distances to their nearest training image, in ``space``.

    Each query image is matched in every view the space names; its distance is the smallest.
    """

    def __init__(self, ctx: EvalContext, space: FeatureSpace):
        self.space, self._ctx = space, ctx
        self.train = space(ctx, "real")
        self.fake, self.fake_index, self.fake_view = nearest_of_views(self.views("fake"), self.train, ctx.device)
        self._held: torch.Tensor | None = None

    def views(self, side: str) -> Views:
        """The features of every view of ``side`` ("fake", "holdout"), computed as they are read."""
        return Views(self.space, self._ctx, side)

    @property
    def held(self) -> torch.Tensor:
        """The held-out images' distances; an error when the context has none."""
        if self._held is None:
            self._held = nearest_of_views(self.views("holdout"), self.train, self._ctx.device)[0]
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
