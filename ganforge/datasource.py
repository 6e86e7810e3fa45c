"""The images a training run reads: loaded once, held-out part set aside, placed where they fit.

A set of at most :data:`DEVICE_DATA_LIMIT` bytes lives on the training device and each step's
batch is indexed there; a larger (memory-mapped) set stays put and worker processes read the next
steps' batches ahead (:class:`~ganforge.batches.Prefetcher`). Either way the stream is a pure
function of the seed (:class:`~ganforge.batches.DataOrder`), so every rank of a data-parallel run
and every resumption reads the same images at the same step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import holdout
from .assembly import build_dataset
from .batches import DataOrder, Prefetcher
from .config import Config
from .errors import GanforgeError
from .holdout import Split
from .images import to_float
from .kinds import ImageDataset
from .registry import Registry

DEVICE_DATA_LIMIT = 2**30  # uint8 bytes of a dataset held on the training device; larger ones stream per batch
Plan = Callable[[int], tuple[int, int]]  # step -> (images seen before it, its batch size)


class TrainingData:
    """The training images (the held-out ones removed) and each step's batch of them, as floats on ``device``."""

    def __init__(
        self, dataset: ImageDataset, split: Split | None, device: torch.device, seed: int, plan: Plan, workers: int
    ):
        self.dataset, self.split, self.device, self.plan = dataset, split, device, plan
        images = dataset.images
        small = images.numel() <= DEVICE_DATA_LIMIT and images.is_contiguous()
        self.images = images.to(device) if small else images  # a large or memory-mapped set stays put
        self._order = DataOrder(len(images), seed)
        self.reader = None if small else Prefetcher(images, self._order, plan, workers, device.type == "cuda")

    @classmethod
    def load(cls, config: Config, registry: Registry, device: torch.device, plan: Plan) -> TrainingData:
        """The config's dataset at the model's resolution, its ``data.holdout`` share set aside."""
        dataset, split = build_dataset(config, registry), None
        if config.data.holdout > 0:  # the held-out images are never trained on; the privacy audit needs them
            if dataset.images.numel() > DEVICE_DATA_LIMIT:
                raise GanforgeError(
                    f"data.holdout: the dataset ({dataset.images.numel() / 2**30:.1f} GB) streams from disk "
                    "and holding out part of it would copy the rest into memory; not supported yet"
                )
            split = holdout.split(dataset, config.data.holdout, config.seed)
            dataset = split.train
        if len(dataset.images) < config.train.batch_size:
            raise GanforgeError(
                f"data: {len(dataset.images)} images is fewer than train.batch_size = {config.train.batch_size}"
            )
        return cls(dataset, split, device, config.seed, plan, config.train.data_workers)

    def batch(self, step: int) -> torch.Tensor:
        """The real images of ``step``, as floats on the device."""
        if self.reader is None:
            return to_float(self.images[self._order.indices(*self.plan(step)).to(self.device)])
        return to_float(self.reader.batch(step).to(self.device, non_blocking=True))

    def close(self) -> None:
        """Stop the reading worker processes, if any."""
        if self.reader is not None:
            self.reader.close()
