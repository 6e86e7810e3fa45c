"""A seeded part of the real images that training never sees.

``data.holdout = 0.1`` reserves 10 % of the dataset before training (a permutation seeded by the
run's seed). The privacy audit compares generated images with the training images *and* with
these held-out ones, so the run records which they are in ``RUN/holdout.safetensors``: their
indices, their content hash and the dataset's size. The audit rebuilds the dataset from the run's
config, takes the recorded indices and refuses to go on when the images there are not the
recorded ones (the folder changed since training): it would otherwise audit against images the
generator may have trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_tensors, save_tensors
from .errors import CheckpointError
from .evaluation import fingerprint
from .kinds import ImageDataset, ImageSet


def holdout_split(n: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept indices, held-out indices) from a seeded permutation; at least one image is held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(n * holdout))
    return order[n_test:], order[:n_test]


def _part(data: ImageDataset, indices: torch.Tensor, what: str) -> ImageSet:
    labels = data.labels[indices] if data.labels is not None else None
    return ImageSet(data.images[indices], labels, list(data.label_names), f"{data.description} ({what})")


@dataclass(frozen=True)
class Split:
    """A dataset divided into the images trained on and the held-out ones."""

    train: ImageSet
    holdout: ImageSet
    indices: torch.Tensor  # held-out positions in the dataset, ascending
    total: int


def _divide(data: ImageDataset, held: torch.Tensor, fraction: float) -> Split:
    mask = torch.zeros(len(data.images), dtype=torch.bool)
    mask[held] = True
    pct = f"{100 * fraction:g} %"
    kept = _part(data, (~mask).nonzero().squeeze(1), f"training part, {pct} held out")
    return Split(kept, _part(data, held, f"{pct} held out"), held, len(data.images))


def split(data: ImageDataset, fraction: float, seed: int) -> Split:
    """Reserve ``fraction`` of ``data`` (seeded); both parts keep the dataset's order."""
    return _divide(data, holdout_split(len(data.images), fraction, seed)[1].sort().values, fraction)


def record(path: Path, part: Split, fraction: float, seed: int) -> None:
    """Write (atomically) which images ``part`` holds out."""
    save_tensors(
        path,
        {"indices": part.indices},
        {"fraction": fraction, "seed": seed, "total": part.total, "fingerprint": fingerprint(part.holdout.images)},
    )


def _read(path: Path) -> tuple[torch.Tensor, int, str, float]:
    """(held-out indices, dataset size, content hash, fraction) of a record."""
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no held-out split recorded; train with data.holdout > 0 (e.g. 0.1) "
            "so the audit has real images the generator never saw"
        )
    tensors, meta = load_tensors(path)
    try:
        indices, total = tensors["indices"], int(meta["total"])
        return indices, total, meta["fingerprint"], float(meta["fraction"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a ganforge hold-out record") from exc


def keep_record(path: Path, part: Split, fraction: float, seed: int) -> None:
    """Write which images ``part`` holds out; a resumed run must hold out the same ones."""
    if not path.is_file():
        record(path, part, fraction, seed)
    elif not matches_record(path, part):
        raise CheckpointError(f"{path}: this run held out other images than the config now does")


def matches_record(path: Path, part: Split) -> bool:
    """Does ``part`` hold out the images recorded at ``path``?"""
    indices, total, expected, _ = _read(path)
    return total == part.total and torch.equal(indices, part.indices) and expected == fingerprint(part.holdout.images)


def recorded_split(path: Path, data: ImageDataset) -> Split:
    """The split a run recorded at ``path``, applied to ``data`` and verified against the record."""
    indices, total, expected, fraction = _read(path)
    if total != len(data.images) or indices.numel() == 0 or int(indices.max()) >= total:
        raise CheckpointError(
            f"{path}: the run held out images of a {total}-image dataset; the dataset now has {len(data.images)}"
        )
    part = _divide(data, indices, fraction)
    if fingerprint(part.holdout.images) != expected:
        raise CheckpointError(
            f"{path}: the held-out images differ from those recorded at training time (the dataset changed); "
            "auditing against it could count training images as held out"
        )
    return part
