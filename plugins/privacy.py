"""The privacy audit's metrics and the feature spaces they measure distances in.

Metrics (``[eval] metrics``, ``ganforge audit``): ``data_copying`` (Meehan et al.'s
``C_T``), ``near_copies`` (rate of generated images nearer to a training image than fresh real
ones almost ever are) and ``memorization`` (the MiFID term). ``ctx.real`` is the training set,
``ctx.holdout`` the real images held out of training (``data.holdout``). Feature spaces:
``inception`` (the FID features, shared with FID/KID and cached) and ``pixels`` (downsampled,
centred, unit-norm pixels, also matched mirrored and shifted at full resolution: catches exact,
flipped, moved, brightened and noised copies).
See docs/privacy.md.
"""

from __future__ import annotations

import torch
from ganforge_plugins.metrics import FeatureParams, extractor_text
from pydantic import BaseModel, ConfigDict, Field

from ganforge import hookimpl
from ganforge.audit.distances import distances
from ganforge.audit.statistics import cosine_to_nearest, data_copying, near_copies
from ganforge.config import ComponentRef, Ref
from ganforge.diversity import pixel_embedding
from ganforge.evaluation import EvalContext

# --------------------------------------------------------------------------- feature spaces


class InceptionSpace:
    """The FID Inception features (cached for real and held-out sets, shared with FID and KID)."""

    views = ("as is",)

    def __init__(self, **params):
        self.p = FeatureParams(**params)

    def __call__(self, ctx: EvalContext, side: str, view: int = 0) -> torch.Tensor:
        return ctx.features(side, self.p.extractor, self.p.layer)

    def describe(self) -> str:
        return extractor_text(self.p)


class PixelParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(32, ge=0, description="larger images are area-reduced to size×size first (0 = never)")
    mirror: bool = Field(True, description="also match the mirrored image (a flipped copy is a copy)")
    shift: int = Field(
        3, ge=0, le=8, description="also match the image moved by every (dx, dy) up to this many pixels, at full size"
    )


class PixelSpace:
    """Pixels, area-resized, centred and scaled to unit length, matched as they are, mirrored and
    moved: an exact, flipped or slightly moved copy lies far closer than any other image.

    Moves are matched without padding: every image is compared through a window that leaves out
    ``shift`` pixels at each border, the training image's window centred, the generated (or
    held-out) image's displaced by each (dx, dy) with |dx|, |dy| ≤ ``shift`` at full resolution,
    before the area reduction. A copy moved by (dx, dy) then shows the training image's own
    pixels in that view, exactly. Only the windows as they are are kept in memory; the other
    views are computed when read.
    """

    def __init__(self, **params):
        self.p = PixelParams(**params)
        s = self.p.shift
        moves = [(0, 0)] + [(dx, dy) for dy in range(-s, s + 1) for dx in range(-s, s + 1) if dx or dy]
        self._views = [
            (mirror, dx, dy) for mirror in ((False, True) if self.p.mirror else (False,)) for dx, dy in moves
        ]
        self.views = [self._name(*v) for v in self._views]

    @staticmethod
    def _name(mirror: bool, dx: int, dy: int) -> str:
        parts = (["mirrored"] if mirror else []) + ([f"moved ({dx:+d}, {dy:+d}) px"] if dx or dy else [])
        return ", ".join(parts) or "as is"

    def __call__(self, ctx: EvalContext, side: str, view: int = 0) -> torch.Tensor:
        if view:
            return self._embed(ctx.images(side), view)
        return ctx.memo(("pixels", self.p.size, self.p.shift, side), lambda: self._embed(ctx.images(side), 0))

    def _embed(self, images: torch.Tensor, view: int) -> torch.Tensor:
        mirror, dx, dy = self._views[view]
        s, r = self.p.shift, images.shape[-1]
        if r < 4 * s:
            raise ValueError(f"pixels space: shift = {s} needs images of at least {4 * s}×{4 * s}, not {r}×{r}")
        chunks = []
        for start in range(0, len(images), 1024):
            x = images[start : start + 1024].float()
            if mirror:
                x = x.flip(-1)
            chunks.append(pixel_embedding(x[..., s + dy : r - s + dy, s + dx : r - s + dx], self.p.size))
        return torch.cat(chunks)

    def describe(self) -> str:
        size = f"≤ {self.p.size}×{self.p.size}" if self.p.size else "full-size"
        moves = f"moved up to ±{self.p.shift} px, {self.p.shift} px borders left out" if self.p.shift else "not moved"
        mirror = "and mirrored, " if self.p.mirror else ""
        return f"{size} pixels, centred, unit length, matched over {len(self.views)} views ({mirror}{moves})"


# --------------------------------------------------------------------------- metrics


class AuditParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    space: Ref = Field(
        default_factory=lambda: ComponentRef(name="inception"),
        description='feature space: "inception", "pixels", {name = "pixels", size = 64} or a plugin\'s',
    )


def _space_text(ctx: EvalContext, ref: ComponentRef) -> str:
    return ctx.registry.build("feature_space", ref.name, ref.params).describe() if ctx.registry else ref.name


def _counts(ctx: EvalContext) -> str:
    held = f", {len(ctx.holdout)} held-out real" if ctx.holdout is not None else ""
    return f"{len(ctx.fake)} generated vs {len(ctx.real)} training{held}"


class CopyingParams(AuditParams):
    cells: int = Field(0, ge=0, description="k-means cells of the training set; 0 = one per 40 held-out images (≤ 50)")
    min_per_cell: int = Field(5, ge=2, description="cells with fewer generated or held-out images are left out")
    alpha: float = Field(0.001, gt=0, lt=1, description="flag when C_T's one-sided p-value is below this")
    seed: int = 0


class DataCopying:
    """Meehan et al. (2020) data-copying test: C_T ≪ 0 when generated images hug the training set,
    flagged by its p-value under the null (fresh images), not by a fixed C_T."""

    def __init__(self, **params):
        self.p = CopyingParams(**params)

    def cells(self, ctx: EvalContext) -> int:
        return self.p.cells or max(1, min(50, len(ctx.images("holdout")) // 40))

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        d = distances(ctx, self.p.space)
        test = data_copying(
            d.train, d.views("fake"), d.views("holdout"), self.cells(ctx), self.p.min_per_cell, self.p.seed, ctx.device
        )
        return {
            "copying_ct": test.ct,
            "copying_p": test.p_value,
            "copying_cells": float(test.cells),
            "copying_lowest_z": test.lowest_z,
            "copying_flag": float(test.p_value < self.p.alpha),
        }

    def protocol(self, ctx: EvalContext) -> str:
        return (
            f"data copying (Meehan et al. 2020): C_T over {self.cells(ctx)} k-means cells of the training set, "
            f"nearest training image within the cell, Mann-Whitney z per cell (≥ {self.p.min_per_cell} images of "
            f"each), flagged when its one-sided p < {self.p.alpha:g}; "
            f"{_space_text(ctx, self.p.space)}; {_counts(ctx)}"
        )


class NearCopyParams(AuditParams):
    percentile: float = Field(5.0, gt=0, lt=100, description="of held-out→training distances: the near-copy radius")
    alpha: float = Field(0.001, gt=0, lt=1, description="the flag's false-positive rate: each of its two tests at α/2")


class NearCopies:
    """Fraction of generated images nearer to a training image than held-out real ones nearly ever are."""

    def __init__(self, **params):
        self.p = NearCopyParams(**params)

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        d = distances(ctx, self.p.space)
        found = near_copies(d.fake, d.held, self.p.percentile)
        return {
            "near_copy_rate": found.rate,
            "near_copy_expected": found.expected,
            "near_copy_radius": found.threshold,
            "near_copy_p": found.p_value,
            "below_holdout_min": float(found.below_min),
            "below_holdout_min_p": found.below_min_p,
            "near_copy_flag": float(min(found.p_value, found.below_min_p) < self.p.alpha / 2),  # two tests
        }

    def protocol(self, ctx: EvalContext) -> str:
        return (
            f"near copies: generated images nearer to a training image than the {self.p.percentile:g}th percentile "
            "of held-out→training distances, and nearer than every held-out image; exact beta-binomial tests, "
            f"flagged when either p < {self.p.alpha:g}/2 (α = {self.p.alpha:g} for both); "
            f"{_space_text(ctx, self.p.space)}; {_counts(ctx)}"
        )


class Memorization:
    """The MiFID memorization distance: mean cosine distance from each generated image to the
    closest training image (beside the held-out images' when there are any)."""

    def __init__(self, **params):
        self.p = AuditParams(**params)

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        space = distances(ctx, self.p.space)
        values = {"memorization_distance": float(cosine_to_nearest(space.views("fake"), space.train).mean())}
        if ctx.holdout is not None:
            values["memorization_holdout"] = float(cosine_to_nearest(space.views("holdout"), space.train).mean())
        return values

    def protocol(self, ctx: EvalContext) -> str:
        space = _space_text(ctx, self.p.space)
        what = "memorization distance (MiFID term: mean 1 − cos to the closest training image, over the space's views)"
        return f"{what}; {space}; {_counts(ctx)}"


@hookimpl
def ganforge_register(registry):
    registry.register("feature_space", "inception", InceptionSpace, FeatureParams)
    registry.register("feature_space", "pixels", PixelSpace, PixelParams)
    registry.register("metric", "data_copying", DataCopying, CopyingParams)
    registry.register("metric", "near_copies", NearCopies, NearCopyParams)
    registry.register("metric", "memorization", Memorization, AuditParams)
