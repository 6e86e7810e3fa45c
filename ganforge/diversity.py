"""How much of the real set's variety a generated set has, in any feature space: what sees mode collapse.

MS-SSIM cannot: it compares pairs of images, and a set of one image repeated with a little noise
has pairs as dissimilar as real ones. These compare each set with the other, and with itself:

- **density and coverage** (Naeem et al. 2020): real image ``i`` has the radius ``r_i`` of its
  ``k``-th nearest real neighbour. ``density`` = mean over generated images of how many real balls
  contain them, over ``k`` (≈ 1 when the sets match; it rewards piling up where real images are
  dense). ``coverage`` = share of real images whose ball holds at least one generated image (a
  collapsed set covers the few balls around its modes).
- **nearest-neighbour ratio**: the mean distance from each generated image to its nearest other
  generated image, over the same within the real set, on equal numbers of images (the distance
  shrinks with the set's size). ≈ 1 when the sets match; ≪ 1 when generated images repeat.
- **mode coverage**: the real set split into k-means cells (its "modes"); the share of cells that
  receive at least a quarter of the generated images their real share predicts.

Features are ``[N, D]`` float tensors (Inception features, or :func:`pixel_embedding`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .audit.neighbours import kmeans, nearest
from .evaluation import subset

CHUNK = 1024  # query rows per distance block: 1024 × N floats at a time


def _distance_blocks(queries: torch.Tensor, refs: torch.Tensor):
    """``(start, distances [chunk, M])`` blocks of the Euclidean distances from ``queries`` to ``refs``."""
    refs = refs.float()
    for start in range(0, len(queries), CHUNK):
        yield start, torch.cdist(queries[start : start + CHUNK].float(), refs)


def kth_neighbour_distance(points: torch.Tensor, k: int) -> torch.Tensor:
    """``[N]``: each row's distance to its ``k``-th nearest *other* row (``k`` ≥ 1; needs N > k)."""
    if not 1 <= k < len(points):
        raise ValueError(f"k = {k}: needs 1 ≤ k < the {len(points)} points")
    out = torch.empty(len(points))
    for start, block in _distance_blocks(points, points):
        rows = torch.arange(len(block))
        block[rows, start + rows] = float("inf")  # not its own neighbour
        out[start : start + len(block)] = block.kthvalue(k, dim=1).values
    return out


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> tuple[float, float]:
    """Naeem et al.'s density and coverage of ``fake`` with respect to ``real`` (module docstring)."""
    radii = kth_neighbour_distance(real, k)
    inside = 0.0
    for _, block in _distance_blocks(fake, real):
        inside += float((block <= radii[None, :]).sum())
    density = inside / (k * len(fake))
    nearest_fake, _ = nearest(real.float(), fake.float())
    coverage = float((nearest_fake <= radii).float().mean())
    return density, coverage


def nn_ratio(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> float:
    """Mean nearest-other-neighbour distance within ``fake`` over that within ``real``, on equal numbers."""
    n = min(len(real), len(fake))
    within = [float(kth_neighbour_distance(subset(x, n, seed), 1).mean()) for x in (fake, real)]
    return within[0] / within[1] if within[1] > 0 else float("nan")


def mode_coverage(real: torch.Tensor, fake: torch.Tensor, cells: int, seed: int = 0, share: float = 0.25) -> float:
    """Share of the real set's k-means ``cells`` that get at least ``share`` × their expected generated images."""
    centroids = kmeans(real, cells, seed)
    k = len(centroids)
    real_counts = torch.bincount(nearest(real.float(), centroids)[1], minlength=k).double()
    fake_counts = torch.bincount(nearest(fake.float(), centroids)[1], minlength=k).double()
    expected = real_counts / real_counts.sum() * len(fake)
    covered = fake_counts >= torch.clamp(share * expected, min=1.0)
    return float(covered[real_counts > 0].double().mean())


def pixel_embedding(images: torch.Tensor, size: int = 0) -> torch.Tensor:
    """Images ``[N, C, R, R]`` (uint8 or float) as ``[N, D]``: area-reduced to ``size``² when larger
    (0: never), flattened, centred and scaled to unit length, so brightness and contrast do not count."""
    chunks = []
    for start in range(0, len(images), CHUNK):
        x = images[start : start + CHUNK].float()
        if size and x.shape[-1] > size:
            x = F.adaptive_avg_pool2d(x, size)
        x = x.flatten(1)
        chunks.append(F.normalize(x - x.mean(1, keepdim=True), dim=1))
    return torch.cat(chunks) if chunks else torch.empty(0, 0)
