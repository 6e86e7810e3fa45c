"""``ganforge phantom``: the offline phantom dataset as files."""

from __future__ import annotations

from pathlib import Path

import click

from ..plugins import load_registry
from .group import console, main


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "count", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--resolution", type=int, default=64, show_default=True, help="a power of two ≥ 8")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--prevalence", type=click.FloatRange(0, 1), default=0.25, show_default=True, help="probability of each finding"
)
@click.option(
    "--version",
    "version",
    type=click.Choice(["1", "2"]),
    default="2",
    show_default=True,
    help="2: varied like a real archive; 1: the schematic phantom of earlier figures",
)
def phantom(out, count, resolution, seed, prevalence, version) -> None:
    """Write the procedural chest-radiograph PHANTOM dataset as PNGs + a ChestX-ray14-style labels CSV."""
    from ..export import write_dataset

    if resolution < 8 or resolution & (resolution - 1):
        raise click.BadParameter(f"{resolution} is not a power of two ≥ 8", param_hint="--resolution")
    registry = load_registry()
    params = {"size": count, "seed": seed, "prevalence": prevalence, "version": int(version)}
    dataset = registry.build("dataset", "phantom", params, resolution=resolution, image_channels=1)
    labels = write_dataset(dataset, out, prefix="phantom")
    console.print(f"wrote {count} images ({dataset.description}) to {out / 'images'}/ and labels to {labels}")
