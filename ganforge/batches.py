"""Which images each training step sees, and reading them ahead of the step.

The data stream is a pure function of the seed: epoch ``e`` visits the set in the order of a
permutation seeded with (seed, e), and step ``s`` takes the ``batch_size`` positions after the
``images_seen`` of its growth stage. Small sets live on the training device and are indexed there.
Sets that stay off the device (memory-mapped caches larger than the device limit) are read by a
:class:`torch.utils.data.DataLoader` whose worker processes fetch the next steps' batches while the
current step computes, into pinned memory on CUDA.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from itertools import count

import torch
from torch.utils.data import DataLoader, Dataset

from .seeds import mix_seed

PREFETCH = 2  # batches each worker reads ahead


class DataOrder:
    """Dataset indices of positions ``seen … seen + size`` of the stream (one seeded order per epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._epoch: tuple[int, torch.Tensor] | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        if self._epoch is None or self._epoch[0] != epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 1))
            self._epoch = (epoch, torch.randperm(self.n, generator=g))
        return self._epoch[1]

    def indices(self, seen: int, size: int) -> torch.Tensor:
        positions = torch.arange(seen, seen + size)
        index = torch.empty(size, dtype=torch.long)
        for epoch in positions.div(self.n, rounding_mode="floor").unique().tolist():
            mask = positions // self.n == epoch
            index[mask] = self.permutation(epoch)[positions[mask] % self.n]
        return index


class _Rows(Dataset):
    """``rows[index]`` for a tensor of indices: one batch per item, read in a worker process."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        return self.images[index]


class Prefetcher:
    """Batches of a large, off-device image set, read by ``workers`` processes ahead of the steps.

    ``plan(step)`` gives ``(images_seen, batch_size)`` of a step. Batches must be asked for in step
    order; asking for another step (after a resume) restarts the readers there. Worker processes
    are forked (Linux), so they share the memory map instead of copying the set; elsewhere, or with
    ``workers = 0``, batches are read in the training process.
    """

    def __init__(
        self,
        images: torch.Tensor,
        order: DataOrder,
        plan: Callable[[int], tuple[int, int]],
        workers: int,
        pin: bool = False,
    ):
        self.images, self.order, self.plan, self.pin = images, order, plan, pin
        self.workers = workers if sys.platform.startswith("linux") else 0
        self._next: int | None = None
        self._stream: Iterator[torch.Tensor] | None = None

    def _indices_from(self, start: int) -> Iterator[torch.Tensor]:
        for step in count(start):
            yield self.order.indices(*self.plan(step))

    def batch(self, step: int) -> torch.Tensor:
        """The uint8 images of ``step`` (on the CPU; pinned when reading for a GPU)."""
        if self.workers == 0:
            batch = self.images[self.order.indices(*self.plan(step))]
            return batch.pin_memory() if self.pin else batch
        if self._stream is None or self._next != step:
            self.close()
            loader = DataLoader(
                _Rows(self.images),
                sampler=self._indices_from(step),
                batch_size=None,  # each sampled item is already a batch's indices
                num_workers=self.workers,
                prefetch_factor=PREFETCH,
                pin_memory=self.pin,
                multiprocessing_context="fork",
                # Its own generator: the loader draws its workers' base seed when it starts, and a draw
                # from the global RNG there would shift the step's flips and latents (see training.py).
                generator=torch.Generator().manual_seed(mix_seed(self.order.seed, step, 4)),
            )
            self._stream = iter(loader)
        self._next = step + 1
        return next(self._stream)

    def close(self) -> None:
        """Stop the worker processes (they also end with the training process)."""
        self._stream = None
