"""Sampling from a weights file: the config in its metadata is all that is needed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from .assembly import Generator, build_generator
from .config import Config
from .images import to_uint8
from .registry import Registry
from .seeds import mix_seed
from .weights import load_model

LATENT_BLOCK = 1024


def load_generator(path: str | Path, registry: Registry) -> tuple[Generator, Config]:
    """The generator a weights file describes, with its weights, in eval mode.

    Loaded as an untrusted file (:mod:`ganforge.weights`): ``registry`` decides which plugins exist;
    the file's own plugin list is never imported.
    """
    generator, config, _ = load_model(
        path, registry, "ganforge.config", lambda cfg: build_generator(cfg.model, registry)
    )
    assert isinstance(generator, Generator)
    return generator, config


def latent_blocks(n: int, latent_dim: int, seed: int) -> Iterator[torch.Tensor]:
    """The latents of ``seed``, ``LATENT_BLOCK`` rows at a time, each block from its own seeded stream.

    So the first ``k`` latents do not depend on ``n`` (``-n 16`` gives the first 16 images of
    ``-n 32``), and ``n`` can be any size without holding all latents in memory.
    """
    for block, start in enumerate(range(0, n, LATENT_BLOCK)):
        g = torch.Generator().manual_seed(mix_seed(seed, block))
        yield torch.randn(min(LATENT_BLOCK, n - start), latent_dim, generator=g)


def latents(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    """``n`` latents drawn on the CPU from ``seed``: the same on every machine and batch size."""
    return torch.cat(list(latent_blocks(n, latent_dim, seed))) if n else torch.empty(0, latent_dim)


@torch.no_grad()
def generate(
    generator: Generator, z: torch.Tensor, batch_size: int = 64, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """Yield ``uint8 [b, C, R, R]`` batches of the generator's final-scale output for latents ``z``."""
    generator = generator.to(device)
    for start in range(0, len(z), batch_size):
        yield to_uint8(generator(z[start : start + batch_size].to(device))[-1])


def sample_stream(
    generator: Generator, n: int, seed: int, batch_size: int = 64, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """``generate`` over ``latents(n, …, seed)`` drawn block by block: memory of one block, any ``n``."""
    for z in latent_blocks(n, generator.latent_dim, seed):
        yield from generate(generator, z, batch_size, device)


def constant_images(batch: torch.Tensor) -> int:
    """How many images of a batch are one flat value throughout (what a blown-up or dead generator gives)."""
    flat = batch.reshape(len(batch), -1)
    return int((flat.amax(1) == flat.amin(1)).sum())


def warn_if_constant(
    batches: Iterator[torch.Tensor], warn: Callable[[str], None], source: str
) -> Iterator[torch.Tensor]:
    """Pass ``batches`` on, warning once when every image of a batch is constant."""
    warned = False
    for batch in batches:
        if not warned and len(batch) and constant_images(batch) == len(batch):
            warn(
                f"{source}: a whole batch of {len(batch)} images came out constant (one flat value each, e.g. all "
                "black): the generator has blown up or died; sample an earlier checkpoint's weights"
            )
            warned = True
        yield batch


def trained_on(path: str | Path) -> str:
    """What data the weights in ``path`` were trained on, as their metadata says (for captions; '' if unknown).

    Phantom-trained weights say so (``PHANTOM (procedural, not patient data) …``): a grid of their
    samples must not pass for images of patients.
    """
    from .checkpoint import read_header

    data = read_header(path).metadata.get("ganforge.data", "")
    return f" Trained on: {data}" if data else ""
