"""A positive control for the audit: copies of training images planted where generated ones would be.

An audit that passes means something only if it would have failed on copies. ``planted_copies``
makes them from the training set itself, in four equal parts: exact copies, mirrored copies,
copies with light noise (±3 grey levels) and copies moved one pixel to the right (the edge column
repeated). ``scripts/plant_copies.py RUN OUT`` writes them as PNGs for ``audit RUN
--fake OUT``.
"""

from __future__ import annotations

import torch

KINDS = ("exact", "mirrored", "noised", "shifted")


def planted_copies(train: torch.Tensor, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(copies, source index of each)``: ``n`` distinct training images, a quarter of each kind, in
    the order of :data:`KINDS` (``n`` not divisible by 4: the last kind takes the rest)."""
    if not 0 < n <= len(train):
        raise ValueError(f"planted_copies: n must be between 1 and {len(train)} (the training images)")
    g = torch.Generator().manual_seed(seed)
    sources = torch.randperm(len(train), generator=g)[:n]
    copies = train[sources].clone()
    q = n // 4
    copies[q : 2 * q] = copies[q : 2 * q].flip(-1)
    noise = torch.randint(-3, 4, copies[2 * q : 3 * q].shape, generator=g)
    copies[2 * q : 3 * q] = (copies[2 * q : 3 * q].int() + noise).clamp(0, 255).to(torch.uint8)
    copies[3 * q :, ..., 1:] = train[sources[3 * q :], ..., :-1]
    return copies, sources
