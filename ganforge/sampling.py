"""Sampling from a weights file: the config in its metadata is all that is needed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from pydantic import ValidationError

from .assembly import Generator, build_generator
from .checkpoint import load_module, read_metadata
from .config import Config, validate_config
from .errors import CheckpointError, ConfigError
from .images import to_uint8
from .registry import Registry


def load_generator(path: str | Path, registry_for: Callable[[list[str]], Registry]) -> tuple[Generator, Config]:
    """Build the generator described by ``path``'s metadata and load its weights (eval mode)."""
    raw = read_metadata(path, "ganforge.config")
    registry = registry_for(raw.get("plugins", []))
    try:
        config = validate_config(raw, registry, f"{path} (metadata)")
    except (ConfigError, ValidationError) as exc:
        raise CheckpointError(f"{path}: the model config in its metadata is not valid here: {exc}") from exc
    generator = build_generator(config.model, registry)
    load_module(path, generator)
    return generator.eval().requires_grad_(False), config


def latents(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    """``n`` latents drawn on the CPU from ``seed``: the same on every machine and batch size."""
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate(
    generator: Generator, z: torch.Tensor, batch_size: int = 64, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """Yield ``uint8 [b, C, R, R]`` batches of the generator's final-scale output for latents ``z``."""
    generator = generator.to(device)
    for start in range(0, len(z), batch_size):
        yield to_uint8(generator(z[start : start + batch_size].to(device))[-1])
