"""``ganforge tstr``: train-on-synthetic / test-on-real, the task-based measure of a labelled synthetic set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from .. import api
from .group import main, stdout, write_json


@main.command()
@click.argument("classifier_config", metavar="CLASSIFIER_CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("synthetic", metavar="SYNTHETIC_DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="write every figure here")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def tstr(classifier_config, synthetic, json_out, device) -> None:
    """AUROC on held-out real images of classifiers trained on real, on SYNTHETIC_DIR (images/ and labels.csv,
    e.g. from `ganforge lco --archive`), and on both."""
    from ..classification import auroc_record, mean_auroc

    if classifier_config.suffix != ".toml":
        raise click.UsageError(f"{classifier_config}: CLASSIFIER_CONFIG is a classifier config (.toml)")
    done = api.tstr(classifier_config, synthetic, device=device)
    names = list(next(iter(done.auroc.values())))
    table = Table(title="train-on-synthetic / test-on-real: AUROC on held-out real images")
    for column in ("trained on", *names, "mean"):
        table.add_column(column, justify="left" if column == "trained on" else "right")
    for name, values in done.auroc.items():
        table.add_row(name, *(f"{values[n]:.3f}" for n in names), f"{mean_auroc(values):.3f}")
    stdout().print(table)
    if json_out is not None:
        record: dict[str, Any] = {name: auroc_record(values) for name, values in done.auroc.items()}
        record["synthetic_data"] = done.synthetic
        write_json(json_out, record)
