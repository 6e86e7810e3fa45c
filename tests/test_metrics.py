"""Metrics: FID/KID/PR through torch-fidelity with a small test extractor, MS-SSIM, caching, offline errors."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ganforge_plugins.metrics import FID, KID, MSSSIM, PrecisionRecall, auto_scales, ms_ssim, random_pairs
from ganforge_plugins.phantom import render_phantoms
from pool_features import POOL
from scipy import linalg

from ganforge.config import ComponentRef
from ganforge.errors import GanforgeError
from ganforge.evaluation import EvalContext, as_record, run_metrics


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS", raising=False)


def phantom_sets(n=64, seed_real=0, seed_fake=1, size=32):
    return render_phantoms(n, size, seed=seed_real)[0], render_phantoms(n, size, seed=seed_fake)[0]


def frechet_scipy(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_against_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8)).astype(np.float32)
    b = (rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 1.0).astype(np.float32)
    ctx = EvalContext(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    ctx._memo[("real", "x", "8")], ctx._memo[("fake", "x", "8")] = torch.from_numpy(a), torch.from_numpy(b)
    ours = FID(extractor="x", layer="8")(ctx)["fid"]
    assert ours == pytest.approx(frechet_scipy(a, b), rel=1e-4)
    assert ours > 1


def test_fid_end_to_end_self_zero_and_shift_positive():
    real, fake = phantom_sets()
    same = FID(**POOL)(EvalContext(real, real.clone()))["fid"]
    assert abs(same) < 1e-6
    shifted = (real.int() + 40).clamp(0, 255).to(torch.uint8)
    assert FID(**POOL)(EvalContext(real, shifted))["fid"] > 0.5
    features = F.adaptive_avg_pool2d(real.repeat(1, 3, 1, 1).float() / 255, 4).flatten(1).numpy()
    fake_features = F.adaptive_avg_pool2d(fake.repeat(1, 3, 1, 1).float() / 255, 4).flatten(1).numpy()
    ours = FID(**POOL)(EvalContext(real, fake))["fid"]
    assert ours == pytest.approx(frechet_scipy(features, fake_features), rel=1e-3)


def test_kid_and_precision_recall_are_in_range():
    real, fake = phantom_sets(80)
    ctx = EvalContext(real, fake)
    kid = KID(**POOL, subsets=10, subset_size=1000)
    values = kid(ctx)
    assert kid.subset_size(ctx) == 80  # capped at the set size instead of failing (small medical sets)
    assert -0.1 < values["kid_mean"] < 10 and values["kid_std"] >= 0
    pr = PrecisionRecall(**POOL)(ctx)
    assert all(0 <= pr[k] <= 1 for k in ("precision", "recall", "f_score"))
    same = PrecisionRecall(**POOL)(EvalContext(real, real.clone()))
    assert same["precision"] == same["recall"] == 1.0


def improved_pr_numpy(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019 with whole distance matrices: a sample is covered when it lies within
    the k-th nearest-neighbour radius (self excluded) of some sample of the other set."""

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_radius = np.sort(dist(real, real), axis=1)[:, k]
    fake_radius = np.sort(dist(fake, fake), axis=1)[:, k]
    precision = (dist(fake, real) <= real_radius[None, :]).any(1).mean()
    recall = (dist(real, fake) <= fake_radius[None, :]).any(1).mean()
    return float(precision), float(recall)


def test_precision_recall_in_blocks_equals_whole_matrices():
    """Row blocks (bounded memory) give the figures of the full n × n computation."""
    rng = np.random.default_rng(3)
    real = rng.normal(size=(150, 6)).astype(np.float32)
    fake = (rng.normal(size=(120, 6)) + 1.0).astype(np.float32)
    ctx = EvalContext(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    ctx._memo[("real", "x", "8")], ctx._memo[("fake", "x", "8")] = torch.from_numpy(real), torch.from_numpy(fake)
    precision, recall = improved_pr_numpy(real, fake, k=3)
    assert 0.1 < precision < 0.99 and 0.1 < recall < 0.99  # a case where both figures can be wrong
    for batch_size in (7, 1000):
        pr = PrecisionRecall(extractor="x", layer="8", neighborhood=3, batch_size=batch_size)(ctx)
        assert (pr["precision"], pr["recall"]) == pytest.approx((precision, recall), abs=1e-6)  # float32 means


@pytest.mark.filterwarnings("ignore:TF32")
def test_ms_ssim_identity_noise_and_pytorch_msssim_agreement():
    from pytorch_msssim import ms_ssim as reference

    torch.manual_seed(0)
    x = torch.rand(6, 1, 64, 64) * 255
    assert torch.allclose(ms_ssim(x, x, scales=3), torch.ones(6))
    noise = ms_ssim(x, torch.rand(6, 1, 64, 64) * 255, scales=3)
    assert noise.abs().max() < 0.1
    big = torch.rand(3, 1, 176, 176) * 255
    other = 0.6 * big + 0.4 * torch.rand(3, 1, 176, 176) * 255
    torch.testing.assert_close(ms_ssim(big, other), reference(big, other, size_average=False), atol=2e-5, rtol=0)
    y = 0.5 * x + 0.5 * torch.rand(6, 1, 64, 64) * 255
    with torch.backends.mkldnn.flags(enabled=False):  # same kernels: the same numbers
        torch.testing.assert_close(ms_ssim(x, y, win_size=3), reference(x, y, win_size=3, size_average=False))


def test_ms_ssim_scales_rule():
    assert auto_scales(64, 11) == 3 and auto_scales(161, 11) == 5 and auto_scales(160, 11) == 4
    assert auto_scales(64, 3) == 5


def test_ms_ssim_pairs_deterministic_and_distinct():
    a = random_pairs(100, 0, seed=3)
    b = random_pairs(100, 0, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(a[0]) == 50 and len(set(a[0].tolist()) | set(a[1].tolist())) == 100
    c = random_pairs(10, 500, seed=1)
    assert len(c[0]) == 500 and bool((c[0] != c[1]).all())
    assert not torch.equal(random_pairs(100, 0, seed=4)[0], a[0])


def test_ms_ssim_metric_reports_both_sets_and_variant():
    real, _ = phantom_sets(40)
    collapsed = real[:1].repeat(40, 1, 1, 1)
    metric = MSSSIM()
    ctx = EvalContext(real, collapsed)
    values = metric(ctx)
    assert values["ms_ssim_fake"] == pytest.approx(1.0)  # mode collapse: every pair identical
    assert 0 < values["ms_ssim_real"] < 1
    assert "2 scales" in metric.protocol(ctx) and "renormalised" in metric.protocol(ctx)  # 32 px, 11-px window


def test_real_features_are_cached_and_invalidated(tmp_path):
    real, fake = phantom_sets(32)
    first = EvalContext(real, fake)
    FID(**POOL)(first)
    assert first.cache_hits == []
    second = EvalContext(real, fake)
    value = FID(**POOL)(second)["fid"]
    assert second.cache_hits == ["real"]
    assert value == FID(**POOL)(first)["fid"]
    changed = real.clone()
    changed[0, 0, 0, 0] ^= 1
    third = EvalContext(changed, fake)
    FID(**POOL)(third)
    assert third.cache_hits == []  # different content, different key
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 2


def test_offline_download_failure_says_what_to_do(monkeypatch, inception_download_fails):
    real, fake = phantom_sets(4)
    with pytest.raises(GanforgeError) as err:
        FID()(EvalContext(real, fake))
    message = str(err.value)
    assert "download failed" in message and "ganforge inception-weights" in message
    assert "eval.inception_weights" in message and "GANFORGE_INCEPTION_WEIGHTS" in message
    monkeypatch.setenv("GANFORGE_INCEPTION_WEIGHTS", "/nonexistent/w.safetensors")
    from ganforge.inception import resolve_weights

    with pytest.raises(GanforgeError, match="/nonexistent/w.safetensors: Inception weights file not found"):
        resolve_weights()


def test_run_metrics_record(registry):
    real, fake = phantom_sets(20)
    ctx = EvalContext(real, fake)
    refs = [ComponentRef(name="fid", **POOL), ComponentRef(name="ms_ssim")]
    record = as_record(run_metrics(refs, registry, ctx), ctx)
    assert set(record["metrics"]) == {"fid", "ms_ssim"}
    assert record["n_real"] == record["n_fake"] == 20 and record["resolution"] == 32
    assert "MS-SSIM" in record["protocols"]["ms_ssim"]
    json.dumps(record)


def test_training_with_eval_keeps_best_generator(tiny, tmp_path):
    from ganforge.training import Trainer

    config, registry = tiny
    config.eval.metrics = [ComponentRef(name="fid", **POOL), ComponentRef(name="ms_ssim")]
    config.eval.every = 2
    config.eval.n = 16
    trainer = Trainer(config, registry, tmp_path / "run", device="cpu")
    trainer.fit(4)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in lines if "eval" in x]
    assert [x["step"] for x in evals] == [2, 4]
    fids = [x["eval"]["metrics"]["fid"]["fid"] for x in evals]
    assert trainer.best.value == min(fids)
    assert (tmp_path / "run" / "generator_best.safetensors").is_file()
