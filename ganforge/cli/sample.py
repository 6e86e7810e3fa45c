"""``ganforge sample``: PNGs from a weights file, or labelled ones by latent class optimisation."""

from __future__ import annotations

import click

from .. import api
from ..lco import LCOSettings
from .group import console, deprecated, generator_options, main, memory_option, plugin_option
from .lco import lco, lco_options


@main.command()
@generator_options("folder for the PNGs")
@click.option(
    "--lco-steps",
    "lco_steps",
    type=click.IntRange(min=1),
    default=LCOSettings.steps,
    hidden=True,
)
@click.option("--lco-lr", "lco_lr", type=click.FloatRange(min=0, min_open=True), default=LCOSettings.lr, hidden=True)
@lco_options
@memory_option
@plugin_option
def sample(
    weights,
    count,
    out,
    seed,
    batch_size,
    grid,
    device,
    classifiers,
    labels,
    archive,
    judge,
    analyser_name,
    lco_steps,
    lco_lr,
    views,
    pool,
    max_tries,
    threshold,
    max_memory,
    plugin_modules,
) -> None:
    """Write N images from a generator weights file (same seed, same bytes). (With --classifier: deprecated,
    see `ganforge lco`.)

    The file is loaded as untrusted data: no module it names is imported (pass --plugin for those you trust).
    """
    if not (classifiers or labels or archive or judge or analyser_name):
        done = api.sample(
            weights,
            count,
            out,
            seed=seed,
            batch_size=batch_size,
            grid=grid,
            device=device,
            max_memory=max_memory,
            plugins=plugin_modules,
            console=console,
        )
        console.print(f"wrote {done.count} {done.resolution}×{done.resolution} PNGs to {done.out}/")
        return
    deprecated("sample --classifier …", "lco --weights W --classifier C …")
    ctx = click.get_current_context()
    ctx.invoke(lco, **ctx.params)
