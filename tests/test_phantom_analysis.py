"""The phantom analyser reads findings only from images that are phantom radiographs."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ganforge_plugins.phantom import render_phantoms
from ganforge_plugins.phantom_analysis import CHECK, REFERENCE, PhantomAnalyser

PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


@pytest.fixture(scope="module", params=[1, 2])
def analyser(request):
    return PhantomAnalyser(version=request.param)


def test_fresh_phantoms_of_its_version_are_assessable_at_any_size(analyser):
    seed = 424_242
    assert seed not in (REFERENCE[1], CHECK[1])
    for resolution in (32, 64, 128):
        images = render_phantoms(300, resolution, seed=seed, version=analyser.version)[0]
        assert analyser.assessable(images).float().mean() >= 0.99


@pytest.mark.parametrize(
    "make",
    [
        lambda g: torch.randint(0, 256, (100, 1, 64, 64), generator=g, dtype=torch.uint8),  # noise
        lambda g: torch.full((5, 1, 64, 64), 128, dtype=torch.uint8),  # blank grey
        lambda g: torch.full((5, 1, 64, 64), 255, dtype=torch.uint8),  # saturated
        lambda g: torch.zeros((5, 1, 64, 64), dtype=torch.uint8),  # black
    ],
    ids=["noise", "blank", "saturated", "black"],
)
def test_what_is_no_radiograph_is_not_assessable(analyser, make):
    images = make(torch.Generator().manual_seed(0))
    assert not analyser.assessable(images).any()


@pytest.mark.parametrize("width", [5, 9, 15, 21])
def test_smooth_blobs_are_not_assessable(analyser, width):
    """Box-blurred noise, zero-padded so that its border darkens like a body outline: near enough
    to v2's most atypical phantoms in layout from 15×15 on, so only its flat centre (no lung fields
    beside a mediastinum) tells it apart there."""
    noise = torch.rand(100, 1, 64, 64, generator=torch.Generator().manual_seed(width)) * 255
    blobs = F.avg_pool2d(noise, width, 1, width // 2).to(torch.uint8)
    assert not analyser.assessable(blobs).any()


def test_the_other_phantom_version_is_not_assessable_by_v1():
    v1 = PhantomAnalyser(version=1)
    assert v1.assessable(render_phantoms(200, 64, seed=5, version=2)[0]).float().mean() <= 0.01


@pytest.mark.skipif(not PNEUMONIA.is_file(), reason=f"real X-rays not found at {PNEUMONIA}")
def test_real_chest_x_rays_are_not_scored_as_phantom_findings(analyser):
    real = torch.from_numpy(np.load(PNEUMONIA)["train_images"])[:, None]  # 2,428 images, 28×28
    assessed = analyser.assessable(F.interpolate(real.float(), size=64, mode="bicubic").clamp(0, 255).to(torch.uint8))
    assert assessed.float().mean() <= 0.02
    assert analyser.assessable(real).float().mean() <= 0.02  # at their own size too
