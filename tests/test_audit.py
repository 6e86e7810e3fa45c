"""Privacy audit: nearest neighbours, the statistics against scipy, planted copies, the run's hold-out, the CLI."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_tiny
from ganforge_plugins.phantom import render_phantoms
from PIL import Image
from pool_features import POOL
from scipy.stats import binom, mannwhitneyu, norm

from ganforge.audit.controls import planted_copies
from ganforge.audit.neighbours import kmeans, nearest, nearest_of_views
from ganforge.audit.run import audit
from ganforge.audit.statistics import (
    average_ranks,
    cell_distances,
    data_copying,
    mann_whitney_u,
    near_copies,
    u_z_score,
)
from ganforge.cli import main
from ganforge.config import ComponentRef
from ganforge.errors import CheckpointError, GanforgeError
from ganforge.evaluation import EvalContext, run_metrics
from ganforge.holdout import matches_record, record, recorded_split, split
from ganforge.kinds import ImageSet
from ganforge.plugins import load_registry


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))


# --------------------------------------------------------------------------- nearest neighbours


def test_chunked_nearest_neighbours_equal_the_whole_distance_matrix():
    g = torch.Generator().manual_seed(0)
    queries, refs = torch.randn(101, 12, generator=g), torch.randn(257, 12, generator=g)
    whole = torch.cdist(queries.double(), refs.double())
    distances, indices = nearest(queries, refs, query_chunk=7, ref_chunk=13)
    assert torch.equal(indices, whole.argmin(1))
    assert torch.allclose(distances.double(), whole.min(1).values, atol=1e-4)
    assert torch.equal(nearest(queries, refs)[1], indices)  # one chunk each


def test_nearest_of_views_takes_the_closer_view_and_says_which():
    refs = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    plain, mirrored = torch.tensor([[9.0, 0.0], [4.0, 0.0]]), torch.tensor([[0.5, 0.0], [4.0, 1.0]])
    d, i, view = nearest_of_views([plain, mirrored], refs)
    assert torch.allclose(d, torch.tensor([0.5, 4.0])) and i.tolist() == [0, 0] and view.tolist() == [1, 0]


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    points = torch.cat([c + torch.randn(50, 2, generator=g) for c in centres])
    found = kmeans(points, 3, seed=0)
    assert torch.cdist(centres, found).min(1).values.max() < 1.0


# --------------------------------------------------------------------------- statistics against scipy


def test_mann_whitney_u_and_ranks_equal_scipy_with_ties():
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 8, 40).astype(float), rng.integers(2, 10, 55).astype(float)
    ours = mann_whitney_u(torch.from_numpy(x), torch.from_numpy(y))
    assert ours == pytest.approx(mannwhitneyu(x, y).statistic)
    from scipy.stats import rankdata

    assert np.allclose(average_ranks(torch.from_numpy(np.concatenate([x, y]))).numpy(), rankdata(np.r_[x, y]))


def test_u_z_score_is_meehans_continuity_corrected_normal_approximation():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 1, 30), rng.normal(0.8, 1, 45)
    u = mann_whitney_u(torch.from_numpy(x), torch.from_numpy(y))
    z = u_z_score(u, 30, 45)
    assert z == pytest.approx((u - (30 * 45 / 2 - 0.5)) / math.sqrt(30 * 45 * 76 / 12))  # their mean − ½
    p = mannwhitneyu(x, y, alternative="less", method="asymptotic", use_continuity=True).pvalue
    assert z < 0 and norm.cdf(z) == pytest.approx(p, rel=1e-6)  # scipy's one-sided corrected test


def meehan_reference_ct(fake, fake_cell, held, held_cell, train, train_cell, min_per_cell):
    """C_T as Meehan et al.'s code computes it, in numpy/scipy: nearest training point in the cell,
    scipy's U of the generated sample, mean mn/2 − ½, weights by held-out share."""
    from scipy.spatial.distance import cdist

    zs, weights = [], []
    for c in np.unique(np.r_[fake_cell, held_cell]):
        f, h, t = fake[fake_cell == c], held[held_cell == c], train[train_cell == c]
        if len(f) < min_per_cell or len(h) < min_per_cell:
            continue
        lf, lh = cdist(f, t).min(1), cdist(h, t).min(1)
        u = mannwhitneyu(lf, lh, alternative="less").statistic
        m, n = len(lf), len(lh)
        zs.append((u - (n * m / 2 - 0.5)) / np.sqrt(n * m * (n + m + 1) / 12))
        weights.append(len(h) / len(held))
    zs, weights = np.array(zs), np.array(weights)
    return weights.dot(zs) / weights.sum(), norm.cdf(weights.dot(zs) / np.sqrt((weights**2).sum()))


def test_data_copying_equals_meehans_reference_computation():
    g = torch.Generator().manual_seed(8)
    centres = torch.tensor([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]])
    train = torch.cat([c + torch.randn(60, 3, generator=g) for c in centres])
    held = torch.cat([c + torch.randn(15, 3, generator=g) for c in centres])
    fresh = (centres[1:, None] + torch.randn(3, 50, 3, generator=g)).reshape(-1, 3)
    fake = torch.cat([train[:40] + 0.05 * torch.randn(40, 3, generator=g), fresh])
    mirrored = -fake  # a second view that never matches better
    test = data_copying(train, [fake, mirrored], [held, -held], cells=4, min_per_cell=5, seed=0)
    centroids = kmeans(train, 4, 0)
    cells = [nearest(x, centroids)[1].numpy() for x in (fake, held, train)]
    ct, p = meehan_reference_ct(fake.numpy(), cells[0], held.numpy(), cells[1], train.numpy(), cells[2], 5)
    assert test.ct == pytest.approx(ct, rel=1e-9) and test.p_value == pytest.approx(p, rel=1e-9)
    assert test.cells == 4 and test.ct < 0  # the 40 near-copies in cell 0 pull C_T down


def test_each_view_is_measured_in_its_own_cell_and_the_closest_view_decides():
    train = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    centroids, train_cell = train.clone(), torch.tensor([0, 1])
    as_is, mirrored = torch.tensor([[4.0, 0.0], [6.0, 0.0]]), torch.tensor([[9.5, 0.0], [3.0, 0.0]])
    distance, cell = cell_distances([as_is, mirrored], centroids, train, train_cell)
    assert distance.tolist() == [0.5, 3.0] and cell.tolist() == [1, 0]  # point 0 by its mirrored view, in cell 1
    alone, alone_cell = cell_distances([as_is], centroids, train, train_cell)
    assert alone.tolist() == [4.0, 4.0] and alone_cell.tolist() == [0, 1]


def beta_binomial_sf(hits: int, m: int, a: float, b: float) -> float:
    """P(X ≥ hits) for X ~ BetaBinomial(m, a, b), summed from its definition."""

    def log_beta(x, y):
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    return sum(math.comb(m, x) * math.exp(log_beta(x + a, m - x + b) - log_beta(a, b)) for x in range(hits, m + 1))


def test_near_copy_counts_and_their_exact_beta_binomial_p_values():
    rng = np.random.default_rng(4)
    held, fake = rng.uniform(1, 2, 200), np.r_[rng.uniform(0, 0.5, 30), rng.uniform(1, 2, 170)]
    found = near_copies(torch.from_numpy(fake), torch.from_numpy(held), percentile=5)
    radius = np.sort(held)[9]  # the 10th smallest of 200: 5 %
    hits = int((fake < radius).sum())
    assert found.threshold == pytest.approx(radius) and found.rate == hits / 200
    assert found.expected == pytest.approx(10 / 201)
    assert found.p_value == pytest.approx(beta_binomial_sf(hits, 200, 10, 191), rel=1e-9)
    below = int((fake < held.min()).sum())
    assert found.below_min == below >= 30
    assert found.below_min_p == pytest.approx(beta_binomial_sf(below, 200, 1, 200), rel=1e-9)


def test_near_copy_tests_hold_their_alpha_on_null_data_where_the_binomial_test_did_not():
    """Fresh images and held-out images drawn alike: the flag's rate stays at α; the binomial test
    that treats the held-out radius as known flags several times as often."""
    g = torch.Generator().manual_seed(0)
    replicates, alpha = 2000, 0.05
    exact = binomial = 0
    for _ in range(replicates):
        held, fake = (
            torch.rand(100, generator=g, dtype=torch.float64),
            torch.rand(400, generator=g, dtype=torch.float64),
        )
        found = near_copies(fake, held, percentile=5)
        exact += found.p_value < alpha
        binomial += binom.sf(round(found.rate * 400) - 1, 400, 0.05) < alpha
    upper = binom.ppf(0.999, replicates, alpha) / replicates  # sampling error of the simulation
    assert exact / replicates <= upper
    assert binomial / replicates > 3 * alpha


def test_a_few_copies_among_fresh_images_are_flagged(phantom_split, registry, tmp_path):
    """20 copies among 170 images (12 %): below the held-out minimum, which 150 held-out images
    make significant (p ≈ 2e-6); the rate test, which needs more of them, need not notice."""
    copies, _ = planted(phantom_split.train.images)
    fresh = render_phantoms(150, 32, seed=77)[0]
    got = figures(audit(phantom_split, torch.cat([fresh, copies[::8]]), registry, tmp_path, metrics=AUDIT[1:2]).results)
    assert got["below_holdout_min"] >= 20 and got["below_holdout_min_p"] < 1e-5 and got["near_copy_flag"] == 1


# --------------------------------------------------------------------------- planted copies


@pytest.fixture(scope="module")
def phantom_split():
    images, labels = render_phantoms(600, 32, seed=5)
    data = ImageSet(images, labels, ["a", "b", "c", "d"], "test phantom")
    return split(data, 0.25, seed=1)


def planted(train: torch.Tensor, n: int = 160) -> tuple[torch.Tensor, torch.Tensor]:
    return planted_copies(train, n, seed=7)


AUDIT = [
    ComponentRef(name=metric, space={"name": "pixels"}) for metric in ("data_copying", "near_copies", "memorization")
]


def figures(results) -> dict[str, float]:
    return {k: v for r in results for k, v in r.values.items()}


def test_planted_copies_are_flagged_and_fresh_images_are_not(phantom_split, registry, tmp_path):
    copies, sources = planted(phantom_split.train.images)
    flagged = audit(phantom_split, copies, registry, tmp_path / "copies", metrics=AUDIT, pairs=8)
    got = figures(flagged.results)
    assert got["copying_flag"] == 1 and got["copying_ct"] < -3
    assert got["near_copy_flag"] == 1 and got["near_copy_rate"] > 0.9
    assert got["memorization_distance"] < 0.1 * got["memorization_holdout"]

    fresh = render_phantoms(160, 32, seed=99)[0]
    clean = figures(audit(phantom_split, fresh, registry, tmp_path / "fresh", metrics=AUDIT, pairs=8).results)
    assert clean["copying_flag"] == 0 and abs(clean["copying_ct"]) < 3
    assert clean["near_copy_flag"] == 0 and clean["near_copy_rate"] < 0.15
    assert clean["memorization_distance"] > 0.5 * clean["memorization_holdout"]


def test_pairs_grid_shows_the_planted_pairs(phantom_split, registry, tmp_path):
    copies, sources = planted(phantom_split.train.images)
    result = audit(phantom_split, copies, registry, tmp_path, metrics=AUDIT[1:2], pairs=12)
    assert [p.name for p in result.pairs] == ["pairs_pixels.png"]
    assert Image.open(result.pairs[0]).size[0] > 400
    from ganforge.audit.distances import distances
    from ganforge.audit.pairs import closest_pairs

    ctx = EvalContext(phantom_split.train.images, copies, holdout=phantom_split.holdout.images, registry=registry)
    found = distances(ctx, ComponentRef(name="pixels"))
    chosen = closest_pairs(found.fake, found.fake_index, found.fake_view, found.space.views, 12)
    assert all(pair.train == int(sources[pair.fake]) for pair in chosen)
    exact_or_mirrored = [p for p in chosen if p.fake < 80]
    assert exact_or_mirrored and all(p.distance < 1e-3 for p in exact_or_mirrored)
    assert all(p.view == ("mirrored" if p.fake >= 40 else "as is") for p in exact_or_mirrored)
    everything = closest_pairs(found.fake, found.fake_index, found.fake_view, found.space.views, 160)
    shifted = [p for p in everything if p.fake >= 120]
    assert all(p.train == int(sources[p.fake]) and p.view == "moved (+1, +0) px" for p in shifted)


def test_inception_space_and_a_third_party_space(phantom_split, tmp_path):
    import pool_features  # noqa: F401  (registers the small torch-fidelity extractor)

    registry = load_registry()

    class Corners:
        """A plugin's feature space: the four corner pixels."""

        views = ("as is",)

        def __call__(self, ctx, side, view=0):
            images = ctx.images(side).float()
            return torch.stack([images[:, 0, 0, 0], images[:, 0, 0, -1], images[:, 0, -1, 0], images[:, 0, -1, -1]], 1)

        def describe(self):
            return "four corner pixels"

    registry.for_plugin("test").register("feature_space", "corners", Corners)
    copies, _ = planted(phantom_split.train.images)
    refs = [
        ComponentRef(name="near_copies", space={"name": "inception", **POOL}),
        ComponentRef(name="near_copies", space="corners"),
    ]
    ctx = EvalContext(phantom_split.train.images, copies, holdout=phantom_split.holdout.images)
    results = run_metrics(refs, registry, ctx)
    assert [r.name for r in results] == ["near_copies[space=inception]", "near_copies[space=corners]"]
    assert results[0].values["near_copy_flag"] == 1
    assert "four corner pixels" in results[1].protocol and "ganforge-test-pool" in results[0].protocol
    assert ("holdout", POOL["extractor"], POOL["layer"]) in ctx._memo


def test_a_metric_without_held_out_images_says_how_to_get_them(phantom_split, registry):
    ctx = EvalContext(phantom_split.train.images, phantom_split.train.images[:10])
    with pytest.raises(GanforgeError, match="data.holdout"):
        run_metrics([AUDIT[0]], registry, ctx)
    assert "memorization_holdout" not in run_metrics([AUDIT[2]], registry, ctx)[0].values


# --------------------------------------------------------------------------- the hold-out of a run


def test_recorded_split_is_verified(phantom_split, tmp_path):
    images, labels = render_phantoms(600, 32, seed=5)
    data = ImageSet(images, labels, ["a", "b", "c", "d"], "test phantom")
    record(tmp_path / "h.safetensors", phantom_split, 0.25, 1)
    again = recorded_split(tmp_path / "h.safetensors", data)
    assert torch.equal(again.holdout.images, phantom_split.holdout.images)
    assert torch.equal(again.train.images, phantom_split.train.images)
    assert matches_record(tmp_path / "h.safetensors", split(data, 0.25, seed=1))
    assert not matches_record(tmp_path / "h.safetensors", split(data, 0.25, seed=2))
    changed = ImageSet(images.clone(), labels, data.label_names, "changed")
    changed.images[phantom_split.indices[0], 0, 0, 0] ^= 1
    with pytest.raises(CheckpointError, match="differ from those recorded"):
        recorded_split(tmp_path / "h.safetensors", changed)
    with pytest.raises(CheckpointError, match="600-image dataset; the dataset now has 599"):
        recorded_split(tmp_path / "h.safetensors", ImageSet(images[:599], None, [], "short"))
    assert len(phantom_split.train.images) + len(phantom_split.holdout.images) == 600
    assert len(set(phantom_split.indices.tolist())) == 150


@pytest.mark.slow
def test_build_records_its_holdout_and_the_audit_uses_it(tmp_path):
    config = write_tiny(tmp_path)
    run = tmp_path / "run"
    runner = CliRunner()
    args = ["build", str(config), "--out", str(run), "--no-eval", "--set", "data.size=96", "--set", "data.holdout=0.25"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    registry = load_registry()
    data = registry.build("dataset", "phantom", {"size": 96, "seed": 0}, resolution=16, image_channels=1)
    expected = split(data, 0.25, seed=3)  # the tiny config's seed
    recorded = recorded_split(run / "holdout.safetensors", data)
    assert torch.equal(recorded.indices, expected.indices)

    result = runner.invoke(main, ["audit", str(run), "--space", "pixels", "-n", "40", "--pairs", "4"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "audit" / "audit.json").read_text())
    old = runner.invoke(main, ["evaluate", "--audit", str(run), "--space", "pixels", "-n", "40", "--pairs", "4"])
    assert old.exit_code == 0 and "`ganforge evaluate --audit RUN` is deprecated" in " ".join(old.output.split())
    assert json.loads((run / "audit" / "audit.json").read_text()) == saved  # the alias runs the same audit
    assert saved["n_real"] == 72 and saved["n_fake"] == 40 and "24 held out" in result.output
    assert set(saved["metrics"]) == {"data_copying", "near_copies", "memorization"}
    assert (run / "audit" / "pairs_pixels.png").is_file()

    # the positive control: copies of the run's training images, written as PNGs, are flagged
    planted_dir = tmp_path / "planted"
    script = Path(__file__).resolve().parents[1] / "scripts" / "plant_copies.py"
    subprocess.run([sys.executable, str(script), str(run), str(planted_dir), "-n", "40"], check=True)
    sources = (planted_dir / "sources.csv").read_text().splitlines()
    assert len(sources) == 41 and sources[1].endswith(",exact") and sources[-1].endswith(",shifted")
    result = runner.invoke(main, ["audit", str(run), "--space", "pixels", "--fake", str(planted_dir)])
    assert result.exit_code == 0 and "flagged" in result.output
    figures_ = json.loads((run / "audit" / "audit.json").read_text())["metrics"]
    assert figures_["near_copies"]["near_copy_flag"] == 1 and figures_["data_copying"]["copying_flag"] == 1

    # the dataset changed since training: the audit refuses instead of auditing the wrong images
    result = runner.invoke(main, ["audit", str(run), "--space", "pixels"])
    assert result.exit_code == 0
    cfg = (run / "config.toml").read_text().replace("size = 96", "size = 97")
    (run / "config.toml").write_text(cfg)
    result = runner.invoke(main, ["audit", str(run), "--space", "pixels"])
    assert result.exit_code == 2 and "96-image dataset; the dataset now has 97" in result.output


def test_audit_of_a_run_without_holdout_exits_2(tmp_path, tiny_path):
    run = tmp_path / "run"
    assert (
        CliRunner().invoke(main, ["build", str(tiny_path), "--out", str(run), "--no-eval", "--steps", "1"]).exit_code
        == 0
    )
    result = CliRunner().invoke(main, ["audit", str(run), "--space", "pixels"])
    assert result.exit_code == 2 and "data.holdout" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["audit", str(run), "--space", "nosuch"])
    assert result.exit_code == 2 and "nosuch" in result.output and "pixels" in result.output
    result = CliRunner().invoke(main, ["audit", str(tmp_path), "--space", "pixels"])
    assert result.exit_code == 2 and "not a ganforge run" in result.output


def test_results_table_prints_labels_with_brackets_verbatim():
    from rich.console import Console

    from ganforge.cli.group import results_table as _results_table
    from ganforge.evaluation import MetricResult

    console = Console(record=True, width=200)
    console.print(_results_table([MetricResult("near_copies[space=pixels]", {"near_copy_rate": 0.5}, "[b]x")], "t"))
    text = console.export_text()
    assert "near_copies[space=pixels]" in text and "[b]x" in text
