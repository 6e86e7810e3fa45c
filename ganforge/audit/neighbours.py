"""Nearest neighbours by chunked matrix products: no query × reference matrix is ever whole.

``‖q − r‖² = ‖q‖² − 2 q·r + ‖r‖²`` for a block of queries against a block of references at a
time, keeping the running minimum per query. Blocks of 2,048 × 16,384 floats are 128 MiB, so
10,000 generated images against 112,000 training images run in bounded memory on a CPU and in
seconds on a GPU (``benchmarks/audit_neighbours.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

QUERY_CHUNK = 2048
REF_CHUNK = 16384


@torch.no_grad()
def nearest(
    queries: torch.Tensor,
    refs: torch.Tensor,
    device: torch.device | str | None = None,
    query_chunk: int = QUERY_CHUNK,
    ref_chunk: int = REF_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance from each row of ``queries [N, D]`` to its nearest row of ``refs [M, D]``.

    Returns ``(distances [N], indices [N])`` on the CPU; ties go to the lower index. Computed in
    float32 on ``device`` (default: where ``queries`` are).
    """
    if refs.shape[0] == 0:
        raise ValueError("nearest: no reference vectors")
    if queries.shape[1] != refs.shape[1]:
        raise ValueError(f"nearest: queries have {queries.shape[1]} dimensions, references {refs.shape[1]}")
    device = torch.device(device) if device is not None else queries.device
    best_d = torch.full((len(queries),), float("inf"))
    best_i = torch.zeros(len(queries), dtype=torch.long)
    ref_blocks = []
    for start in range(0, len(refs), ref_chunk):
        block = refs[start : start + ref_chunk].to(device, torch.float32)
        ref_blocks.append((start, block, block.square().sum(1)))
    for q_start in range(0, len(queries), query_chunk):
        q = queries[q_start : q_start + query_chunk].to(device, torch.float32)
        q_norm = q.square().sum(1, keepdim=True)
        chunk_d = torch.full((len(q),), float("inf"), device=device)
        chunk_i = torch.zeros(len(q), dtype=torch.long, device=device)
        for start, block, r_norm in ref_blocks:
            squared = torch.addmm(q_norm + r_norm, q, block.T, alpha=-2.0)
            d, i = squared.min(1)
            better = d < chunk_d  # strict: an equal distance keeps the earlier (lower) index
            chunk_d = torch.where(better, d, chunk_d)
            chunk_i = torch.where(better, i + start, chunk_i)
        best_d[q_start : q_start + len(q)] = chunk_d.clamp_min(0).sqrt().cpu()
        best_i[q_start : q_start + len(q)] = chunk_i.cpu()
    return best_d, best_i


def nearest_of_views(
    views: Iterable[torch.Tensor], refs: torch.Tensor, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The nearest reference over several views of each query (e.g. the image, mirrored, shifted).

    Returns ``(distances [N], indices [N], view [N])``: which view was the closest. Each view is
    read once and not kept (views may be computed as they are read).
    """
    found = [nearest(v, refs, device) for v in views]
    distances = torch.stack([d for d, _ in found])
    view = distances.argmin(0)
    rows = torch.arange(distances.shape[1])
    return distances[view, rows], torch.stack([i for _, i in found])[view, rows], view


@torch.no_grad()
def kmeans(points: torch.Tensor, k: int, seed: int, iterations: int = 25) -> torch.Tensor:
    """``k`` centroids of ``points [N, D]``: k-means++ seeding, then Lloyd's algorithm."""
    g = torch.Generator().manual_seed(seed)
    points = points.float()
    k = min(k, len(points))
    centroids = points[torch.randint(len(points), (1,), generator=g)]
    for _ in range(1, k):  # each next centre drawn with probability ∝ squared distance to the chosen ones
        weights = nearest(points, centroids)[0].double().square()
        if float(weights.sum()) == 0:
            break  # fewer distinct points than k
        centroids = torch.cat([centroids, points[torch.multinomial(weights, 1, generator=g)]])
    for _ in range(iterations):
        assignment = nearest(points, centroids)[1]
        counts = torch.bincount(assignment, minlength=len(centroids))
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        moved = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centroids)
        if torch.equal(moved, centroids):
            break
        centroids = moved
    return centroids
