"""The collapse alarm: during training, is the generator still as varied as the data?

Every ``train.collapse.every`` steps the EMA generator draws a fixed batch of latents (the same
ones every time, so the figures form a curve) and :mod:`ganforge.diversity` compares them with a
fixed subset of the training images in pixel space (area-reduced, centred, unit length): the
nearest-neighbour ratio and coverage. Both go to ``metrics.jsonl`` (``{"step", "collapse"}``) and
TensorBoard; the log warns, naming the step, when the ratio falls below its threshold, or coverage
below its own after having been above it (a generator that does not draw radiographs yet covers
nothing without having collapsed), and again only after recovering. It costs one generator forward
pass and two small distance matrices.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import CollapseConfig
from .diversity import density_coverage, nn_ratio, pixel_embedding
from .evaluation import subset
from .images import to_uint8
from .seeds import mix_seed


def below(settings: CollapseConfig, figures: dict[str, float], best_coverage: float) -> list[str]:
    """The figures below their thresholds, worded for the log: the ratio, and coverage once it has
    been above its own (``best_coverage``: the highest so far)."""
    s = settings
    low = [f"nn_ratio {figures['nn_ratio']:.2f} (< {s.min_ratio})"] if figures["nn_ratio"] < s.min_ratio else []
    if figures["coverage"] < s.min_coverage <= best_coverage:
        low.append(f"coverage {figures['coverage']:.2f} (< {s.min_coverage}, after {best_coverage:.2f})")
    return low


class CollapseAlarm:
    """Measures a generator's diversity on fixed latents against fixed real images (``real``, uint8)."""

    def __init__(self, settings: CollapseConfig, real: torch.Tensor, latent_dim: int, seed: int):
        self.settings = settings
        n = min(settings.images, len(real))
        self.real = pixel_embedding(subset(real, n, mix_seed(seed, 5)), settings.size)
        self.z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(mix_seed(seed, 6)))
        self.alarmed = False
        self.best_coverage = 0.0  # coverage warns only once it has been above its threshold

    @torch.no_grad()
    def measure(self, generator: nn.Module, device: torch.device) -> dict[str, float]:
        """The nearest-neighbour ratio and coverage of ``generator``'s images of the fixed latents."""
        images = torch.cat([to_uint8(generator(z.to(device))[-1]).cpu() for z in self.z.split(256)])
        fake = pixel_embedding(images, self.settings.size)
        _, coverage = density_coverage(self.real, fake, self.settings.k)
        return {"nn_ratio": nn_ratio(self.real, fake), "coverage": coverage}

    def warning(self, step: int, figures: dict[str, float]) -> str | None:
        """The line to log when the figures fall below their thresholds (once, until they recover)."""
        low = below(self.settings, figures, self.best_coverage)
        self.best_coverage = max(self.best_coverage, figures["coverage"])
        was, self.alarmed = self.alarmed, bool(low)
        if not low or was:
            return None
        return (
            f"step {step}: the generator may be collapsing: {', '.join(low)} on {len(self.z)} fixed latents "
            "against as many training images (docs/metrics.md); look at the latest samples/ grid"
        )
