"""Differentiable augmentation of everything D sees: DiffAugment (Zhao et al. 2020) and ADA (Karras et al. 2020).

Both transform D's input list (one batch per scale) with one draw per sample, applied alike at
every scale: geometric transforms in coordinates relative to the image, so a multi-scale
discriminator sees one consistent augmented image. At the finest scale DiffAugment's transforms
equal the paper's (integer translation with zero padding, a zeroed square, the three colour
transforms); coarser scales get the same transform at their size.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ganforge import hookimpl
from ganforge.kinds import DiscriminatorAugment

Pyramid = list[torch.Tensor]


def _grid(size: int, device: torch.device) -> torch.Tensor:
    """Pixel-centre coordinates in [-1, 1] (``align_corners=False``), ``[size]``."""
    return (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1


def warp(images: Pyramid, theta: torch.Tensor, padding: str) -> Pyramid:
    """Every scale resampled through the per-sample affine map ``theta [B, 2, 3]`` (output → input
    coordinates in [-1, 1]); bilinear, ``padding`` ``"zeros"`` or ``"reflection"``."""
    out = []
    for x in images:
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        out.append(F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False))
    return out


def translation_theta(shift: torch.Tensor) -> torch.Tensor:
    """``theta`` that moves image content by ``shift [B, 2]`` (x, y), in units of the image width."""
    theta = torch.zeros(len(shift), 2, 3, device=shift.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = -2 * shift  # the grid is [-1, 1]: the image is 2 wide
    return theta


def cutout_mask(size: int, centre: torch.Tensor, half: float) -> torch.Tensor:
    """``[B, 1, size, size]``: 0 inside the square of half-width ``half`` around ``centre [B, 2]``
    (relative to the image, 0…1), 1 elsewhere."""
    axis = (_grid(size, centre.device) + 1) / 2
    inside_x = (axis[None, :] - centre[:, :1]).abs() < half  # [B, size]
    inside_y = (axis[None, :] - centre[:, 1:]).abs() < half
    return 1 - (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]


class DiffAugmentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: list[str] = Field(
        ["color", "translation", "cutout"], description="transforms in order: color, translation, cutout"
    )
    translation: float = Field(0.125, ge=0, le=0.5, description="largest shift, as a share of the image side")
    cutout: float = Field(0.5, gt=0, le=1, description="side of the zeroed square, as a share of the image side")


class DiffAugment(DiscriminatorAugment):
    """DiffAugment (Zhao et al. 2020): every D input, real and generated, in both steps, always augmented.

    ``color``: brightness + U(-0.5, 0.5), saturation × U(0, 2) around the pixel's channel mean (a
    no-op on grayscale), contrast × U(0.5, 1.5) around the image mean; ``translation``: an integer
    shift of up to ``translation`` × side in x and y, zero padding; ``cutout``: a zeroed square of
    ``cutout`` × side at a random place (it may reach over the border).
    """

    POLICIES = ("color", "translation", "cutout")

    def __init__(self, *, policy: list[str], translation: float, cutout: float):
        super().__init__()
        unknown = [p for p in policy if p not in self.POLICIES]
        if unknown:
            raise ValueError(f"diffaugment policy: unknown {unknown}; choose from {list(self.POLICIES)}")
        self.policy, self.translation, self.cutout = policy, translation, cutout

    def forward(self, images: Pyramid) -> Pyramid:
        for name in self.policy:
            images = getattr(self, f"_{name}")(images)
        return images

    def _color(self, images: Pyramid) -> Pyramid:
        b, dev = len(images[0]), images[0].device
        brightness = torch.rand(b, 1, 1, 1, device=dev) - 0.5
        saturation = torch.rand(b, 1, 1, 1, device=dev) * 2
        contrast = torch.rand(b, 1, 1, 1, device=dev) + 0.5
        out = []
        for x in images:
            x = x + brightness.to(x.dtype)
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * saturation.to(x.dtype) + mean
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            out.append((x - mean) * contrast.to(x.dtype) + mean)
        return out

    def _translation(self, images: Pyramid) -> Pyramid:
        side = images[-1].shape[-1]
        most = int(side * self.translation + 0.5)  # in pixels of the finest scale, as in the paper
        pixels = torch.randint(-most, most + 1, (len(images[0]), 2), device=images[0].device)
        return warp(images, translation_theta(pixels.float() / side), "zeros")

    def _cutout(self, images: Pyramid) -> Pyramid:
        side = images[-1].shape[-1]
        cut = int(side * self.cutout + 0.5)
        # the paper's draw: the square starts at offset - cut // 2, offset in [0, side + 1 - cut % 2)
        offset = torch.randint(0, side + (1 - cut % 2), (len(images[0]), 2), device=images[0].device)
        centre = (offset.float() - cut // 2 + cut / 2) / side
        return [x * cutout_mask(x.shape[-1], centre, cut / side / 2).to(x.dtype) for x in images]


class ADAParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: float = Field(0.6, gt=0, lt=1, description="r_t = E[sign D(real)] that the probability steers to")
    interval: int = Field(4, ge=1, description="adjust p every this many D steps")
    speed_images: int = Field(
        500_000, ge=1, description="images over which p can move from 0 to 1 (the paper: 500k; less for short runs)"
    )
    p: float = Field(0.0, ge=0, le=1, description="the initial probability")
    heuristic: Literal["sign", "relative"] = Field(
        "sign",
        description="r_t = E[sign D(real)] (the paper; losses that judge each image alone) or "
        "E[sign(D(real) - mean D(fake))] (relativistic losses, whose scores have no fixed boundary)",
    )
    max_p: float = Field(1.0, ge=0, le=1, description="p is kept at or below this")


class ADA(DiscriminatorAugment):
    """Adaptive discriminator augmentation (Karras et al. 2020), its geometric and colour transforms.

    Each transform is applied to each sample with probability ``p`` (rotation with 1 - √(1 - p), as in
    the paper): x-flip, 90° rotations, integer translation (±0.125), isotropic scaling (lognormal,
    σ = 0.2 ln 2), arbitrary rotation, anisotropic scaling (σ = 0.2 ln 2), fractional translation
    (σ = 0.125), then brightness (+N(0, 0.2)) and contrast (× lognormal about 0, σ = 0.5 ln 2). Geometric
    transforms are one affine map resampled bilinearly with reflection padding (the paper uses
    wavelet filters at 2× resolution). Every ``interval`` D steps, p moves by
    sign(r_t - target) · images / ``speed_images`` with r_t the mean sign of D's raw scores of the
    augmented real images since the last adjustment (``heuristic = "relative"``: of their scores
    minus the mean score of the generated ones, for relativistic losses such as SAMGAN's, whose raw
    scores can be all negative while D wins). ``p`` and the running sums are buffers, so checkpoints
    keep them and a resumed run continues exactly.
    """

    p: torch.Tensor
    signs: torch.Tensor
    steps: torch.Tensor
    last_r_t: torch.Tensor

    def __init__(self, *, target: float, interval: int, speed_images: int, p: float, max_p: float, heuristic: str):
        super().__init__()
        self.target, self.interval, self.speed_images, self.max_p = target, interval, speed_images, max_p
        self.relative = heuristic == "relative"
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("signs", torch.zeros(2))  # sum of sign(D(real)), count, since the last adjustment
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_r_t", torch.tensor(math.nan))  # r_t at the last adjustment, for the logs

    @property
    def r_t(self) -> float:
        """The overfitting heuristic over the scores seen since the last adjustment (nan before any)."""
        return float(self.signs[0] / self.signs[1]) if self.signs[1] > 0 else math.nan

    def figures(self) -> dict[str, float]:
        r_t = float(self.last_r_t)
        return {"ada_p": round(float(self.p), 4), **({} if math.isnan(r_t) else {"ada_r_t": round(r_t, 4)})}

    def feedback(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> None:
        with torch.no_grad():
            scores = real_scores.detach().float()
            if self.relative:
                scores = scores - fake_scores.detach().float().mean()
            self.signs += torch.stack([scores.sign().sum(), torch.tensor(float(scores.numel()), device=scores.device)])
            self.steps += 1
            if int(self.steps) % self.interval == 0:
                step, r_t = float(self.signs[1]) / self.speed_images, self.r_t
                self.last_r_t.fill_(r_t)
                direction = 1.0 if r_t > self.target else -1.0
                self.p.copy_((self.p + direction * step).clamp(0, self.max_p))
                self.signs.zero_()

    def forward(self, images: Pyramid) -> Pyramid:
        p = float(self.p)
        if p <= 0:
            return images
        b, dev = len(images[0]), images[0].device
        theta = torch.eye(3, device=dev).repeat(b, 1, 1)

        def chosen(probability: float) -> torch.Tensor:
            return (torch.rand(b, device=dev) < probability).float()

        def then(m: torch.Tensor) -> None:  # compose: output coordinates pass through m first
            theta.copy_(theta @ m)

        def matrix(a, b_, c, d, tx, ty) -> torch.Tensor:
            m = torch.zeros(b, 3, 3, device=dev)
            m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a, b_, tx
            m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = c, d, ty
            m[:, 2, 2] = 1
            return m

        one, zero = torch.ones(b, device=dev), torch.zeros(b, device=dev)
        flip = 1 - 2 * chosen(p)
        then(matrix(flip, zero, zero, one, zero, zero))
        quarter = torch.randint(0, 4, (b,), device=dev).float() * chosen(p) * (math.pi / 2)
        then(matrix(quarter.cos(), -quarter.sin(), quarter.sin(), quarter.cos(), zero, zero))
        shift = (torch.rand(b, 2, device=dev) * 2 - 1) * 0.125 * chosen(p)[:, None]
        side = images[-1].shape[-1]
        shift = (shift * side).round() / side * 2  # integer pixels at the finest scale, on the [-1, 1] grid
        then(matrix(one, zero, zero, one, -shift[:, 0], -shift[:, 1]))
        iso = torch.exp2(torch.randn(b, device=dev) * 0.2 * chosen(p))
        then(matrix(1 / iso, zero, zero, 1 / iso, zero, zero))
        p_rot = 1 - math.sqrt(1 - p)
        angle = (torch.rand(b, device=dev) * 2 - 1) * math.pi * chosen(p_rot)
        then(matrix(angle.cos(), -angle.sin(), angle.sin(), angle.cos(), zero, zero))
        aniso = torch.exp2(torch.randn(b, device=dev) * 0.2 * chosen(p))
        then(matrix(1 / aniso, zero, zero, aniso, zero, zero))
        angle2 = (torch.rand(b, device=dev) * 2 - 1) * math.pi * chosen(p_rot)
        then(matrix(angle2.cos(), -angle2.sin(), angle2.sin(), angle2.cos(), zero, zero))
        frac = torch.randn(b, 2, device=dev) * 0.125 * 2 * chosen(p)[:, None]
        then(matrix(one, zero, zero, one, -frac[:, 0], -frac[:, 1]))
        images = warp(images, theta[:, :2], "reflection")
        brightness = torch.randn(b, 1, 1, 1, device=dev) * 0.2 * chosen(p)[:, None, None, None]
        contrast = torch.exp2(torch.randn(b, 1, 1, 1, device=dev) * 0.5 * chosen(p)[:, None, None, None])
        return [(x + brightness.to(x.dtype)) * contrast.to(x.dtype) for x in images]  # about 0, mid-grey


@hookimpl
def ganforge_register(registry):
    registry.register("d_augment", "diffaugment", DiffAugment, DiffAugmentParams)
    registry.register("d_augment", "ada", ADA, ADAParams)
