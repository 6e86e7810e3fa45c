"""Image tensors to PNG files and captioned sample grids."""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .checkpoint import atomic_write


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] → uint8 [0, 255] (clamped; the generator's output is linear)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [-1, 1]."""
    return images.float() / 127.5 - 1


def _pil(image: np.ndarray) -> Image.Image:
    """``uint8 [C, H, W]`` → PIL image: grayscale ('L') for one channel, RGB for three."""
    return Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_png(image: torch.Tensor) -> bytes:
    """One ``uint8 [C, H, W]`` image as PNG bytes."""
    return png_bytes(_pil(image.numpy()))


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """Write one ``uint8 [C, H, W]`` image atomically."""
    atomic_write(path, encode_png(image))


def grid(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile ``uint8 [N, C, H, W]`` into one ``uint8 [C, H', W']`` array."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    out = np.zeros((c, rows * (h + pad) + pad, columns * (w + pad) + pad), dtype=np.uint8)
    for i, image in enumerate(images.numpy()):
        top, left = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        out[:, top : top + h, left : left + w] = image
    return out


def save_grid(images: torch.Tensor, path: str | Path, caption: str = "") -> None:
    """Save a grid PNG, with ``caption`` (e.g. 'PHANTOM data') printed in a band above it."""
    tiled = _pil(grid(images))
    if tiled.width < 256:  # small images: enlarge the grid (nearest neighbour) so it can be seen and captioned
        factor = math.ceil(256 / tiled.width)
        tiled = tiled.resize((tiled.width * factor, tiled.height * factor), Image.Resampling.NEAREST)
    if caption:
        font = ImageFont.load_default(size=11)  # Pillow's bundled scalable font, legible on small grids
        lines = textwrap.wrap(caption.replace("×", "x"), width=max(8, int(tiled.width / 6.5)))
        band = 4 + 13 * len(lines)
        canvas = Image.new(tiled.mode, (tiled.width, tiled.height + band), 0)
        canvas.paste(tiled, (0, band))
        draw = ImageDraw.Draw(canvas)
        for i, line in enumerate(lines):
            draw.text((3, 2 + 13 * i), line, font=font, fill=255 if tiled.mode == "L" else (255, 255, 255))
        tiled = canvas
    atomic_write(path, png_bytes(tiled))
