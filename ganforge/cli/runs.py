"""``ganforge sweep``, ``report``, ``plot``: many runs, and what they wrote."""

from __future__ import annotations

from pathlib import Path

import click

from .. import api
from ..errors import CheckpointError
from ..rundir import RunDir
from .group import comma_list, console, main


@main.command()
@click.argument("sweep_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--only", help="comma-separated row names (default: every row)")
@click.option("--steps", type=click.IntRange(min=0), help="total steps of every row (default: the config's)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="sweep directory [runs/<file stem>]")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="rows run at once")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a key in every row")
def sweep(sweep_file, only, steps, out, jobs, overrides) -> None:
    """Run every row of a sweep file as its own training process, then write results.md/.csv and plots.

    Finished rows are skipped and interrupted ones resume: run the same command again after any stop.
    """
    result = api.sweep(
        sweep_file, out, only=comma_list(only or ""), steps=steps, overrides=overrides, jobs=jobs, console=console
    )
    for row, message in result.failures.items():
        console.print(f"[red]{row} failed[/]: {message} (log: {result.out / 'logs' / row}.log)")
    console.print(
        f"results: {result.report[1]} and {result.report[0]}; plots: {', '.join(p.name for p in result.report[2:])}"
    )
    if result.failures:
        raise SystemExit(1)


@main.command()
@click.argument("directory", metavar="RUN_OR_SWEEP_DIR", type=click.Path(file_okay=False, path_type=Path))
def report(directory) -> None:
    """Write a sweep's results.md/.csv and plots, or a run's curves, again from its files."""
    from ..plots import plot_run
    from ..sweep import write_report
    from ..sweep.runner import STATE_FILE

    if (directory / STATE_FILE).is_file():
        written = write_report(directory)
    elif RunDir(directory).is_run():
        written = [plot_run(directory)]
    else:
        raise CheckpointError(f"{directory}: neither a sweep directory ({STATE_FILE}) nor a run directory")
    console.print("wrote " + ", ".join(str(path) for path in written))


@main.command()
@click.argument("run", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))
def plot(run) -> None:
    """Plot a run's losses, images/second and evaluated figures over steps (RUN/plots/curves.png)."""
    from ..plots import plot_run

    if not RunDir(run).is_run():
        raise CheckpointError(f"{run}: not a ganforge run directory")
    console.print(f"wrote {plot_run(run)}")
