"""The statistics of the privacy audit, computed from nearest-neighbour distances.

Every test compares generated images with held-out real images, which training never saw. Under
the null hypothesis (the generator draws fresh images, like the held-out ones) a generated and a
held-out image's distances to the training set are exchangeable; the tests are exact or
asymptotically exact under that hypothesis *with the held-out set as it was drawn*: what is
estimated from the held-out set (a percentile, a minimum) is treated as the random quantity it is.
``benchmarks/audit_calibration.py`` measures each test's false-positive rate in null simulations.

* **Data copying** (Meehan, Chaudhuri & Dasgupta, AISTATS 2020), as their reference code computes
  it: cells are the k-means cells of the training features; in each cell, each generated and
  held-out point's distance to its nearest training point *of that cell*; a Mann-Whitney z-score
  (with their continuity correction) per cell; ``C_T`` the average of the z-scores weighted by
  the cells' share of held-out points. ``C_T ≪ 0``: generated images hug the training set. Its
  p-value: the cells' z-scores are independent N(0, 1) under the null, so C_T is normal with
  standard deviation √Σw² / Σw (Meehan et al. read C_T against a fixed −3 instead).
* **Near copies.** The number of generated images nearer to a training image than the k-th
  nearest held-out image (k from ``percentile``), and than the nearest one. For a fresh image the
  chance to fall below the k-th of n held-out distances is Beta(k, n + 1 − k)-distributed, so the
  count is beta-binomial: the p-values are exact (a binomial test at k / (n + 1) would treat the
  estimated radius as known, and flags fresh images far more often than its α).
* **Memorization distance** (the MiFID term: Bai et al. 2021): the mean over generated images of
  the cosine distance to the closest training image, beside the same figure for held-out images.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
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
    """z-score of U under the null hypothesis, as Meehan et al.'s code: U + ½ (continuity
    correction towards the mean for the lower tail), no tie correction."""
    return (u + 0.5 - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12)


@dataclass(frozen=True)
class CopyingTest:
    ct: float  # Meehan et al.'s C_T: ≪ 0 copying, ≫ 0 underfitting, ≈ 0 neither
    p_value: float  # one-sided (copying): P(C_T this low or lower) for a generator of fresh images
    cells: int  # cells with enough generated and held-out images to enter C_T
    lowest_z: float  # the most copying-like cell's z-score


def cell_distances(
    views: Sequence[torch.Tensor],
    centroids: torch.Tensor,
    train: torch.Tensor,
    train_cell: torch.Tensor,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, cell) of each point: each of its ``views`` (``[N, D]`` each, read once) falls in
    the cell of its nearest centroid and is measured to the nearest training point of that cell;
    the point takes its closest view's distance and cell (a mirrored copy lies in its source's
    cell only when mirrored). ``inf`` for a view in a cell no training point falls in."""

    def within(view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cell = nearest(view, centroids, device)[1]
        distance = torch.full((len(view),), math.inf)
        for c in cell.unique().tolist():
            rows, refs = cell == c, train[train_cell == c]
            if len(refs):
                distance[rows] = nearest(view[rows], refs, device)[0]
        return distance, cell

    found = (within(view) for view in views)
    best, best_cell = next(found)
    for distance, cell in found:
        closer = distance < best
        best, best_cell = torch.where(closer, distance, best), torch.where(closer, cell, best_cell)
    return best, best_cell


def copying_test(
    fake_distances: torch.Tensor,
    fake_cell: torch.Tensor,
    held_distances: torch.Tensor,
    held_cell: torch.Tensor,
    min_per_cell: int,
) -> CopyingTest:
    """C_T and its p-value from within-cell distances and cells (:func:`cell_distances`).

    A cell enters when it holds ``min_per_cell`` generated and as many held-out points (Meehan et
    al.'s code asks a share τ of generated points, and fails on a cell without held-out points).
    """
    weighted, weights, squares, used, lowest = 0.0, 0.0, 0.0, 0, math.inf
    for c in torch.cat([fake_cell, held_cell]).unique().tolist():
        f, h = fake_distances[fake_cell == c], held_distances[held_cell == c]
        if len(f) < min_per_cell or len(h) < min_per_cell:
            continue
        z = u_z_score(mann_whitney_u(f, h), len(f), len(h))
        w = len(h) / len(held_distances)
        weighted, weights, squares = weighted + w * z, weights + w, squares + w * w
        used, lowest = used + 1, min(lowest, z)
    if used == 0:
        raise ValueError(
            f"data copying: no cell holds {min_per_cell} generated and {min_per_cell} held-out images; "
            "use more images, fewer cells or a lower min_per_cell"
        )
    ct = weighted / weights
    return CopyingTest(ct, _normal_cdf(ct * weights / math.sqrt(squares)), used, lowest)


def data_copying(
    train: torch.Tensor,
    fake_views: Sequence[torch.Tensor],
    held_views: Sequence[torch.Tensor],
    cells: int,
    min_per_cell: int,
    seed: int,
    device: torch.device | str | None = None,
) -> CopyingTest:
    """Meehan et al.'s test of generated against held-out points (each given as its views, the
    point as it is first), in cells that are the k-means cells of ``train``. With one view this
    is their reference computation."""
    centroids = kmeans(train, cells, seed)
    train_cell = nearest(train, centroids, device)[1]
    fake, fake_cell = cell_distances(fake_views, centroids, train, train_cell, device)
    held, held_cell = cell_distances(held_views, centroids, train, train_cell, device)
    return copying_test(fake, fake_cell, held, held_cell, min_per_cell)


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


@dataclass(frozen=True)
class NearCopies:
    rate: float  # fraction of generated images nearer to a training image than the radius
    threshold: float  # the radius: the k-th smallest held-out distance
    expected: float  # the rate a generator of fresh images gives on average: k / (n + 1)
    p_value: float  # one-sided beta-binomial test of that many or more
    below_min: int  # generated images nearer than every held-out image
    below_min_p: float  # the same test at k = 1


def below_order_statistic(fake_distances: torch.Tensor, held_sorted: torch.Tensor, k: int) -> tuple[int, float]:
    """(generated distances below the k-th smallest held-out one, the exact p-value of that many).

    For a fresh image, P(below the k-th of n exchangeable held-out distances) is Beta(k, n + 1 − k)
    over held-out sets; the count of m fresh images is beta-binomial (m, k, n + 1 − k). Ties count
    as not below (conservative).
    """
    from scipy.stats import betabinom

    n = len(held_sorted)
    hits = int((fake_distances < held_sorted[k - 1]).sum())
    return hits, float(betabinom.sf(hits - 1, len(fake_distances), k, n + 1 - k))


def near_copies(fake_distances: torch.Tensor, held_distances: torch.Tensor, percentile: float) -> NearCopies:
    """How many generated images are closer to the training set than nearly all fresh real images.

    Two counts, each with its exact test: below the k-th smallest held-out distance, k the
    ``percentile`` of the n held-out images (rounded up, at least 1): a rate of near copies; and
    below the smallest: a few copies among many fresh images.
    """
    held = held_distances.double().sort().values
    k = max(1, math.ceil(percentile / 100 * len(held)))
    hits, p = below_order_statistic(fake_distances.double(), held, k)
    below_min, below_min_p = below_order_statistic(fake_distances.double(), held, 1)
    return NearCopies(hits / len(fake_distances), float(held[k - 1]), k / (len(held) + 1), p, below_min, below_min_p)


def cosine_to_nearest(views: Iterable[torch.Tensor], train: torch.Tensor) -> torch.Tensor:
    """``1 − cos`` between each point and its most similar training point, the smallest over the
    point's views (on unit vectors ``‖a − b‖² = 2 − 2 cos``, so the Euclidean search finds it)."""
    unit = torch.nn.functional.normalize
    distances = nearest_of_views((unit(v.float(), dim=1) for v in views), unit(train.float(), dim=1))[0]
    return distances.square() / 2
