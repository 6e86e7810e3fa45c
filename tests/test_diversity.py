"""Collapse metrics: density/coverage, nearest-neighbour ratio, modes covered, finding rates.

Each is checked against a brute-force numpy/scipy computation of its definition, and each flags
planted collapsed sets (one image, or ten, repeated with noise) that MS-SSIM rates as diverse.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from ganforge.config import ComponentRef
from ganforge.diversity import density_coverage, kth_neighbour_distance, mode_coverage, nn_ratio, pixel_embedding
from ganforge.evaluation import EvalContext, run_metrics
from ganforge.plugins import load_registry


def points(n: int, d: int = 6, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(shift, 1.0, (n, d)).astype(np.float32))


def test_density_and_coverage_equal_naeem_et_al_s_definition():
    real, fake = points(300, seed=1), points(200, seed=2, shift=0.3)
    r, f = real.double().numpy(), fake.double().numpy()
    k = 5
    within = cdist(r, r)
    np.fill_diagonal(within, np.inf)
    radii = np.sort(within, axis=1)[:, k - 1]
    between = cdist(f, r)  # [fake, real]
    density = (between <= radii[None, :]).sum() / (k * len(f))
    coverage = (between.min(axis=0) <= radii).mean()
    ours = density_coverage(real, fake, k)
    assert ours == pytest.approx((density, coverage), rel=1e-4)
    assert np.allclose(kth_neighbour_distance(real, k).numpy(), radii, rtol=1e-4)


def test_the_nearest_neighbour_ratio_compares_equal_numbers_of_images():
    real, fake = points(400, seed=3), points(150, seed=4)
    subset = torch.randperm(400, generator=torch.Generator().manual_seed(0))[:150]
    r, f = real[subset].double().numpy(), fake.double().numpy()

    def mean_nn(x: np.ndarray) -> float:
        d = cdist(x, x)
        np.fill_diagonal(d, np.inf)
        return d.min(axis=1).mean()

    assert nn_ratio(real, fake, seed=0) == pytest.approx(mean_nn(f) / mean_nn(r), rel=1e-4)
    twice = torch.cat([fake[:75], fake[:75] + 1e-3])  # every image has a twin: the ratio falls towards 0
    assert nn_ratio(real, twice) < 0.01


def test_modes_covered_counts_cells_that_get_their_share():
    centres = torch.tensor([[10.0 * i, 0.0] for i in range(4)])
    real = torch.cat([c + 0.1 * points(50, 2, seed=i) for i, c in enumerate(centres)])
    balanced = torch.cat([c + 0.1 * points(25, 2, seed=9 + i) for i, c in enumerate(centres)])
    two_modes = torch.cat([c + 0.1 * points(50, 2, seed=20 + i) for i, c in enumerate(centres[:2])])
    sparse = torch.cat([balanced[:75], centres[3:] + 0.01 * points(3, 2, seed=30)])  # 3 of 25 expected: < 1/4
    assert mode_coverage(real, balanced, cells=4) == 1.0
    assert mode_coverage(real, two_modes, cells=4) == 0.5
    assert mode_coverage(real, sparse, cells=4) == 0.75


def test_the_pixel_embedding_is_centred_unit_length_and_area_reduced():
    images = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
    x = pixel_embedding(images, size=8)
    reduced = images.float().reshape(3, 1, 8, 4, 8, 4).mean((3, 5)).flatten(1)
    centred = reduced - reduced.mean(1, keepdim=True)
    torch.testing.assert_close(x, centred / centred.norm(dim=1, keepdim=True))
    assert torch.equal(pixel_embedding(images.float() * 2 + 10, 8), x) or torch.allclose(
        pixel_embedding(images.float() * 2 + 10, 8), x, atol=1e-6
    )  # brightness and contrast do not count


def planted(base: torch.Tensor, distinct: int, noise: float, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` images that are ``distinct`` images of ``base`` repeated, with Gaussian noise of ``noise`` × 255."""
    g = torch.Generator().manual_seed(seed)
    x = base[torch.arange(n) % distinct].float() + noise * 255 * torch.randn(n, *base.shape[1:], generator=g)
    return x.round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def phantoms():
    registry = load_registry()
    # Phantom v1: so uniform that MS-SSIM cannot tell the planted sets from fresh images (on v2 it partly can).
    params = {"size": 512, "seed": 3, "version": 1}
    return registry, registry.build("dataset", "phantom", params, resolution=32, image_channels=1)


@pytest.mark.parametrize("distinct, noise", [(1, 0.1), (10, 0.02)])
def test_planted_collapsed_sets_that_ms_ssim_calls_diverse_are_flagged(phantoms, distinct, noise):
    registry, data = phantoms
    real, other = data.images[:256], data.images[256:]
    metrics = [
        ComponentRef(name="ms_ssim"),
        ComponentRef(name="diversity"),
        ComponentRef.model_validate({"name": "density_coverage", "space": "pixels"}),
    ]

    def figures(fake: torch.Tensor) -> dict[str, dict[str, float]]:
        return {r.name: r.values for r in run_metrics(metrics, registry, EvalContext(real, fake, registry=registry))}

    healthy, collapsed = figures(other), figures(planted(other, distinct, noise, 256))
    assert collapsed["ms_ssim"]["ms_ssim_fake"] <= healthy["ms_ssim"]["ms_ssim_real"] + 0.01  # "as diverse as real"
    assert healthy["diversity"]["collapse_flag"] == 0.0 and collapsed["diversity"]["collapse_flag"] == 1.0
    assert healthy["density_coverage"]["coverage"] > 0.8 > 0.5 > collapsed["density_coverage"]["coverage"]
    assert healthy["diversity"]["coverage"] > 0.8 > 0.5 > collapsed["diversity"]["coverage"]  # min_coverage
    assert healthy["diversity"]["modes_covered"] == 1.0 and healthy["diversity"]["nn_ratio"] > 0.8
    if distinct == 1:  # one image: a few cells at most (the noise scatters it, and hides it from the ratio)
        assert collapsed["diversity"]["modes_covered"] < 0.5
    else:  # ten images, each with near twins: the ratio falls
        assert collapsed["diversity"]["nn_ratio"] < 0.5


def test_finding_rates_are_the_analysers_rates_on_each_set(phantoms):
    registry, data = phantoms
    real, fake = data.images[:200], data.images[200:300]
    result = run_metrics([ComponentRef(name="finding_rates")], registry, EvalContext(real, fake, registry=registry))
    values = result[0].values
    analyser = registry.build("analyser", "phantom")
    readable_fake, readable_real = analyser.assessable(fake), analyser.assessable(real)
    assert readable_fake.float().mean() >= 0.98 and readable_real.float().mean() >= 0.98  # fresh v1 phantoms
    expected_fake = analyser(fake[readable_fake]).float().mean(0)
    expected_real = analyser(real[readable_real]).float().mean(0)
    assert values["not_assessable_fake"] == pytest.approx(float((~readable_fake).float().mean()))
    for k, name in enumerate(analyser.label_names):
        assert values[f"{name}_fake"] == pytest.approx(float(expected_fake[k]))
        assert values[f"{name}_real"] == pytest.approx(float(expected_real[k]))
    assert values["largest_gap"] == pytest.approx(float((expected_fake - expected_real).abs().max()))
    no_opacity = fake[analyser(fake)[:, analyser.label_names.index("Lung_Opacity")] == 0]
    dropped = run_metrics(
        [ComponentRef(name="finding_rates")], registry, EvalContext(real, no_opacity, registry=registry)
    )
    assert dropped[0].values["Lung_Opacity_fake"] == 0.0 and dropped[0].values["largest_gap"] > 0.1
    noise = torch.randint(0, 256, (40, 1, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    mixed = run_metrics(
        [ComponentRef(name="finding_rates")], registry, EvalContext(real, torch.cat([fake, noise]), registry=registry)
    )[0].values
    assert mixed["not_assessable_fake"] == pytest.approx((40 + int((~readable_fake).sum())) / 140)
    assert mixed["Nodule_fake"] == pytest.approx(values["Nodule_fake"])  # the noise counts for no finding


def test_finding_rates_pass_their_params_to_the_analyser():
    registry = load_registry()
    data = registry.build("dataset", "phantom", {"size": 160, "seed": 4, "version": 2}, resolution=64, image_channels=1)
    real, fake = data.images[:80], data.images[80:]
    ref = ComponentRef.model_validate({"name": "finding_rates", "params": {"version": 2}})
    values = run_metrics([ref], registry, EvalContext(real, fake, registry=registry))[0].values
    v1, v2 = (registry.build("analyser", "phantom", {"version": v}) for v in (1, 2))
    assert not torch.equal(v1(fake), v2(fake))  # the versions' thresholds read these images differently
    for k, name in enumerate(v2.label_names):
        assert values[f"{name}_fake"] == pytest.approx(float(v2(fake).float().mean(0)[k]))
