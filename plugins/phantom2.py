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
from collections.abc import Callable
from dataclasses import dataclass

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

    def rows(self, rows: torch.Tensor) -> _Draws:
        """The draws of some images only."""
        return _Draws(self.p[rows])

    def flag(self, index: int, rate: float | torch.Tensor) -> torch.Tensor:
        """1 with probability ``rate`` (a hard draw: devices and markers are there or not)."""
        return (self(index) < rate).float()


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``x [n, H, W]``, each image one channel of a depthwise convolution
    (a single-channel convolution over a batch runs ~15× slower on CPU, with the same result)."""
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    n = x.shape[0]
    across, down = kernel.view(1, 1, 1, -1).expand(n, 1, 1, -1), kernel.view(1, 1, -1, 1).expand(n, 1, -1, 1)
    y = F.conv2d(F.pad(x.unsqueeze(0), (radius, radius, 0, 0), mode="replicate"), across, groups=n)  # [1, n, H, W]
    return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), down, groups=n).squeeze(0)


@dataclass
class _Patient:
    """One batch of patients: their draws, and the pixel grid in patient coordinates (``u`` across,
    ``v`` down, after pose) and in image coordinates (``u0``, ``v0``)."""

    d: _Draws
    u0: torch.Tensor
    v0: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    px: float  # one pixel in these units
    age: torch.Tensor  # 0: infant … 1: adult
    build: torch.Tensor  # 0: thin … 1: obese
    ap: torch.Tensor  # 1: an AP film (children mostly)
    inspiration: torch.Tensor

    @property
    def au(self) -> torch.Tensor:
        return self.u.abs()


@dataclass
class _Lungs:
    field: torch.Tensor  # 1 in the lung fields (with vascular texture)
    centre: torch.Tensor  # lateral position of each lung's centre
    width: torch.Tensor
    top: torch.Tensor
    dome: torch.Tensor
    diaphragm: torch.Tensor


def render(p: torch.Tensor, noise: torch.Tensor, size: int, labels: torch.Tensor) -> torch.Tensor:
    """Float images ``[n, size, size]`` in [0, 1] from parameter rows ``p [n, N_PARAMS]``, unit noise
    ``[n, size, size]`` and (soft) findings ``labels [n, 4]``."""
    pt = _pose(_Draws(p), size)
    lungs = _lungs(pt, noise, size)
    density, heart_cv = _soft_tissue(pt, lungs, labels)
    density = density + _bones(pt, lungs) + _findings(pt, lungs, labels)
    density = density + _devices(pt.d, pt.u, pt.v, heart_cv, pt.px)
    return _acquire(pt, density, noise, size)


def _pose(d: _Draws, size: int) -> _Patient:
    """Who the patient is and how they stand: age, build, projection, inspiration; scale, rotation, shift."""
    n = d.p.shape[0]
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v0, u0 = torch.meshgrid(axis, axis, indexing="ij")
    u0, v0 = u0.expand(n, -1, -1), v0.expand(n, -1, -1)
    age, build = d(30), d(31)
    ap = d.flag(32, 0.5 + 0.4 * (1 - age))  # children are mostly imaged AP
    scale = d(0, 0.86, 1.34) * (1 + 0.08 * (1 - age))  # most films are collimated to the chest
    theta = d(1, -0.2, 0.2)
    du, dv = d(2, -0.1, 0.1), d(3, -0.08, 0.1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    uu, vv = (u0 - du) / scale, (v0 - dv) / scale
    u, v = cos * uu + sin * vv, -sin * uu + cos * vv
    return _Patient(d, u0, v0, u, v, 2.0 / size, age, build, ap, d(33, 0.86, 1.1))


def _lungs(pt: _Patient, noise: torch.Tensor, size: int) -> _Lungs:
    """The lung fields: narrow apex, wide base, domed diaphragm; a child's are rounder and shorter."""
    d, u, v, au = pt.d, pt.u, pt.v, pt.au
    width = d(4, 0.27, 0.33) * (0.95 + 0.05 * pt.build)
    height = d(5, 0.5, 0.62) * pt.inspiration * (0.88 + 0.12 * pt.age)
    dome = d(6, 0.3, 0.44) + 0.6 * (height - 0.56)
    centre = 0.41 + 0.5 * (width - 0.3)
    top = -0.12 - height
    taper = 0.6 + 0.4 * ((v - top) / (2 * height)).clamp(0, 1)
    distance = torch.sqrt(((au - centre) / (width * taper)) ** 2 + ((v + 0.12) / height) ** 2) - 1
    diaphragm = dome - 0.05 * (u < 0) + 1.1 * (au - centre - 0.08) ** 2
    field = _soft(distance, d(29, 0.03, 0.1)) * _soft(v - diaphragm, 0.03)
    step = max(1, size // 12)
    coarse = noise[:, ::step, ::step].unsqueeze(1)
    texture = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).squeeze(1)
    field = field * (1 - d(35, 0.04, 0.12) * texture).clamp(0.6, 1.25)  # vascular markings
    return _Lungs(field, centre, width, top, dome, diaphragm)


def _soft_tissue(pt: _Patient, lungs: _Lungs, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Body, arms, lungs, heart (relatively larger in children and on AP films; cardiomegaly widens the
    patient's own), mediastinum, hila, breast shadows: the density and the heart's vertical centre."""
    d, u, v, au, build = pt.d, pt.u, pt.v, pt.au, pt.build
    chest_w = 0.86 + 0.1 * build
    body = _soft(((au / chest_w) ** 4 + ((v - 0.3) / 1.25) ** 4) ** 0.25 - 1, 0.03)
    body = torch.maximum(body, _soft(au - 0.2 - 0.05 * build, 0.03) * _soft(v + 0.55, 0.05))  # and neck
    arms = _soft(_ellipse(au, v, chest_w + 0.1, -0.15, 0.1 + 0.05 * build, 0.9), 0.05) * d(34, 0.3, 1.0)
    baseline = d(7, 0.19, 0.24) * (1 + 0.12 * (1 - pt.age)) * (1 + 0.1 * pt.ap)
    heart_w = baseline * (1 + 0.45 * labels[:, 0].view(-1, 1, 1))
    heart_cv = lungs.dome - d(8, 0.14, 0.2)
    heart = _soft(_ellipse(u, v, 0.1 + 0.4 * (heart_w - 0.23), heart_cv, heart_w, d(9, 0.18, 0.24)), 0.04)
    heart = heart * _soft(v - lungs.diaphragm - 0.02, 0.03)
    widening = 0.03 * (v + 0.5).clamp(min=0) + 0.04 * (1 - pt.age)
    mediastinum = _soft(au - 0.08 - widening, 0.04) * _soft(v - lungs.dome, 0.05)
    density = (0.42 + 0.16 * build) * body + 0.2 * arms - (0.32 - 0.06 * build) * lungs.field
    density = density + 0.2 * torch.maximum(heart, mediastinum) * body
    density = density + 0.05 * _soft(_ellipse(au, v, 0.15, -0.08, 0.07, 0.12), 0.05)  # hila
    breast = d.flag(13, 0.35) * (pt.age > 0.6).float()
    shadow = _soft(_ellipse(au, v, lungs.centre + 0.1, lungs.dome - 0.1, 0.3, 0.28), 0.08)
    shadow = shadow * _soft(v - lungs.dome - 0.15, 0.05)
    return density + breast * d(14, 0.05, 0.12) * shadow, heart_cv


def _bones(pt: _Patient, lungs: _Lungs) -> torch.Tensor:
    """Posterior ribs arch from the spine and fall laterally (more steeply in adults); anterior ribs
    are fainter and slope the other way; spine, clavicles, and scapulae over the lungs on AP films."""
    d, u, v, au, ap = pt.d, pt.u, pt.v, pt.au, pt.ap
    body = _soft(((au / (0.86 + 0.1 * pt.build)) ** 4 + ((v - 0.3) / 1.25) ** 4) ** 0.25 - 1, 0.03)
    spine = _band(u, 0.055, 0.015) * (0.75 + 0.25 * torch.cos(v * math.pi / 0.085) ** 2) * _soft(lungs.top - v, 0.1)
    spacing = 0.1 * pt.inspiration * (0.9 + 0.1 * pt.age)
    arch = -0.7 + d(10, 0.0, 0.06) - 0.14 * torch.sin(math.pi * au.clamp(max=0.95) / 0.95)
    position = (v - arch - (0.18 + 0.22 * pt.age) * au**2) / spacing
    ribs = _band((position - position.round()) * spacing, 0.015, 0.012) * ((position > -0.5) & (position < 10.5))
    ribs = ribs * _soft(au - 0.86, 0.03) * _soft(0.07 - au, 0.02)
    front = (v - (-0.55 + d(11, 0.0, 0.06) + 0.25 * (0.9 - au) ** 2)) / (spacing * 1.3)
    anterior = _band((front - front.round()) * spacing * 1.3, 0.02, 0.02) * ((front > -0.5) & (front < 5.5))
    anterior = anterior * _soft(au - 0.8, 0.05) * _soft(0.2 - au, 0.05)
    clav_v = -0.66 - 0.08 * ap - 0.1 * (1 - ap) * (au - 0.1)
    clavicle = _band(v - clav_v, 0.024, 0.012) * _soft(au - 0.6, 0.03) * (au > 0.06)
    scap_u = lungs.centre + lungs.width * (0.55 + 0.5 * (1 - ap))
    scapula = _soft(_ellipse(au, v, scap_u, -0.42, 0.12, 0.3), 0.05) * d(12, 0.5, 1.0)
    density = 0.13 * spine * body + d(60, 0.03, 0.09) * ribs * body * (0.4 + lungs.field)
    return density + 0.03 * anterior * lungs.field + 0.17 * clavicle + 0.07 * scapula * body


def _findings(pt: _Patient, lungs: _Lungs, labels: torch.Tensor) -> torch.Tensor:
    """Effusion, Lung_Opacity and Nodule as version 1 draws them (Cardiomegaly is in the heart)."""
    d, u, v, au, lung = pt.d, pt.u, pt.v, pt.au, lungs.field
    side = torch.where(u < 0, -1.0, 1.0)
    eff_side = torch.where(d(15) < 0.5, -1.0, 1.0)
    fluid = lung * (side == eff_side) * _soft(-(v - (lungs.dome - d(16, 0.08, 0.22)) + 0.6 * (au - lungs.centre)), 0.03)
    op_u = d(17, 0.25, 0.5) * torch.where(d(18) < 0.5, -1.0, 1.0)
    op_v, op_r = d(19, -0.35, 0.15), d(24, 0.09, 0.15)
    blob = torch.exp(-((u - op_u) ** 2 + (v - op_v) ** 2) / (2 * op_r**2))
    nod_u = d(25, 0.22, 0.5) * torch.where(d(26) < 0.5, -1.0, 1.0)
    nod_v, nod_r = d(27, -0.45, 0.15), d(28, 0.03, 0.05)
    nodule = _soft(_ellipse(u, v, nod_u, nod_v, nod_r, nod_r), 0.12)
    effusion, opacity, nodules = (labels[:, k].view(-1, 1, 1) for k in (1, 2, 3))
    return 0.32 * effusion * fluid + 0.24 * opacity * blob * lung + 0.28 * nodules * nodule * lung.clamp(min=0.5)


def _acquire(pt: _Patient, density: torch.Tensor, noise: torch.Tensor, size: int) -> torch.Tensor:
    """Exposure, contrast and gamma; blur, uneven exposure and detector noise; marker and text; collimation."""
    d, u0, v0 = pt.d, pt.u0, pt.v0
    contrast, brightness, gamma = d(36, 0.8, 1.2), d(37, -0.05, 0.05), d(38, 0.8, 1.25)
    image = ((density - 0.35) * contrast + 0.39 + brightness).clamp(0, 1) ** gamma
    blurred = _gaussian_blur(image, 1.2 * size / 64)
    image = torch.lerp(image, blurred, d(39))
    image = image * (1 + d(61, -0.15, 0.15) * v0)  # heel effect / uneven exposure, top to bottom
    image = image + noise * d(40, 0.008, 0.045)
    image = image + _overlays(d, u0, v0, pt.px)
    collimated = d.flag(41, 0.35)
    margins = [d(42 + k, 0.0, 0.12) * collimated for k in range(4)]
    inside = _box(u0, v0, -1 + margins[0], -1 + margins[1], 1 - margins[2], 1 - margins[3], pt.px)
    outside = torch.where(d(46) < 0.7, 0.0, 0.9)
    return torch.lerp(outside, image, inside).clamp(0, 1)


def _drawn(flag: torch.Tensor, like: torch.Tensor, draw: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``draw(rows)`` for the images whose ``flag`` is 1 and zeros elsewhere: a device or marker that
    few images carry costs only where it is."""
    rows = flag.view(-1).nonzero().view(-1)
    out = torch.zeros_like(like)
    return out.index_copy(0, rows, draw(rows)) if len(rows) else out


def _devices(d: _Draws, u: torch.Tensor, v: torch.Tensor, heart_cv: torch.Tensor, px: float) -> torch.Tensor:
    """Radiopaque lines, tubes, electrodes and a pacemaker, in patient coordinates."""

    def ecg(r: torch.Tensor) -> torch.Tensor:  # three bright discs with thin leads running up to the edge
        dr, ur, vr = d.rows(r), u[r], v[r]
        discs = torch.zeros_like(ur)
        for k, (cu, cv) in enumerate(((-0.45, -0.55), (0.5, -0.5), (0.35, 0.45))):
            jitter = dr(48 + k, -0.08, 0.08)
            disc = _soft(_ellipse(ur, vr, cu + jitter, cv - jitter, 0.045, 0.045), 1.5 * px)
            lead = _band(ur - (cu + jitter) - 0.4 * (vr - cv + jitter) ** 2 * (1 if cu > 0 else -1), px, px)
            discs = discs + disc + 0.5 * lead * _soft((cv - jitter) - vr, px)
        return 0.35 * discs

    def central_line(r: torch.Tensor) -> torch.Tensor:  # from the lateral neck down to the heart's upper border
        ur, vr, h = u[r], v[r], heart_cv[r]
        course = ur - (-0.3 + 0.35 * ((vr + 0.75) / (h + 0.75)).clamp(0, 1) ** 0.7)
        return 0.3 * (_band(course, 0.9 * px, px) * _soft(-0.75 - vr, px) * _soft(vr - h + 0.1, px))

    def tube(r: torch.Tensor) -> torch.Tensor:  # a midline band with a radiopaque stripe, above the carina
        ur, vr = u[r], v[r]
        et = (_band(ur, 0.035, px) * 0.4 + _band(ur - 0.02, 0.6 * px, px)) * _soft(vr - d.rows(r)(53, -0.45, -0.3), px)
        return 0.3 * et

    def pacemaker(r: torch.Tensor) -> torch.Tensor:  # a rounded box under the left clavicle, its lead to the heart
        ur, vr, h = u[r], v[r], heart_cv[r]
        box = _soft(_ellipse(ur, vr, 0.55, -0.58, 0.1, 0.07), 1.5 * px)
        lead = _band(ur - (0.55 - 0.5 * ((vr + 0.58) / (h + 0.58)).clamp(0, 1)), px, px)
        return 0.6 * box + 0.3 * (lead * _soft(-0.58 - vr, px) * _soft(vr - h, px))

    rates = ((47, 0.25, ecg), (51, 0.12, central_line), (52, 0.08, tube), (54, 0.03, pacemaker))
    return sum((_drawn(d.flag(column, rate), u, draw) for column, rate, draw in rates), torch.zeros_like(u))


def _overlays(d: _Draws, u: torch.Tensor, v: torch.Tensor, px: float) -> torch.Tensor:
    """What the acquisition burns in, in image coordinates: a side marker (L or R) and a line of text."""
    corner = torch.where(d(56) < 0.5, -0.82, 0.72)
    h = 0.09

    def letter_l(r: torch.Tensor) -> torch.Tensor:
        ur, vr, c = u[r], v[r], corner[r]
        stem = _box(ur, vr, c, -0.88, c + 0.025, -0.88 + h, px)
        return 0.7 * (stem + _box(ur, vr, c, -0.88 + h - 0.025, c + 0.06, -0.88 + h, px)).clamp(max=1)

    def letter_r(r: torch.Tensor) -> torch.Tensor:
        ur, vr, c = u[r], v[r], corner[r]
        stem = _box(ur, vr, c, -0.88, c + 0.025, -0.88 + h, px)
        bowl = _band(_ellipse(ur, vr, c + 0.03, -0.86, 0.03, 0.022), 0.2, 0.1) * _box(
            ur, vr, c, -0.9, c + 0.07, -0.83, px
        )
        leg = _band((ur - c - 0.02) - 0.5 * (vr + 0.84), 0.012, px) * _box(ur, vr, c, -0.84, c + 0.07, -0.88 + h, px)
        return 0.7 * (stem + bowl + leg).clamp(max=1)

    def text(r: torch.Tensor) -> torch.Tensor:
        ur, vr = u[r], v[r]
        row = torch.where(d.rows(r)(59) < 0.5, -0.93, 0.86)
        return 0.6 * ((torch.sin(ur * 95) > 0.2).float() * _box(ur, vr, -0.6, row, 0.2, row + 0.045, px))

    marker, is_l = d.flag(55, 0.7), d.flag(57, 0.5)
    letters = _drawn(marker * is_l, u, letter_l) + _drawn(marker * (1 - is_l), u, letter_r)
    return letters + _drawn(d.flag(58, 0.3), u, text)
