"""Opt-in TensorBoard logging (``[train] tensorboard = true``) into ``RUN/tensorboard/``.

Scalars (losses, images/second, every evaluated figure), the training sample grids and the
resolved config as text. Tracking is never a reason to stop training: without the ``tensorboard``
package there is one warning and training goes on without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch

FOLDER = "tensorboard"


class TensorBoard:
    def __init__(self, writer) -> None:
        self.writer = writer

    @classmethod
    def open(cls, run: Path, warn: Callable[[str], None]) -> TensorBoard | None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warn(
                "train.tensorboard = true but the tensorboard package is not installed "
                "(pip install 'ganforge[tensorboard]'); training goes on without it"
            )
            return None
        return cls(SummaryWriter(log_dir=str(run / FOLDER)))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def image(self, tag: str, images: torch.Tensor, step: int) -> None:
        """A uint8 ``[N, C, H, W]`` batch as one grid image."""
        from torchvision.utils import make_grid

        self.writer.add_image(tag, make_grid(images.cpu(), nrow=max(1, int(len(images) ** 0.5))), step)
        self.writer.flush()

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, f"```\n{text}\n```", 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
