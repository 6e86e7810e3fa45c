"""Image-set metrics: FID, KID, precision/recall (torch-fidelity) and MS-SSIM diversity (pytorch-msssim).

FID, KID and precision/recall use torch-fidelity's feature extractors and its feature-to-metric
functions; ganforge supplies the images (uint8, grayscale replicated to RGB) and caches the real
set's features. MS-SSIM is the mean over random pairs *within* one set, reported for the real and
the generated set (SAMGAN §3.3: a generated score above the real one signals mode collapse).
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from pydantic import BaseModel, ConfigDict, Field
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

from ganforge import hookimpl
from ganforge.evaluation import EvalContext
from ganforge.inception import PROTOCOL as INCEPTION_PROTOCOL

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003


class FeatureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    extractor: str = Field("inception-v3-compat", description="torch-fidelity feature extractor")
    layer: str = Field("2048", description="feature layer of the extractor")


def _features(ctx: EvalContext, p: FeatureParams) -> tuple[torch.Tensor, torch.Tensor]:
    return ctx.features("real", p.extractor, p.layer), ctx.features("fake", p.extractor, p.layer)


def extractor_text(p: FeatureParams) -> str:
    return INCEPTION_PROTOCOL + f", {p.layer}-d" if p.extractor == "inception-v3-compat" else f"{p.extractor} {p.layer}"


class FID:
    """Fréchet Inception Distance (Heusel et al. 2017), through torch-fidelity."""

    def __init__(self, **params):
        self.p = FeatureParams(**params)

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

        real, fake = _features(ctx, self.p)
        stats = [fid_features_to_statistics(f) for f in (real, fake)]
        return {"fid": fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"]}

    def protocol(self, ctx: EvalContext) -> str:
        return f"FID, {extractor_text(self.p)}, {len(ctx.real)} real vs {len(ctx.fake)} generated"


class KIDParams(FeatureParams):
    subsets: int = Field(100, ge=1)
    subset_size: int = Field(1000, ge=2, description="capped at the smaller set's size (small medical sets)")
    seed: int = 0


class KID:
    """Kernel Inception Distance (Bińkowski et al. 2018), through torch-fidelity."""

    def __init__(self, **params):
        self.p = KIDParams(**params)

    def subset_size(self, ctx: EvalContext) -> int:
        return min(self.p.subset_size, len(ctx.real), len(ctx.fake))

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        from torch_fidelity.metric_kid import kid_features_to_metric

        real, fake = _features(ctx, self.p)
        out = kid_features_to_metric(
            fake,
            real,
            kid_subsets=self.p.subsets,
            kid_subset_size=self.subset_size(ctx),
            kid_degree=3,
            kid_gamma=None,
            kid_coef0=1,
            kid_kernel="poly",
            rng_seed=self.p.seed,
            verbose=False,
        )
        return {"kid_mean": out["kernel_inception_distance_mean"], "kid_std": out["kernel_inception_distance_std"]}

    def protocol(self, ctx: EvalContext) -> str:
        return f"KID, {extractor_text(self.p)}, {self.p.subsets} subsets of {self.subset_size(ctx)}"


class PRParams(FeatureParams):
    neighborhood: int = Field(3, ge=1, description="k of the k-NN balls (Kynkäänniemi et al. 2019)")
    batch_size: int = Field(1000, ge=1, description="rows of each distance block: memory ∝ batch_size × n, not n²")


class PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019), through torch-fidelity.

    Distances are computed ``batch_size`` rows at a time (torch-fidelity's ``save_cpu_ram`` path), so
    10,000 vs 10,000 images need blocks of 40 MB instead of three 400 MB distance matrices.
    """

    def __init__(self, **params):
        self.p = PRParams(**params)

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        from torch_fidelity.metric_prc import prc_features_to_metric

        real, fake = _features(ctx, self.p)
        out = prc_features_to_metric(
            fake,
            real,
            prc_neighborhood=self.p.neighborhood,
            prc_batch_size=self.p.batch_size,
            save_cpu_ram=True,
            verbose=False,
        )
        return {"precision": out["precision"], "recall": out["recall"], "f_score": out["f_score"]}

    def protocol(self, ctx: EvalContext) -> str:
        return f"precision/recall, {extractor_text(self.p)}, k = {self.p.neighborhood}"


# --------------------------------------------------------------------------- MS-SSIM


@contextlib.contextmanager
def _without_onednn():
    """oneDNN's grouped 1-channel conv is 3-4x slower than ATen's on CPU; results are the same."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns about TF32 when toggling the flag
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def auto_scales(side: int, win_size: int, limit: int = 5) -> int:
    """Most scales (≤ 5) for which pytorch-msssim's size rule holds: side > (win − 1)·2^(scales − 1)."""
    scales = 1
    while scales < limit and side > (win_size - 1) * 2**scales:
        scales += 1
    return scales


def ms_ssim(
    x: torch.Tensor, y: torch.Tensor, scales: int = 5, win_size: int = 11, sigma: float = 1.5, data_range: float = 255.0
) -> torch.Tensor:
    """Per-pair MS-SSIM ``[B]`` of float images ``[B, C, H, W]``.

    pytorch-msssim's algorithm (its ``_ssim`` per scale, 2×2 average pooling between scales) with
    a variable number of scales: fewer than 5 use the first weights of Wang et al., renormalised
    to sum to 1. With 5 scales it is exactly ``pytorch_msssim.ms_ssim``.
    """
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    if scales < 5:
        weights = weights / weights.sum()
    win = _fspecial_gauss_1d(win_size, sigma).repeat(x.shape[1], 1, 1, 1)
    levels = []
    with _without_onednn():
        for level in range(scales):
            ssim_per_channel, cs = _ssim(x, y, data_range=data_range, win=win, size_average=False)
            if level < scales - 1:
                levels.append(torch.relu(cs))
                padding = [s % 2 for s in x.shape[2:]]
                x, y = (torch.nn.functional.avg_pool2d(t, kernel_size=2, padding=padding) for t in (x, y))
        levels.append(torch.relu(ssim_per_channel))
    stacked = torch.stack(levels)  # [scales, B, C]
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean(1)


def random_pairs(n: int, pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (i ≠ j) drawn from a seeded generator; ``pairs = 0`` gives n // 2 disjoint pairs."""
    g = torch.Generator().manual_seed(seed)
    if pairs == 0:
        order = torch.randperm(n, generator=g)[: n - n % 2]
        return order[0::2], order[1::2]
    first = torch.randint(0, n, (pairs,), generator=g)
    second = (first + torch.randint(1, n, (pairs,), generator=g)) % n  # never the same image
    return first, second


class MSSSIMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: int = Field(0, ge=0, description="random pairs per set; 0 = n/2 disjoint pairs (the paper's 3,616 images)")
    scales: int = Field(0, ge=0, le=5, description="0 = as many as the image size allows (5 from 161 px at win 11)")
    win_size: int = Field(11, ge=3, description="Gaussian window (odd)")
    sigma: float = Field(1.5, gt=0)
    seed: int = 0
    batch_size: int = Field(512, ge=1)


class MSSSIM:
    """Mean MS-SSIM over random pairs within the real set and within the generated set (diversity)."""

    def __init__(self, **params):
        self.p = MSSSIMParams(**params)
        if self.p.win_size % 2 == 0:
            raise ValueError("ms_ssim.win_size must be odd")

    def scales(self, side: int) -> int:
        return self.p.scales or auto_scales(side, self.p.win_size)

    def score(self, images: torch.Tensor) -> float:
        first, second = random_pairs(len(images), self.p.pairs, self.p.seed)
        scales = self.scales(images.shape[-1])
        total = 0.0
        for start in range(0, len(first), self.p.batch_size):
            a = images[first[start : start + self.p.batch_size]].float()
            b = images[second[start : start + self.p.batch_size]].float()
            total += ms_ssim(a, b, scales, self.p.win_size, self.p.sigma).sum().item()
        return total / len(first)

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        return {"ms_ssim_real": self.score(ctx.real), "ms_ssim_fake": self.score(ctx.fake)}

    def protocol(self, ctx: EvalContext) -> str:
        side = ctx.real.shape[-1]
        scales = self.scales(side)
        weights = "Wang et al. weights" if scales == 5 else f"first {scales} Wang et al. weights renormalised"
        pairs = self.p.pairs or f"{len(ctx.real) // 2}/{len(ctx.fake) // 2} disjoint"
        return (
            f"MS-SSIM, {scales} scales, {self.p.win_size}-px Gaussian window σ={self.p.sigma}, {weights}, "
            f"{pairs} random pairs per set at {side}×{side}"
        )


@hookimpl
def ganforge_register(registry):
    registry.register("metric", "fid", FID, FeatureParams)
    registry.register("metric", "kid", KID, KIDParams)
    registry.register("metric", "precision_recall", PrecisionRecall, PRParams)
    registry.register("metric", "ms_ssim", MSSSIM, MSSSIMParams)
