"""Procedural chest-radiograph PHANTOM: the offline default dataset. Synthetic, not patient data.

Each image is a PA chest radiograph drawn from smooth shapes (bright = dense, as on film): body
outline, two lungs with domed diaphragm, posterior ribs, clavicles, spine, heart shadow and
humeral heads, with random anatomy (size, rotation, position), exposure and noise. Four findings
are drawn independently, so an image can carry several labels:

- ``Cardiomegaly``: the heart shadow is ~45 % wider (cardiothoracic ratio above 0.5);
- ``Effusion``: fluid fills one costophrenic angle with a meniscus;
- ``Lung_Opacity``: a diffuse bright patch inside a lung;
- ``Nodule``: a small round dense spot inside a lung.

Everything is a pure function of (seed, image index, resolution): image ``i`` is the same
whatever ``n`` is. Rendering is vectorized with torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ganforge import hookimpl
from ganforge.kinds import ImageSet

from . import phantom2

FINDINGS = ["Cardiomegaly", "Effusion", "Lung_Opacity", "Nodule"]
PHANTOM_NOTICE = "PHANTOM (procedural, not patient data)"

VERSIONS = (1, 2)
_N_PARAMS = 27  # uniform numbers drawn per image; columns 20-23 decide the four findings
_CHUNK = 8  # images per chunk at 128²: each intermediate (~0.5 MB) stays in cache; 3× faster than 64


def _smooth_step(distance: torch.Tensor, edge: float) -> torch.Tensor:
    """1 inside (distance < 0), 0 outside, with a soft edge of width ``edge``."""
    return torch.sigmoid(-distance / edge)


def _ellipse(u, v, cu, cv, a, b) -> torch.Tensor:
    """Signed-ish distance of an ellipse: < 0 inside."""
    return torch.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2) - 1


def _band(distance_to_curve: torch.Tensor, half_width: float, edge: float) -> torch.Tensor:
    return _smooth_step(distance_to_curve.abs() - half_width, edge)


@dataclass
class _Anatomy:
    """Per-image parameters, each a tensor [n, 1, 1] so they broadcast over the pixel grid."""

    p: torch.Tensor  # [n, _N_PARAMS] uniforms in [0, 1)

    def __call__(self, index: int, low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * self.p[:, index]).view(-1, 1, 1)


def _labels(p: torch.Tensor, prevalence: float) -> torch.Tensor:
    return (p[:, 20:24] < prevalence).float()


def _render(
    p: torch.Tensor, noise: torch.Tensor, size: int, prevalence: float, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Float images [n, size, size] in [0, 1] from parameter rows ``p`` and unit noise.

    ``labels`` ``[n, 4]`` overrides the findings drawn from ``p``; values between 0 and 1 draw
    them partly (everything here is differentiable in ``p`` and ``labels``).
    """
    a = _Anatomy(p)
    labels = _labels(p, prevalence) if labels is None else labels
    n = p.shape[0]
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v0, u0 = torch.meshgrid(axis, axis, indexing="ij")
    u0, v0 = u0.expand(n, -1, -1), v0.expand(n, -1, -1)

    # Patient pose: scale, rotation, shift.
    scale, theta = a(0, 0.9, 1.05), a(1, -0.07, 0.07)
    du, dv = a(2, -0.05, 0.05), a(3, -0.05, 0.05)
    cos, sin = torch.cos(theta), torch.sin(theta)
    uu, vv = (u0 - du) / scale, (v0 - dv) / scale
    u, v = cos * uu + sin * vv, -sin * uu + cos * vv
    side = torch.where(u < 0, -1.0, 1.0)  # image left/right
    au = u.abs()

    lung_w, lung_h, dome = a(4, 0.28, 0.33), a(5, 0.56, 0.64), a(6, 0.36, 0.46)
    body = _smooth_step(((au / 0.92) ** 4 + ((v - 0.3) / 1.2) ** 4) ** 0.25 - 1, 0.02)
    neck = _smooth_step(au - 0.22, 0.03) * _smooth_step(v + 0.6, 0.05)
    body = torch.maximum(body, neck)
    arms = _smooth_step(_ellipse(au, v, 1.0, -0.1, 0.1, 0.9), 0.04)

    # Lungs: narrow apex, wide base, cut by the domed diaphragm (image-left dome a little higher).
    lung_cu = 0.41 + 0.5 * (lung_w - 0.3)
    top = -0.12 - lung_h
    taper = 0.6 + 0.4 * ((v - top) / (2 * lung_h)).clamp(0, 1)
    lung_dist = torch.sqrt(((au - lung_cu) / (lung_w * taper)) ** 2 + ((v + 0.12) / lung_h) ** 2) - 1
    diaphragm = dome - 0.05 * (side < 0) + 1.1 * (au - lung_cu - 0.08) ** 2
    lung = _smooth_step(lung_dist, 0.05) * _smooth_step(v - diaphragm, 0.03)
    coarse = noise[:, :: max(1, size // 24), :: max(1, size // 24)].unsqueeze(1)  # ~24×24 grid of the noise
    texture = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).squeeze(1)
    lung = lung * (1 - 0.12 * texture).clamp(0.65, 1.2)  # vascular markings

    # Heart: low and to the patient's left (image right); cardiomegaly widens it.
    heart_w = a(7, 0.21, 0.25) * (1 + 0.45 * labels[:, 0].view(-1, 1, 1))
    heart = _smooth_step(_ellipse(u, v, 0.1 + 0.4 * (heart_w - 0.23), dome - 0.16, heart_w, a(8, 0.2, 0.24)), 0.04)
    heart = heart * _smooth_step(v - diaphragm - 0.02, 0.03)
    mediastinum = _smooth_step(au - 0.08 - 0.03 * (v + 0.5).clamp(min=0), 0.04) * _smooth_step(v - dome, 0.05)

    # Bones.
    spine = _band(u, 0.06, 0.015) * (0.75 + 0.25 * torch.cos(v * math.pi / 0.085) ** 2)
    phase = a(9, 0.0, 0.05)
    # Ten posterior ribs, 0.11 apart, arching up from the spine and falling laterally.
    arch = -0.66 + phase - 0.14 * torch.sin(math.pi * au.clamp(max=0.95) / 0.95) + 0.3 * au**2
    position = (v - arch) / 0.11
    ribs = _band((position - position.round()) * 0.11, 0.016, 0.012) * ((position > -0.5) & (position < 9.5))
    ribs = ribs * _smooth_step(au - 0.86, 0.03) * _smooth_step(0.08 - au, 0.02)
    clavicle = _band(v - (-0.68 - 0.1 * (au - 0.1)), 0.026, 0.012) * _smooth_step(au - 0.6, 0.03) * (au > 0.06)

    density = 0.5 * body + 0.2 * arms - 0.34 * lung + 0.2 * torch.maximum(heart, mediastinum) * body
    density = density + 0.14 * spine * body + 0.08 * ribs * body * (0.3 + lung) + 0.18 * clavicle
    density = density + 0.05 * _smooth_step(_ellipse(au, v, 0.15, -0.08, 0.07, 0.12), 0.05)  # hila

    # Findings, each in a lung chosen by its own parameter.
    eff_side = torch.where(a(10, 0, 1) < 0.5, -1.0, 1.0)
    level = a(11, 0.08, 0.22)
    fluid = lung * (side == eff_side) * _smooth_step(-(v - (dome - level) + 0.6 * (au - lung_cu)), 0.03)
    density = density + 0.32 * labels[:, 1].view(-1, 1, 1) * fluid

    op_u = a(12, 0.25, 0.5) * torch.where(a(13, 0, 1) < 0.5, -1.0, 1.0)
    op_v, op_r = a(14, -0.35, 0.15), a(15, 0.09, 0.15)
    blob = torch.exp(-((u - op_u) ** 2 + (v - op_v) ** 2) / (2 * op_r**2))
    density = density + 0.24 * labels[:, 2].view(-1, 1, 1) * blob * lung

    nod_u = a(16, 0.22, 0.5) * torch.where(a(17, 0, 1) < 0.5, -1.0, 1.0)
    nod_v, nod_r = a(18, -0.45, 0.15), a(19, 0.03, 0.05)
    nodule = _smooth_step(_ellipse(u, v, nod_u, nod_v, nod_r, nod_r), 0.12)
    density = density + 0.28 * labels[:, 3].view(-1, 1, 1) * nodule * lung.clamp(min=0.5)

    # Exposure and quantum noise.
    contrast, brightness = a(24, 0.9, 1.1), a(25, -0.05, 0.05)
    image = (density - 0.35) * contrast + 0.35 + brightness + 0.04
    image = image + noise * a(26, 0.012, 0.03)
    return image.clamp(0, 1)


def _parameters(seed: int, start: int, count: int, columns: int = _N_PARAMS) -> torch.Tensor:
    rows = torch.Generator().manual_seed(seed)
    all_rows = torch.rand(start + count, columns, generator=rows)
    return all_rows[start:]


def _noise(seed: int, index: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + index + 1)
    return torch.randn(size, size, generator=g)


def render_phantoms(
    n: int, resolution: int, seed: int = 0, prevalence: float = 0.25, start: int = 0, version: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` phantom radiographs: (uint8 images ``[n, 1, R, R]``, multi-hot labels ``[n, 4]``).

    ``version`` 1 is this module's schematic patient, 2 :mod:`.phantom2`'s varied archive. Up to
    64×64, images are rendered at twice the size and area-downsampled (anti-aliasing).
    """
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"phantom resolution must be a power of two ≥ 8, got {resolution}")
    if version not in VERSIONS:
        raise ValueError(f"phantom version must be one of {VERSIONS}, got {version}")
    render = 2 * resolution if resolution <= 64 else resolution
    p = _parameters(seed, start, n, _N_PARAMS if version == 1 else phantom2.N_PARAMS)
    images = torch.empty(n, 1, resolution, resolution, dtype=torch.uint8)
    chunk = max(1, _CHUNK * 128 * 128 // (render * render))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        noise = torch.stack([_noise(seed, start + i, render) for i in range(lo, hi)])
        if version == 1:
            img = _render(p[lo:hi], noise, render, prevalence).unsqueeze(1)
        else:
            img = phantom2.render(p[lo:hi], noise, render, _labels(p[lo:hi], prevalence)).unsqueeze(1)
        if render != resolution:
            img = F.avg_pool2d(img, render // resolution)
        images[lo:hi] = (img * 255).round().to(torch.uint8)
    return images, _labels(p, prevalence)


class PhantomParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(3616, ge=1, description="number of images (SAMGAN used 3,616 COVID-19 X-rays)")
    seed: int = Field(0, description="the dataset is a pure function of this seed")
    prevalence: float = Field(0.25, ge=0, le=1, description="probability of each finding, drawn independently")
    version: Literal[1, 2] = Field(2, description="2: varied like a real archive; 1: the schematic phantom before it")


def phantom(
    *, size: int, seed: int, prevalence: float, resolution: int, image_channels: int, version: int = 2
) -> ImageSet:
    """Procedural chest-radiograph PHANTOM with multi-label findings (offline default, not patient data)."""
    images, labels = render_phantoms(size, resolution, seed, prevalence, version=version)
    if image_channels == 3:
        images = images.repeat(1, 3, 1, 1)
    description = f"{PHANTOM_NOTICE} v{version}: {size} images, seed {seed}, {resolution}×{resolution}"
    return ImageSet(images, labels, list(FINDINGS), description)


@hookimpl
def ganforge_register(registry):
    registry.register("dataset", "phantom", phantom, PhantomParams)
