"""Data-parallel training with PyTorch's own engine: ``torch.distributed`` + DDP, launched by torchrun.

``ganforge build CONFIG --nproc N`` runs ``torchrun --standalone --nproc-per-node N -m ganforge build
CONFIG ...``; users can call torchrun themselves (multi-node: its ``--nnodes``/``--rdzv-*`` options).
Each process (rank) sees the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

``train.batch_size`` is the **global** batch. Every rank draws the same global batch (same seeded
data order, latents and augmentation) and keeps its slice ``[rank·b, (rank+1)·b)`` with
``b = batch_size / world_size``; DDP averages the gradients, so a step sees the data one process
would. Statistics taken over a batch inside the model or loss (minibatch std-dev groups, the
relativistic loss's batch means) are per rank, as in every data-parallel GAN. Rank 0 alone writes
files (checkpoints, weights, samples, ``metrics.jsonl``). Evaluation is shared: each rank generates
and extracts features for its :meth:`Distributed.span` of the images, and :meth:`Distributed.gather`
puts the pieces together on every rank in image order.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .config import Config
from .errors import GanforgeError
from .registry import Registry

MAX_DIMS = 8  # of a tensor passed to Distributed.gather


@dataclass
class Distributed:
    """This process's place in a data-parallel run (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_environment(cls, device: torch.device) -> Distributed:
        """Join the process group torchrun prepared (gloo on CPU, NCCL on CUDA), if there is one.

        On CUDA each rank takes the GPU of its local rank.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=device)
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world, local_rank, device)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP around ``module`` (its buffers need no broadcast: every rank computes the same ones)."""
        if not self.active:
            return module
        ids = [self.local_rank] if self.device.type == "cuda" else None
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:  # torch ≥ 2.14
            return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a global batch."""
        if not self.active:
            return batch
        if len(batch) % self.world:
            raise GanforgeError(
                f"train.batch_size: the global batch of {len(batch)} does not split over {self.world} processes"
            )
        size = len(batch) // self.world
        return batch[self.rank * size : (self.rank + 1) * size]

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (all ranks stop at the same step)."""
        if not self.active:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean(self, *values: torch.Tensor) -> list[torch.Tensor]:
        """The mean of each 0-dim tensor over the ranks (for logging the losses of the whole batch)."""
        if not self.active:
            return list(values)
        stacked = torch.stack([v.detach().float() for v in values])
        dist.all_reduce(stacked)
        return list(stacked / self.world)

    def from_main(self, compute: Callable[[], str]) -> str:
        """``compute()`` run on rank 0 only, its text on every rank (one decision for all of them)."""
        if not self.active:
            return compute()
        box = [compute() if self.is_main else ""]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all(self, flag: bool) -> bool:
        """True on every rank when it is true on all of them."""
        return not self.any(not flag)

    def span(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (shares differ by at most one item)."""
        start, end = (n * self.rank) // self.world, (n * (self.rank + 1)) // self.world
        return slice(start, end)

    def gather(self, part: torch.Tensor) -> torch.Tensor:
        """Every rank's ``part`` (its :meth:`span` of the rows), concatenated in rank order, on every rank.

        Parts may differ in length; an empty part may have any shape (a rank with nothing to do).
        """
        if not self.active:
            return part
        if part.dim() > MAX_DIMS:
            raise ValueError(f"gather takes tensors of at most {MAX_DIMS} dimensions, not {part.dim()}")
        shape = torch.zeros(MAX_DIMS + 1, dtype=torch.long, device=self.device)
        shape[0] = part.dim()
        shape[1 : part.dim() + 1] = torch.tensor(part.shape)
        shapes = [torch.empty_like(shape) for _ in range(self.world)]
        dist.all_gather(shapes, shape)
        rows = [int(s[1]) for s in shapes]
        widest = shapes[rows.index(max(rows))]  # an empty part's shape may be any: take a full one's
        trailing = widest[2 : int(widest[0]) + 1].tolist()
        padded = torch.zeros([max(rows), *trailing], dtype=part.dtype, device=self.device)
        if len(part):
            padded[: len(part)] = part.to(self.device)
        pieces = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(pieces, padded)
        return torch.cat([piece[:count] for piece, count in zip(pieces, rows)]).to(part.device)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def check_batches_split(config: Config, registry: Registry, world: int) -> None:
    """Refuse, before torchrun starts ``world`` processes, a batch size that does not split over them.

    A growing model's every stage's batch size is checked (its schedule is known before training).
    """
    from .assembly import build_connection

    batch = config.train.batch_size
    schedule = build_connection(config.model, registry).schedule(config.model.resolution, batch)
    sizes = {batch} | {schedule.growth(step).batch_size for step in range(schedule.total_steps() or 1)}
    bad = sorted(size for size in sizes if size % world)
    if bad:
        which = "train.batch_size" if bad == [config.train.batch_size] else "the growth schedule's batch sizes"
        raise GanforgeError(
            f"{which} ({', '.join(map(str, bad))}) cannot be split over {world} processes; "
            f"use a batch size divisible by {world}"
        )
