"""The closest generated/training pairs as a PNG: a number cannot show a person what a copy looks like."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure

from ..plots import save_figure


@dataclass(frozen=True)
class Pair:
    fake: int  # index into the generated set
    train: int  # index into the training set
    distance: float
    view: str  # which view of the generated image matched ("as is", "mirrored", ...)


def closest_pairs(
    distances: torch.Tensor, indices: torch.Tensor, view: torch.Tensor, views: Sequence[str], k: int
) -> list[Pair]:
    """The ``k`` generated images nearest to a training image, nearest first."""
    order = distances.argsort()[:k]
    return [Pair(int(i), int(indices[i]), float(distances[i]), views[int(view[i])]) for i in order]


def save_pairs(
    pairs: list[Pair], fake: torch.Tensor, train: torch.Tensor, path: Path, title: str, columns: int = 4
) -> Path:
    """Each pair as generated | training image, its distance beneath; ``title`` says the space and the scale."""
    rows = (len(pairs) + columns - 1) // columns
    figure = Figure(figsize=(2.6 * columns, 1.55 * rows + 0.6), layout="constrained")
    figure.suptitle(title, fontsize=8)
    grid = figure.add_gridspec(max(rows, 1), 2 * columns)
    gray = fake.shape[1] == 1
    for n, pair in enumerate(pairs):
        row, column = divmod(n, columns)
        for side, (images, index, label) in enumerate(((fake, pair.fake, "gen"), (train, pair.train, "train"))):
            ax = figure.add_subplot(grid[row, 2 * column + side])
            image = images[index].permute(1, 2, 0).numpy()
            ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label} #{index}", fontsize=6, pad=2)
            if side == 0:
                matched = "" if pair.view == "as is" else f" ({pair.view})"
                ax.set_xlabel(f"d = {pair.distance:.4g}{matched}", fontsize=6)
    return save_figure(figure, path)
