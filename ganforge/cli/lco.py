"""``ganforge lco``: labelled samples by latent class optimisation (docs/pggan.md)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click
from rich.table import Table

from .. import api
from ..lco import LCOSettings, summary_rows
from .group import console, generator_options, main, memory_option, plugin_option, stdout

_OPTIONS = [
    click.option(
        "--classifier",
        "classifiers",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="latent class optimisation: a classifier .safetensors from `ganforge classify train`; "
        "repeat it for an ensemble (every member must agree)",
    ),
    click.option("--labels", help="with --classifier: the findings wanted, e.g. 'Effusion|Nodule' or 'No Finding'"),
    click.option("--archive", help="with --classifier: COMBINATION=COUNT,… e.g. 'Effusion=50,Nodule|Effusion=20'"),
    click.option(
        "--judge",
        type=click.Path(dir_okay=False, path_type=Path),
        help="an independent classifier (not optimised against) that scores the accepted images",
    ),
    click.option(
        "--ground-truth",
        "analyser_name",
        help="an analyser that measures the findings from the images, e.g. 'phantom' for phantom-trained generators",
    ),
    click.option(
        "--views",
        type=click.IntRange(min=1),
        default=LCOSettings.views,
        show_default=True,
        help="random shifts/zooms/noise of each image in the loss and the acceptance test (1 = the image only)",
    ),
    click.option(
        "--pool",
        type=click.IntRange(min=1),
        default=LCOSettings.pool,
        show_default=True,
        help="latents drawn per optimised one: those the classifiers already rate best start (1 = random starts)",
    ),
    click.option(
        "--max-tries",
        type=click.IntRange(min=1),
        help="latents to optimise per combination at most  [default: 20 × count]",
    ),
    click.option(
        "--threshold",
        type=click.FloatRange(0, 1),
        default=LCOSettings.threshold,
        show_default=True,
        help="accept when requested findings ≥ it and the others < it",
    ),
]


def lco_options(command):
    """The options of latent class optimisation (shared by ``lco`` and the deprecated ``sample --classifier``)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


@main.command()
@generator_options("folder for the archive")
@click.option(
    "--steps",
    "lco_steps",
    type=click.IntRange(min=1),
    default=LCOSettings.steps,
    show_default=True,
    help="Adam steps per latent",
)
@click.option("--lr", "lco_lr", type=click.FloatRange(min=0, min_open=True), default=LCOSettings.lr, show_default=True)
@lco_options
@memory_option
@plugin_option
def lco(
    weights,
    count,
    out,
    seed,
    batch_size,
    grid,
    device,
    lco_steps,
    lco_lr,
    classifiers,
    labels,
    archive,
    judge,
    analyser_name,
    views,
    pool,
    max_tries,
    threshold,
    max_memory,
    plugin_modules,
) -> None:
    """Labelled samples of a generator by latent class optimisation: PNGs, labels.csv (an image_folder
    dataset) and summary.json in OUT."""
    settings = LCOSettings(
        steps=lco_steps,
        lr=lco_lr,
        threshold=threshold,
        batch_size=batch_size,
        max_tries=max_tries or 0,
        views=views,
        pool=pool,
    )
    request = {"labels": labels, "archive": archive, "n": count, "judge": judge, "ground_truth": analyser_name}
    if not classifiers:
        raise click.UsageError("give at least one --classifier")
    if bool(labels) == bool(archive):
        raise click.UsageError("give exactly one of --labels and --archive")
    with _lco_progress(settings, api.lco_plan(labels, archive, count)) as on_step:
        made = api.lco(
            weights,
            classifiers,
            out,
            seed=seed,
            settings=settings,
            grid=grid,
            device=device,
            max_memory=max_memory,
            plugins=plugin_modules,
            on_step=on_step,
            console=console,
            **request,
        )
    _print_summary(made)
    console.print(f"wrote {made.count} labelled images to {out / 'images'}/, {made.labels_csv} and {made.summary}")


def _print_summary(made: api.LCOArchive) -> None:
    """Per combination: asked, accepted, tried, steps; then each combination's warning."""
    table = Table(title=f"latent class optimisation ({', '.join(made.classifiers)})")
    headers, rows = summary_rows(made.records)
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*row)
    stdout().print(table)
    for record in made.records:
        if "warning" in record:
            console.print(f"[yellow]{record['labels']}: {record['warning']}[/]")


@contextmanager
def _lco_progress(settings, plan):
    """A progress bar per combination, and up front how long the request may take."""
    import math

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, int] = {}
    elapsed: list[float] = []  # seconds after the first two optimisation steps
    columns = TextColumn("{task.description}"), BarColumn(), TextColumn("step {task.completed}"), TimeElapsedColumn()
    with Progress(*columns, console=console, transient=True) as progress:

        def on_step(combo: str, n: int, result) -> None:
            if len(elapsed) < 2:  # say up front how long it may take; a batch's first step also scores its pool
                elapsed.append(result.seconds)
                if len(elapsed) == 2:  # in batches of what fitted the memory budget, not of what was asked
                    batches = sum(math.ceil(settings.tries(count) / result.batch_size) for _, count in plan)
                    first, step = elapsed[0], elapsed[1] - elapsed[0]
                    minutes = batches * (first + (settings.steps - 1) * step) / 60
                    colour = "yellow" if minutes > 10 else "dim"
                    progress.console.print(
                        f"[{colour}]one optimisation step takes {step:.2f} s: this request stops after at most "
                        f"{batches * settings.steps} steps (~{minutes:.0f} min), "
                        "earlier once every image is accepted[/]"
                    )
            if combo not in tasks:
                steps = math.ceil(settings.tries(n) / result.batch_size) * settings.steps
                tasks[combo] = progress.add_task(combo, total=steps)
            accepted = len(result.steps_used)
            text = f"{combo}: {accepted}/{n} accepted, {result.tried} tried"
            progress.update(tasks[combo], advance=1, description=text)

        yield on_step
