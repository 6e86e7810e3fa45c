"""The collapse alarm: figures in metrics.jsonl during training, and one warning when a generator collapses."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ganforge.collapse import CollapseAlarm
from ganforge.config import CollapseConfig
from ganforge.diversity import density_coverage, nn_ratio, pixel_embedding
from ganforge.plugins import load_registry
from ganforge.rundir import METRICS
from ganforge.training import Trainer


class Fixed(nn.Module):
    """A 'generator' returning given images (in [-1, 1]) for whatever latents it gets."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.images = images.float() / 127.5 - 1

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [self.images[torch.arange(len(z)) % len(self.images)]]


def phantoms(n: int, seed: int) -> torch.Tensor:
    return (
        load_registry().build("dataset", "phantom", {"size": n, "seed": seed}, resolution=32, image_channels=1).images
    )


def test_the_alarm_measures_what_diversity_computes_and_warns_once_per_collapse():
    real, fresh = phantoms(64, 1), phantoms(64, 2)
    settings = CollapseConfig(images=64, size=16)
    alarm = CollapseAlarm(settings, real, latent_dim=8, seed=0)
    healthy = alarm.measure(Fixed(fresh), torch.device("cpu"))
    expected_real, expected_fake = pixel_embedding(real, 16), pixel_embedding(fresh, 16)
    # The alarm's real images are a seeded permutation of all 64: the same set, so the same figures.
    assert healthy["nn_ratio"] == pytest.approx(nn_ratio(expected_real, expected_fake), rel=1e-5)
    assert healthy["coverage"] == pytest.approx(density_coverage(expected_real, expected_fake, 5)[1])
    assert healthy["nn_ratio"] > 0.8 and healthy["coverage"] > 0.8 and alarm.warning(100, healthy) is None
    collapsed = alarm.measure(Fixed(fresh[:1]), torch.device("cpu"))
    assert collapsed["nn_ratio"] < 0.01 and collapsed["coverage"] < settings.min_coverage  # one image: no distance
    message = alarm.warning(200, collapsed)
    assert message is not None and message.startswith(
        "step 200: the generator may be collapsing: nn_ratio 0.00 (< 0.5)"
    )
    assert alarm.warning(300, collapsed) is None  # said once, not every check
    assert alarm.warning(400, healthy) is None and alarm.warning(500, collapsed) is not None  # again after recovering
    untrained = CollapseAlarm(settings, real, latent_dim=8, seed=0)  # noise: varied, but covers nothing yet
    noise = untrained.measure(Fixed(torch.randint(0, 256, (64, 1, 32, 32), dtype=torch.uint8)), torch.device("cpu"))
    assert noise["coverage"] < settings.min_coverage and noise["nn_ratio"] > settings.min_ratio
    assert untrained.warning(1, noise) is None  # not a collapse
    assert untrained.warning(2, healthy) is None
    dropped = untrained.warning(3, {**healthy, "coverage": 0.1})
    assert dropped is not None and "coverage 0.10 (< 0.5, after" in dropped


def test_training_writes_the_alarms_figures_every_so_many_steps(tiny, tmp_path):
    config, registry = tiny
    config = config.model_copy(
        update={"train": config.train.model_copy(update={"collapse": CollapseConfig(every=2, images=16)})}
    )
    Trainer(config, registry, tmp_path, device="cpu").fit(4, evaluate=False)
    records = [json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines()]
    checks = [(r["step"], sorted(r["collapse"])) for r in records if "collapse" in r]
    assert checks == [(2, ["coverage", "nn_ratio"]), (4, ["coverage", "nn_ratio"])]
