"""Write any dataset to disk in the layout real chest X-ray datasets use (PNGs + labels CSV)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.progress import track

from .checkpoint import atomic_write
from .images import save_png
from .kinds import ImageDataset

NO_FINDING = "No Finding"


def write_dataset(dataset: ImageDataset, out: str | Path, prefix: str = "image") -> Path:
    """``out/images/<prefix>_000000.png`` + ``out/labels.csv`` (``Image Index``, ``Finding Labels``).

    The CSV follows ChestX-ray14: findings joined by ``|``, ``No Finding`` when there are none, so
    the ``image_folder`` dataset reads the result back. ``out/README.txt`` repeats the dataset's
    description (for the phantom: that it is a phantom).
    """
    out = Path(out)
    rows = []
    labels = dataset.labels.tolist() if dataset.labels is not None else [[] for _ in dataset.images]
    for index in track(range(len(dataset.images)), description="writing PNGs", transient=True):
        name = f"{prefix}_{index:06d}.png"
        save_png(dataset.images[index], out / "images" / name)
        findings = [n for n, on in zip(dataset.label_names, labels[index]) if on]
        rows.append((name, "|".join(findings) or NO_FINDING))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Image Index", "Finding Labels"])
    writer.writerows(rows)
    atomic_write(out / "labels.csv", buffer.getvalue())
    atomic_write(out / "README.txt", dataset.description + "\n")
    return out / "labels.csv"
