"""``ganforge audit``: the privacy audit of a run trained with ``data.holdout`` (docs/privacy.md)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from .. import api
from ..inception import WEIGHTS_ENV
from .group import comma_list, console, main, plugin_option, results_table, stdout


@main.command()
@click.argument("run", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), help="another generator [RUN's EMA]")
@click.option("--fake", type=click.Path(file_okay=False, path_type=Path), help="or: a folder of generated images")
@click.option("-n", "count", type=click.IntRange(min=0), default=0, show_default=True, help="0 = as many as trained on")
@click.option("--metrics", "metric_names", default="", help="data_copying,near_copies,memorization [all three]")
@click.option("--space", "spaces", multiple=True, help="feature space, repeatable [pixels and inception]")
@click.option("--pairs", type=click.IntRange(min=1), default=16, show_default=True, help="closest pairs drawn")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="output folder [RUN/audit]")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="[OUT/audit.json]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--inception-weights",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"safetensors FID Inception weights [${WEIGHTS_ENV}, then the cache]",
)
@click.option("--no-cache", is_flag=True, help="recompute the training images' features")
@plugin_option
def audit(
    run,
    weights,
    fake,
    count,
    metric_names,
    spaces,
    pairs,
    out,
    json_out,
    seed,
    device,
    inception_weights,
    no_cache,
    plugin_modules,
) -> None:
    """Privacy audit of RUN: its generator against its training and held-out images (docs/privacy.md)."""
    if weights is not None and fake is not None:
        raise click.UsageError("give at most one of --weights and --fake")
    found = api.audit(
        run,
        weights=weights,
        fake=fake,
        n=count,
        metrics=comma_list(metric_names),
        spaces=spaces,
        pairs=pairs,
        out=out,
        seed=seed,
        device=device,
        inception_weights=inception_weights,
        cache=not no_cache,
        plugins=plugin_modules,
    )
    record = found.record
    title = (
        f"privacy audit: {record['n_fake']} generated vs {record['n_real']} training, {record['n_holdout']} held out"
    )
    stdout().print(results_table(found.results, title))
    path = json_out or found.out / "audit.json"
    found.save(path)
    console.print(f"figures: {path}; closest pairs: {', '.join(str(p) for p in found.pairs)}")
    if found.flagged:
        flagged = escape(", ".join(found.flagged))
        console.print(f"[red]flagged[/]: {flagged}: look at the pairs (docs/privacy.md says how to read them)")
    else:
        console.print("no metric flagged copying; a passing audit is not a privacy guarantee (docs/privacy.md)")
