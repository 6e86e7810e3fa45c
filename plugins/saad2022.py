"""The SAMGAN authors' own evaluation protocol ("saad2022"), to compare with the paper on its terms.

The authors published no SAMGAN code; their scripts for the preceding X-ray GAN paper
(mmuneebsaad/project_ain_dcgan: ``eval_fid.py``, ``ms_ssim_xray.py``) compute:

- **FID** from torchvision's ImageNet Inception-V3 (not the TF FID network): 768-d Mixed_6e
  features, average-pooled; images resized to 128 (bilinear), then bilinearly to 299 and scaled
  to [−1, 1]; one FID per pair of shuffled 20-image batches (real, generated), reported as a list.
  With 20 samples in 768 dimensions every covariance is singular, so these numbers are far from
  a standard FID and only comparable with each other.
- **MS-SSIM** with sewar's ``msssim`` on consecutive pairs (0, 1), (2, 3), … of one image set at
  128×128 uint8: 5 scales, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), an 11×11 Gaussian
  window (σ = 1.5) in 'valid' mode, downsampling by a size-2 box filter (scipy ``uniform_filter``,
  reflect mode, over every axis) and stride 2, powers taken in complex arithmetic and the real part
  kept. At the 5th scale (8×8) the 11×11 window is larger than the image; scipy's 'valid'
  convolution then swaps its arguments, which is reproduced here.

Resizing 64×64 images to 128 uses bilinear interpolation (the scripts' exact resize is not known).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ganforge import hookimpl
from ganforge.errors import GanforgeError
from ganforge.evaluation import EvalContext

if TYPE_CHECKING:
    from torchvision.models import Inception3

SEWAR_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
BATCH = 20  # the authors' FID batch size


def _to_128(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, C, R, R]`` → float ``[N, C, 128, 128]`` in [0, 255], rounded like a uint8 image."""
    x = images.float()
    if x.shape[-1] != 128:
        x = F.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False).round().clamp(0, 255)
    return x


# --------------------------------------------------------------------------- MS-SSIM (sewar)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    half = size // 2
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    g = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """scipy ``convolve2d(x, rot90(window, 2), 'valid')`` per image of ``x [B, H, W]``."""
    size = window.shape[-1]
    if x.shape[-1] >= size:
        return F.conv2d(x.unsqueeze(1), window[None, None]).squeeze(1)
    # Image smaller than the window: scipy convolves the window with the image instead.
    flipped = x.flip(-1, -2).unsqueeze(1)  # [B, 1, h, w] used as per-image kernels
    batch = x.shape[0]
    out = F.conv2d(window.expand(1, batch, size, size), flipped, groups=batch)
    return out.squeeze(0)


def _sewar_ssim(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, max_value: float = 255.0):
    """Per-image mean SSIM and CS maps of ``[B, H, W]`` float64 images (sewar's formulas)."""
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    mu1, mu2 = _filter_valid(x, window), _filter_valid(y, window)
    s11 = _filter_valid(x * x, window) - mu1 * mu1
    s22 = _filter_valid(y * y, window) - mu2 * mu2
    s12 = _filter_valid(x * y, window) - mu1 * mu2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    ssim = (2 * mu1 * mu2 + c1) / (mu1 * mu1 + mu2 * mu2 + c1) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


def _box_downsample(x: torch.Tensor) -> torch.Tensor:
    """scipy ``uniform_filter(x, 2)`` (reflect) on ``[B, C, H, W]`` over C, H and W, then ``[::2, ::2]``."""
    for dim in (1, 2, 3):
        previous = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, x.shape[dim] - 1)], dim=dim)
        x = (x + previous) / 2  # output[i] = (input[i-1] + input[i]) / 2, input[-1] = input[0]
    return x[:, :, ::2, ::2]


def sewar_ms_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sewar's ``msssim`` (real part) for each pair of float images ``[B, C, H, W]`` in [0, 255]."""
    window = _gaussian_window()
    x, y = a.double(), b.double()
    ssims, css = [], []
    for _ in SEWAR_WEIGHTS:
        per_channel = [_sewar_ssim(x[:, c], y[:, c], window) for c in range(x.shape[1])]
        ssims.append(torch.stack([s for s, _ in per_channel]).mean(0))
        css.append(torch.stack([cs for _, cs in per_channel]).mean(0))
        x, y = _box_downsample(x), _box_downsample(y)
    weights = torch.tensor(SEWAR_WEIGHTS, dtype=torch.float64)
    mcs = torch.stack(css[:-1]).to(torch.complex128) ** weights[:-1, None]
    last = ssims[-1].to(torch.complex128) ** weights[-1]
    return (mcs.prod(0) * last).real


class MSSSIMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(64, ge=1)


class SaadMSSSIM:
    """The authors' MS-SSIM: sewar msssim on consecutive pairs at 128×128 (saad2022 protocol)."""

    def __init__(self, *, batch_size: int):
        self.batch_size = batch_size

    def score(self, images: torch.Tensor) -> float:
        pairs = len(images) // 2
        values = []
        for start in range(0, pairs, self.batch_size):
            stop = min(pairs, start + self.batch_size)
            first = _to_128(images[2 * start : 2 * stop : 2])
            second = _to_128(images[2 * start + 1 : 2 * stop : 2])
            values.append(sewar_ms_ssim(first, second))
        return torch.cat(values).mean().item()

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        return {"ms_ssim_saad2022_real": self.score(ctx.real), "ms_ssim_saad2022_fake": self.score(ctx.fake)}

    def protocol(self, ctx: EvalContext) -> str:
        return (
            "saad2022 MS-SSIM (sewar msssim: 5 scales, 11-px Gaussian 'valid', box downsampling, complex powers) "
            f"on consecutive pairs at 128×128: {len(ctx.real) // 2}/{len(ctx.fake) // 2} pairs"
        )


# --------------------------------------------------------------------------- FID (torchvision Inception)


class Mixed6eFeatures(nn.Module):
    """torchvision Inception-V3 up to Mixed_6e, average-pooled: ``[N, 3, H, W]`` in [0, 1] → ``[N, 768]``."""

    def __init__(self, inception: Inception3):
        super().__init__()
        self.layers = nn.Sequential(
            inception.Conv2d_1a_3x3,
            inception.Conv2d_2a_3x3,
            inception.Conv2d_2b_3x3,
            nn.MaxPool2d(3, 2),
            inception.Conv2d_3b_1x1,
            inception.Conv2d_4a_3x3,
            nn.MaxPool2d(3, 2),
            inception.Mixed_5b,
            inception.Mixed_5c,
            inception.Mixed_5d,
            inception.Mixed_6a,
            inception.Mixed_6b,
            inception.Mixed_6c,
            inception.Mixed_6d,
            inception.Mixed_6e,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return F.adaptive_avg_pool2d(self.layers(2 * x - 1), 1).flatten(1)


def torchvision_inception(weights: str) -> Mixed6eFeatures:
    """torchvision's Inception-V3 with ImageNet weights from ``weights`` (safetensors) or a download."""
    from torchvision.models import Inception_V3_Weights, inception_v3

    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    if weights:
        from ganforge.checkpoint import load_tensors

        state = load_tensors(weights)[0]
    else:
        try:
            state = Inception_V3_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except Exception as exc:  # network errors of every kind
            raise GanforgeError(
                f"saad2022_fid needs torchvision's ImageNet Inception-V3 weights and the download failed ({exc}); "
                'save them as safetensors where there is a network and pass { name = "saad2022_fid", weights = FILE }'
            ) from exc
    model.load_state_dict(state)
    return Mixed6eFeatures(model).eval()


class FIDParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weights: str = Field("", description="torchvision inception_v3 ImageNet state dict (safetensors); '' = download")
    seed: int = Field(0, description="seed of the batch shuffling")


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two feature sets via eigenvalues of Σ₁Σ₂ (as torch-fidelity computes it)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in (a, b)]
    return fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"]


class SaadFID:
    """The authors' FID: torchvision Inception 768-d Mixed_6e, one FID per pair of 20-image batches."""

    def __init__(self, *, weights: str, seed: int):
        self.weights, self.seed = weights, seed
        self._model: Mixed6eFeatures | None = None

    @torch.no_grad()
    def features(self, images: torch.Tensor, device: torch.device) -> np.ndarray:
        if self._model is None:
            self._model = torchvision_inception(self.weights).to(device)
        chunks = []
        for start in range(0, len(images), 50):
            x = _to_128(images[start : start + 50]).to(device) / 255
            chunks.append(self._model(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x).cpu())
        return torch.cat(chunks).double().numpy()

    def batch_fids(self, ctx: EvalContext) -> list[float]:
        g = torch.Generator().manual_seed(self.seed)
        real = self.features(ctx.real[torch.randperm(len(ctx.real), generator=g)], ctx.device)
        fake = self.features(ctx.fake[torch.randperm(len(ctx.fake), generator=g)], ctx.device)
        count = min(len(real), len(fake)) // BATCH
        if count == 0:
            raise GanforgeError(f"saad2022_fid needs at least {BATCH} images per set")
        return [frechet(real[i * BATCH : (i + 1) * BATCH], fake[i * BATCH : (i + 1) * BATCH]) for i in range(count)]

    def __call__(self, ctx: EvalContext) -> dict[str, float]:
        values = np.array(self.batch_fids(ctx))
        return {
            "fid_saad2022_mean": float(values.mean()),
            "fid_saad2022_std": float(values.std()),
            "fid_saad2022_batches": float(len(values)),
        }

    def protocol(self, ctx: EvalContext) -> str:
        return (
            "saad2022 FID (torchvision ImageNet Inception-V3, 768-d Mixed_6e, resize 128 then 299): "
            f"mean over {min(len(ctx.real), len(ctx.fake)) // BATCH} pairs of shuffled {BATCH}-image batches; "
            "not comparable with a standard FID"
        )


@hookimpl
def ganforge_register(registry):
    registry.register("metric", "saad2022_fid", SaadFID, FIDParams)
    registry.register("metric", "saad2022_ms_ssim", SaadMSSSIM, MSSSIMParams)
