"""Metrics that see mode collapse (docs/metrics.md), in any feature space (``inception``, ``pixels``, a plugin's).

- ``density_coverage``: Naeem et al. (2020) density and coverage of the generated set.
- ``diversity``: the nearest-neighbour ratio, the share of real modes covered and coverage, with
  a ``collapse_flag`` when any falls below its threshold.
- ``finding_rates``: how often an analyser (the phantom's, by default) finds each finding in the
  generated and in the real set: a generator that dropped a finding shows it here.

The computations are :mod:`ganforge.diversity`'s; these wrap them as metric components.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ganforge import hookimpl
from ganforge.config import ComponentRef, Ref
from ganforge.diversity import density_coverage, mode_coverage, nn_ratio
from ganforge.evaluation import EvalContext


def _space(ctx: EvalContext, ref: ComponentRef):
    if ctx.registry is None:
        raise ValueError("the diversity metrics need ctx.registry to build their feature space")
    return ctx.registry.build("feature_space", ref.name, ref.params)


def _features(ctx: EvalContext, ref: ComponentRef) -> tuple[torch.Tensor, torch.Tensor]:
    space = _space(ctx, ref)
    return space(ctx, "real"), space(ctx, "fake")


def _space_text(ctx: EvalContext, ref: ComponentRef) -> str:
    return _space(ctx, ref).describe() if ctx.registry else ref.name


class DensityCoverageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    space: Ref = Field(default_factory=lambda: ComponentRef(name="inception"), description="feature space")
    k: int = Field(5, ge=1, description="the k-th nearest real neighbour sets each real image's radius")


class DensityCoverage:
    """Density and coverage (Naeem et al. 2020): fidelity and diversity that a collapsed set cannot fake."""

    def __init__(self, **params):
        self.p = DensityCoverageParams(**params)

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        real, fake = _features(ctx, self.p.space)
        density, coverage = density_coverage(real, fake, self.p.k)
        return {"density": density, "coverage": coverage}

    def protocol(self, ctx: EvalContext) -> str:
        where = _space_text(ctx, self.p.space)
        return f"density/coverage (Naeem et al. 2020), k = {self.p.k}, {where}, {len(ctx.real)} real vs {len(ctx.fake)}"


def _small_pixels() -> ComponentRef:
    return ComponentRef.model_validate({"name": "pixels", "size": 16, "mirror": False, "shift": 0})


class DiversityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    space: Ref = Field(default_factory=_small_pixels, description="feature space (default: 16×16 pixels)")
    cells: int = Field(0, ge=0, description="k-means cells of the real set; 0 = one per 20 real images, 5 to 50")
    min_ratio: float = Field(0.5, ge=0, description="a nearest-neighbour ratio below this flags collapse")
    min_modes: float = Field(0.5, ge=0, le=1, description="a share of modes covered below this flags collapse")
    min_coverage: float = Field(0.5, ge=0, le=1, description="a coverage below this flags collapse")
    k: int = Field(5, ge=1, description="coverage's k-th nearest real neighbour")
    seed: int = 0


class Diversity:
    """Nearest-neighbour ratio, modes covered and coverage of the generated set; a collapse flag when any is low."""

    def __init__(self, **params):
        self.p = DiversityParams(**params)

    def cells(self, ctx: EvalContext) -> int:
        return self.p.cells or max(5, min(50, len(ctx.real) // 20))

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        real, fake = _features(ctx, self.p.space)
        ratio = nn_ratio(real, fake, self.p.seed)
        modes = mode_coverage(real, fake, self.cells(ctx), self.p.seed)
        _, coverage = density_coverage(real, fake, self.p.k)
        flag = ratio < self.p.min_ratio or modes < self.p.min_modes or coverage < self.p.min_coverage
        return {"nn_ratio": ratio, "modes_covered": modes, "coverage": coverage, "collapse_flag": float(flag)}

    def protocol(self, ctx: EvalContext) -> str:
        return (
            f"diversity: nearest-neighbour ratio on {min(len(ctx.real), len(ctx.fake))} vs as many, modes = "
            f"{self.cells(ctx)} k-means cells of the real set, coverage k = {self.p.k}, "
            f"{_space_text(ctx, self.p.space)}; flagged below "
            f"{self.p.min_ratio} / {self.p.min_modes} / {self.p.min_coverage}"
        )


class FindingRatesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    analyser: str = Field("phantom", description="the analyser that finds the findings (phantom: phantoms only)")
    params: dict[str, Any] = Field(
        default_factory=dict, description="the analyser's parameters: {version = 2} for phantom v2 data"
    )


class FindingRates:
    """Share of generated and of real images in which the analyser finds each finding, and the largest gap.

    Rates are over the images the analyser can assess; ``not_assessable_fake`` / ``_real`` give the
    share it cannot (a finding rate over images of noise would mean nothing)."""

    def __init__(self, **params):
        self.p = FindingRatesParams(**params)

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        if ctx.registry is None:
            raise ValueError("finding_rates needs ctx.registry to build its analyser")
        analyser = ctx.registry.build("analyser", self.p.analyser, self.p.params)
        rates, out = {}, {}
        for side in ("real", "fake"):
            images = ctx.images(side)
            readable = analyser.assessable(images)
            rates[side] = analyser(images[readable]).float().mean(0)  # NaN when none is readable
            out[f"not_assessable_{side}"] = float((~readable).float().mean())
        for k, name in enumerate(analyser.label_names):
            out[f"{name}_fake"], out[f"{name}_real"] = float(rates["fake"][k]), float(rates["real"][k])
        out["largest_gap"] = float((rates["fake"] - rates["real"]).abs().max())
        return out

    def protocol(self, ctx: EvalContext) -> str:
        return f"finding rates by the {self.p.analyser} analyser, {len(ctx.fake)} generated vs {len(ctx.real)} real"


@hookimpl
def ganforge_register(registry):
    registry.register("metric", "density_coverage", DensityCoverage, DensityCoverageParams)
    registry.register("metric", "diversity", Diversity, DiversityParams)
    registry.register("metric", "finding_rates", FindingRates, FindingRatesParams)
