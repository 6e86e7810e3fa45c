"""The statistics of the privacy audit, computed from nearest-neighbour distances.

Three questions, each answered against what real images the generator never saw look like:

* **Data copying** (Meehan, Chaudhuri & Dasgupta, AISTATS 2020). Partition the space into cells
  (k-means on the training features). In each cell compare the distances from generated images to
  their nearest training image with those of held-out real images, by the Mann-Whitney U test;
  ``C_T`` is the average of the cells' z-scores weighted by their share of held-out images.
  Generated images that sit closer to the training set than fresh real images do (``C_T ≪ 0``)
  are copying it.
* **Near copies.** The fraction of generated images closer to a training image than the
  ``percentile``-th percentile of held-out→training distances; a generator that does not copy
  gives about ``percentile`` %, a binomial test says whether the excess is chance.
* **Memorization distance** (the MiFID term: Bai et al. 2021): the mean over generated images of
  the cosine distance to the closest training image, beside the same figure for held-out images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .neighbours import kmeans, nearest, nearest_of_views


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of ``values``, ties sharing their average rank (as in the Mann-Whitney U test)."""
    order = values.double().argsort()
    sorted_values = values.double()[order]
    # The first and last position of each run of equal values; a tie's rank is their mean.
    _, inverse, counts = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(sorted_values)
    ranks[order] = mean_rank[inverse]
    return ranks


def mann_whitney_u(x: torch.Tensor, y: torch.Tensor) -> float:
    """U of ``x``: the number of pairs with ``x_i > y_j``, ties counted one half."""
    ranks = average_ranks(torch.cat([x, y]))
    return float(ranks[: len(x)].sum()) - len(x) * (len(x) + 1) / 2


def u_z_score(u: float, m: int, n: int) -> float:
    """z-score of U under the null hypothesis (no tie correction, as Meehan et al.)."""
    return (u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12)


@dataclass(frozen=True)
class CopyingTest:
    ct: float  # Meehan et al.'s C_T: ≪ 0 copying, ≫ 0 underfitting, ≈ 0 neither
    cells: int  # cells with enough generated and held-out images to enter C_T
    lowest_z: float  # the most copying-like cell's z-score


def data_copying(
    train: torch.Tensor,
    fake_distances: torch.Tensor,
    fake_points: torch.Tensor,
    held_distances: torch.Tensor,
    held_points: torch.Tensor,
    cells: int,
    min_per_cell: int,
    seed: int,
) -> CopyingTest:
    """Meehan et al.'s test from the nearest-training-image distances of generated and held-out points.

    ``train``, ``fake_points`` and ``held_points`` are features in the same space; the cells are
    the k-means cells of ``train``.
    """
    centroids = kmeans(train, cells, seed)
    fake_cell, held_cell = nearest(fake_points, centroids)[1], nearest(held_points, centroids)[1]
    weighted, weights, used, lowest = 0.0, 0.0, 0, math.inf
    for cell in range(len(centroids)):
        f, h = fake_distances[fake_cell == cell], held_distances[held_cell == cell]
        if len(f) < min_per_cell or len(h) < min_per_cell:
            continue
        z = u_z_score(mann_whitney_u(f, h), len(f), len(h))
        share = len(h) / len(held_distances)
        weighted, weights, used, lowest = weighted + share * z, weights + share, used + 1, min(lowest, z)
    if used == 0:
        raise ValueError(
            f"data copying: no cell holds {min_per_cell} generated and {min_per_cell} held-out images; "
            "use more images, fewer cells or a lower min_per_cell"
        )
    return CopyingTest(weighted / weights, used, lowest)


@dataclass(frozen=True)
class NearCopies:
    rate: float  # fraction of generated images nearer to a training image than the threshold
    threshold: float  # the held-out percentile, as a distance
    expected: float  # the rate a generator of fresh images gives: percentile / 100
    p_value: float  # one-sided binomial test of rate > expected
    below_min: int  # generated images nearer than every held-out image
    below_min_p: float  # one-sided binomial test against 1 / (held-out images + 1)


def near_copies(fake_distances: torch.Tensor, held_distances: torch.Tensor, percentile: float) -> NearCopies:
    """How many generated images are closer to the training set than nearly all fresh real images.

    Two counts, each with a one-sided binomial test: below the ``percentile`` of the held-out
    distances (a rate of near copies), and below the smallest held-out distance (a few copies in
    many fresh images: a fresh image falls below the minimum of n exchangeable held-out ones with
    probability 1 / (n + 1)).
    """
    from scipy.stats import binomtest

    n = len(fake_distances)
    threshold = float(torch.quantile(held_distances.double(), percentile / 100))
    hits = int((fake_distances < threshold).sum())
    expected = percentile / 100
    below_min = int((fake_distances < held_distances.min()).sum())
    return NearCopies(
        hits / n,
        threshold,
        expected,
        float(binomtest(hits, n, expected, alternative="greater").pvalue),
        below_min,
        float(binomtest(below_min, n, 1 / (len(held_distances) + 1), alternative="greater").pvalue),
    )


def cosine_to_nearest(views: list[torch.Tensor], train: torch.Tensor) -> torch.Tensor:
    """``1 − cos`` between each point and its most similar training point, the smallest over the
    point's views (on unit vectors ``‖a − b‖² = 2 − 2 cos``, so the Euclidean search finds it)."""
    unit = torch.nn.functional.normalize
    distances = nearest_of_views([unit(v.float(), dim=1) for v in views], unit(train.float(), dim=1))[0]
    return distances.square() / 2
