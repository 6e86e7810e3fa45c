"""PHANTOM version 2: chest radiographs as varied as a real archive. Synthetic, not patient data.

Version 1 (``plugins/phantom.py``) draws one schematic patient with small changes; real archives
vary far more, and on a uniform set the metrics cannot tell a collapsed generator from a good one.
Version 2 draws, per image, from uniforms ``p`` (a pure function of seed and index):

- **patient**: age from infant to adult (a child's chest is rounder, its heart relatively larger,
  its ribs more horizontal), build (soft-tissue width and density), breast shadows for about a
  third of adults;
- **positioning**: scale, rotation (±8°), shift, AP or PA projection (AP: the heart magnified,
  clavicles high and horizontal, scapulae over the lung edges), depth of inspiration (lung height,
  diaphragm level);
- **anatomy**: curved posterior ribs and fainter anterior ribs, clavicles, scapulae, spine, heart,
  mediastinum, hila, vascular texture;
- **acquisition**: exposure, contrast and gamma, detector noise and blur, collimation edges (in
  half the images), a side marker (L or R) and burned-in text;
- **devices** at ICU-archive rates: ECG electrodes with leads (25 %), a central line (12 %), an
  endotracheal tube (8 %), a pacemaker (3 %).

The four findings are drawn as in version 1 (``Cardiomegaly`` widens the heart ~45 % over the
patient's own baseline, ``Effusion``, ``Lung_Opacity``, ``Nodule``), so labels keep their meaning.
Rendering is vectorized with torch, everything differentiable in ``p`` and ``labels``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

N_PARAMS = 64  # uniforms per image; columns 20-23 decide the four findings, as in version 1


def _soft(distance: torch.Tensor, edge: float | torch.Tensor) -> torch.Tensor:
    """1 inside (distance < 0), 0 outside, with a soft edge."""
    return torch.sigmoid(-distance / edge)


def _ellipse(u, v, cu, cv, a, b) -> torch.Tensor:
    return torch.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2 + 1e-9) - 1


def _band(distance: torch.Tensor, half_width, edge) -> torch.Tensor:
    return _soft(distance.abs() - half_width, edge)


def _box(u, v, u0, v0, u1, v1, edge) -> torch.Tensor:
    return _soft(u0 - u, edge) * _soft(u - u1, edge) * _soft(v0 - v, edge) * _soft(v - v1, edge)


class _Draws:
    """Per-image parameters as ``[n, 1, 1]`` tensors, so they broadcast over the pixel grid."""

    def __init__(self, p: torch.Tensor):
        self.p = p

    def __call__(self, index: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return (low + (high - low) * self.p[:, index]).view(-1, 1, 1)

    def flag(self, index: int, rate: float | torch.Tensor) -> torch.Tensor:
        """1 with probability ``rate`` (a hard draw: devices and markers are there or not)."""
        return (self(index) < rate).float()


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(x.device)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))


def render(p: torch.Tensor, noise: torch.Tensor, size: int, labels: torch.Tensor) -> torch.Tensor:
    """Float images ``[n, size, size]`` in [0, 1] from parameter rows ``p [n, N_PARAMS]``, unit noise
    ``[n, size, size]`` and (soft) findings ``labels [n, 4]``."""
    d = _Draws(p)
    n = p.shape[0]
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v0, u0 = torch.meshgrid(axis, axis, indexing="ij")
    u0, v0 = u0.expand(n, -1, -1), v0.expand(n, -1, -1)
    px = 2.0 / size  # one pixel in these units

    # Patient and positioning.
    age, build = d(30), d(31)  # 0: infant … 1: adult; 0: thin … 1: obese
    ap = d.flag(32, 0.5 + 0.4 * (1 - p[:, 30].view(-1, 1, 1)))  # children are mostly imaged AP
    scale = d(0, 0.88, 1.3) * (1 + 0.08 * (1 - age))  # most films are collimated to the chest
    theta = d(1, -0.17, 0.17)
    du, dv = d(2, -0.1, 0.1), d(3, -0.08, 0.1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    uu, vv = (u0 - du) / scale, (v0 - dv) / scale
    u, v = cos * uu + sin * vv, -sin * uu + cos * vv
    side = torch.where(u < 0, -1.0, 1.0)
    au = u.abs()

    inspiration = d(33, 0.86, 1.1)
    chest_w = 0.86 + 0.1 * build
    body = _soft(((au / chest_w) ** 4 + ((v - 0.3) / 1.25) ** 4) ** 0.25 - 1, 0.03)
    neck = _soft(au - 0.2 - 0.05 * build, 0.03) * _soft(v + 0.55, 0.05)
    body = torch.maximum(body, neck)
    arms = _soft(_ellipse(au, v, chest_w + 0.1, -0.15, 0.1 + 0.05 * build, 0.9), 0.05) * d(34, 0.3, 1.0)

    # Lungs: a child's are rounder and shorter.
    lung_w = d(4, 0.27, 0.33) * (0.95 + 0.05 * build)
    lung_h = d(5, 0.5, 0.62) * inspiration * (0.88 + 0.12 * age)
    dome = d(6, 0.3, 0.44) + 0.6 * (lung_h - 0.56)
    lung_cu = 0.41 + 0.5 * (lung_w - 0.3)
    top = -0.12 - lung_h
    taper = 0.6 + 0.4 * ((v - top) / (2 * lung_h)).clamp(0, 1)
    lung_dist = torch.sqrt(((au - lung_cu) / (lung_w * taper)) ** 2 + ((v + 0.12) / lung_h) ** 2) - 1
    diaphragm = dome - 0.05 * (side < 0) + 1.1 * (au - lung_cu - 0.08) ** 2
    lung = _soft(lung_dist, d(29, 0.03, 0.1)) * _soft(v - diaphragm, 0.03)
    step = max(1, size // 12)
    coarse = noise[:, ::step, ::step].unsqueeze(1)
    texture = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).squeeze(1)
    lung = lung * (1 - d(35, 0.04, 0.12) * texture).clamp(0.6, 1.25)

    # Heart: relatively larger in children and on AP films; cardiomegaly widens the patient's own.
    baseline = d(7, 0.19, 0.24) * (1 + 0.12 * (1 - age)) * (1 + 0.1 * ap)
    heart_w = baseline * (1 + 0.45 * labels[:, 0].view(-1, 1, 1))
    heart_cv = dome - d(8, 0.14, 0.2)
    heart = _soft(_ellipse(u, v, 0.1 + 0.4 * (heart_w - 0.23), heart_cv, heart_w, d(9, 0.18, 0.24)), 0.04)
    heart = heart * _soft(v - diaphragm - 0.02, 0.03)
    mediastinum = _soft(au - 0.08 - 0.03 * (v + 0.5).clamp(min=0) - 0.04 * (1 - age), 0.04) * _soft(v - dome, 0.05)

    # Bones: posterior ribs arch from the spine and fall laterally (more steeply in adults);
    # anterior ribs are fainter and slope the other way; clavicles; scapulae on AP films.
    spine = _band(u, 0.055, 0.015) * (0.75 + 0.25 * torch.cos(v * math.pi / 0.085) ** 2) * _soft(top - v, 0.1)
    spacing = 0.1 * inspiration * (0.9 + 0.1 * age)
    slope = 0.18 + 0.22 * age
    arch = -0.7 + d(10, 0.0, 0.06) - 0.14 * torch.sin(math.pi * au.clamp(max=0.95) / 0.95) + slope * au**2
    position = (v - arch) / spacing
    ribs = _band((position - position.round()) * spacing, 0.015, 0.012) * ((position > -0.5) & (position < 10.5))
    ribs = ribs * _soft(au - 0.86, 0.03) * _soft(0.07 - au, 0.02)
    front = (v - (-0.55 + d(11, 0.0, 0.06) + 0.25 * (0.9 - au) ** 2)) / (spacing * 1.3)
    anterior = _band((front - front.round()) * spacing * 1.3, 0.02, 0.02) * ((front > -0.5) & (front < 5.5))
    anterior = anterior * _soft(au - 0.8, 0.05) * _soft(0.2 - au, 0.05)
    clav_v = -0.66 - 0.08 * ap - 0.1 * (1 - ap) * (au - 0.1)
    clavicle = _band(v - clav_v, 0.024, 0.012) * _soft(au - 0.6, 0.03) * (au > 0.06)
    scap_u = lung_cu + lung_w * (0.55 + 0.5 * (1 - ap))
    scapula = _soft(_ellipse(au, v, scap_u, -0.42, 0.12, 0.3), 0.05) * d(12, 0.5, 1.0)

    density = (0.42 + 0.16 * build) * body + 0.2 * arms - (0.32 - 0.06 * build) * lung
    density = density + 0.2 * torch.maximum(heart, mediastinum) * body
    density = density + 0.13 * spine * body + d(60, 0.03, 0.09) * ribs * body * (0.4 + lung) + 0.03 * anterior * lung
    density = density + 0.17 * clavicle + 0.07 * scapula * body
    density = density + 0.05 * _soft(_ellipse(au, v, 0.15, -0.08, 0.07, 0.12), 0.05)  # hila
    breast = d.flag(13, 0.35) * (age > 0.6).float()
    breast_shadow = _soft(_ellipse(au, v, lung_cu + 0.1, dome - 0.1, 0.3, 0.28), 0.08) * _soft(v - dome - 0.15, 0.05)
    density = density + breast * d(14, 0.05, 0.12) * breast_shadow

    # Findings, as in version 1.
    eff_side = torch.where(d(15) < 0.5, -1.0, 1.0)
    level = d(16, 0.08, 0.22)
    fluid = lung * (side == eff_side) * _soft(-(v - (dome - level) + 0.6 * (au - lung_cu)), 0.03)
    density = density + 0.32 * labels[:, 1].view(-1, 1, 1) * fluid
    op_u = d(17, 0.25, 0.5) * torch.where(d(18) < 0.5, -1.0, 1.0)
    op_v, op_r = d(19, -0.35, 0.15), d(24, 0.09, 0.15)
    blob = torch.exp(-((u - op_u) ** 2 + (v - op_v) ** 2) / (2 * op_r**2))
    density = density + 0.24 * labels[:, 2].view(-1, 1, 1) * blob * lung
    nod_u = d(25, 0.22, 0.5) * torch.where(d(26) < 0.5, -1.0, 1.0)
    nod_v, nod_r = d(27, -0.45, 0.15), d(28, 0.03, 0.05)
    nodule = _soft(_ellipse(u, v, nod_u, nod_v, nod_r, nod_r), 0.12)
    density = density + 0.28 * labels[:, 3].view(-1, 1, 1) * nodule * lung.clamp(min=0.5)

    density = density + _devices(d, u, v, au, heart_cv, px)

    # Acquisition: exposure, contrast, gamma; blur and detector noise; collimation; marker and text.
    contrast, brightness, gamma = d(36, 0.8, 1.2), d(37, -0.05, 0.05), d(38, 0.8, 1.25)
    image = ((density - 0.35) * contrast + 0.39 + brightness).clamp(0, 1) ** gamma
    blurred = _gaussian_blur(image.unsqueeze(1), 1.2 * size / 64).squeeze(1)
    image = torch.lerp(image, blurred, d(39))
    image = image * (1 + d(61, -0.15, 0.15) * v0)  # heel effect / uneven exposure, top to bottom
    image = image + noise * d(40, 0.008, 0.045)
    image = image + _overlays(d, u0, v0, px)
    collimated = d.flag(41, 0.35)
    margins = [d(42 + k, 0.0, 0.12) * collimated for k in range(4)]
    inside = _box(u0, v0, -1 + margins[0], -1 + margins[1], 1 - margins[2], 1 - margins[3], px)
    outside = torch.where(d(46) < 0.7, 0.0, 0.9)
    return torch.lerp(outside, image, inside).clamp(0, 1)


def _devices(d: _Draws, u, v, au, heart_cv, px: float) -> torch.Tensor:
    """Radiopaque lines, tubes, electrodes and a pacemaker, in patient coordinates."""
    # ECG electrodes: three bright discs with thin leads running to the image edge.
    ecg = d.flag(47, 0.25)
    discs = torch.zeros_like(u)
    for k, (cu, cv) in enumerate(((-0.45, -0.55), (0.5, -0.5), (0.35, 0.45))):
        jitter = d(48 + k, -0.08, 0.08)
        disc = _soft(_ellipse(u, v, cu + jitter, cv - jitter, 0.045, 0.045), 1.5 * px)
        lead = _band(u - (cu + jitter) - 0.4 * (v - cv + jitter) ** 2 * (1 if cu > 0 else -1), px, px)
        lead = lead * _soft((cv - jitter) - v, px)  # from the disc up
        discs = discs + disc + 0.5 * lead
    # A central line: from the lateral neck down to the heart's upper border.
    line = d.flag(51, 0.12)
    course = u - (-0.3 + 0.35 * ((v + 0.75) / (heart_cv + 0.75)).clamp(0, 1) ** 0.7)
    catheter = _band(course, 0.9 * px, px) * _soft(-0.75 - v, px) * _soft(v - heart_cv + 0.1, px)
    # An endotracheal tube: a midline band with a radiopaque stripe, ending above the carina.
    tube = d.flag(52, 0.08)
    et = (_band(u, 0.035, px) * 0.4 + _band(u - 0.02, 0.6 * px, px)) * _soft(v - d(53, -0.45, -0.3), px)
    # A pacemaker: a rounded box under the left clavicle, its lead curving to the heart.
    pacer = d.flag(54, 0.03)
    box = _soft(_ellipse(u, v, 0.55, -0.58, 0.1, 0.07), 1.5 * px)
    pacer_lead = _band(u - (0.55 - 0.5 * ((v + 0.58) / (heart_cv + 0.58)).clamp(0, 1)), px, px)
    pacer_lead = pacer_lead * _soft(-0.58 - v, px) * _soft(v - heart_cv, px)
    return 0.35 * ecg * discs + 0.3 * line * catheter + 0.3 * tube * et + pacer * (0.6 * box + 0.3 * pacer_lead)


def _overlays(d: _Draws, u, v, px: float) -> torch.Tensor:
    """What the acquisition burns in, in image coordinates: a side marker and a line of text."""
    marker = d.flag(55, 0.7)
    corner_u = torch.where(d(56) < 0.5, -0.82, 0.72)
    h = 0.09
    letter_l = _box(u, v, corner_u, -0.88, corner_u + 0.025, -0.88 + h, px) + _box(
        u, v, corner_u, -0.88 + h - 0.025, corner_u + 0.06, -0.88 + h, px
    )
    letter_r = (
        _box(u, v, corner_u, -0.88, corner_u + 0.025, -0.88 + h, px)
        + _band(_ellipse(u, v, corner_u + 0.03, -0.86, 0.03, 0.022), 0.2, 0.1)
        * _box(u, v, corner_u, -0.9, corner_u + 0.07, -0.83, px)
        + _band((u - corner_u - 0.02) - 0.5 * (v + 0.84), 0.012, px)
        * _box(u, v, corner_u, -0.84, corner_u + 0.07, -0.88 + h, px)
    )
    which = (d(57) < 0.5).float()
    letter = (which * letter_l + (1 - which) * letter_r).clamp(max=1)
    text = d.flag(58, 0.3)
    row = torch.where(d(59) < 0.5, -0.93, 0.86)
    glyphs = (torch.sin(u * 95) > 0.2).float() * _box(u, v, -0.6, row, 0.2, row + 0.045, px)
    return 0.7 * marker * letter + 0.6 * text * glyphs
