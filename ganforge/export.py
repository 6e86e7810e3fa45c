"""Write any dataset to disk in the layout real chest X-ray datasets use (PNGs + labels CSV)."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoint import atomic_write
from .errors import GanforgeError
from .images import encode_png, save_png
from .kinds import ImageDataset
from .progress import progress

NO_FINDING = "No Finding"
GRID_LIMIT = 64


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


def write_samples(batches: Iterator[torch.Tensor], count: int, out: str | Path) -> torch.Tensor:
    """Write ``count`` images from ``batches`` as ``out/sample_00000.png``, …; return the first ``GRID_LIMIT``.

    Before any file is written, the PNG size of the first batch times ``count`` is compared with the
    free space under ``out``: asking for more than fits is refused, instead of filling the disk.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kept: list[torch.Tensor] = []
    written = 0
    for batch in progress(batches, "sampling"):
        encoded = [encode_png(image) for image in batch]
        if written == 0:
            need, free = count * sum(map(len, encoded)) / len(encoded), shutil.disk_usage(out).free
            if need > free:
                raise GanforgeError(
                    f"-n {count}: about {_size(need)} of PNGs would not fit in the {_size(free)} free under {out}"
                )
        for data in encoded:
            atomic_write(out / f"sample_{written:05d}.png", data)
            written += 1
        if len(kept) < GRID_LIMIT:
            kept.append(batch[: GRID_LIMIT - len(kept)])
    return torch.cat(kept)


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_dataset(
    dataset: ImageDataset, out: str | Path, prefix: str = "image", columns: Mapping[str, Sequence[Any]] | None = None
) -> Path:
    """``out/images/<prefix>_000000.png`` + ``out/labels.csv`` (``Image Index``, ``Finding Labels``, ``columns``).

    The CSV follows ChestX-ray14: findings joined by ``|``, ``No Finding`` when there are none, so
    the ``image_folder`` dataset reads the result back. ``out/README.txt`` repeats the dataset's
    description (for the phantom: that it is a phantom).
    """
    out = Path(out)
    rows = []
    labels = dataset.labels.tolist() if dataset.labels is not None else [[] for _ in dataset.images]
    for index in progress(range(len(dataset.images)), "writing PNGs"):
        name = f"{prefix}_{index:06d}.png"
        save_png(dataset.images[index], out / "images" / name)
        findings = [n for n, on in zip(dataset.label_names, labels[index]) if on]
        extra = [_cell(values[index]) for values in (columns or {}).values()]
        rows.append((name, "|".join(findings) or NO_FINDING, *extra))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Image Index", "Finding Labels", *(columns or {})])
    writer.writerows(rows)
    atomic_write(out / "labels.csv", buffer.getvalue())
    atomic_write(out / "README.txt", dataset.description + "\n")
    return out / "labels.csv"
