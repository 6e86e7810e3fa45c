"""``ganforge classify``: multi-label classifiers for latent class optimisation and train-on-synthetic."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..config import load_config
from ..plugins import load_registry
from .group import console, main, stdout


@main.group()
def classify() -> None:
    """Multi-label classifiers (for latent class optimisation and train-on-synthetic evaluation)."""


@classify.command("train")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="output directory [runs/<name>]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="override train.device")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key")
def classify_train(config_path, out, device, overrides) -> None:
    """Train the classifier CONFIG describes on its labelled dataset; report held-out AUROC per class."""
    from ..checkpoint import atomic_write
    from ..classification import auroc_record, dumps, mean_auroc, save_classifier, train_on_dataset
    from ..config import ClassifierConfig
    from ..training import select_device

    config, registry = load_config(config_path, load_registry, overrides, ClassifierConfig)
    out = out or Path("runs") / config.name
    run = train_on_dataset(config, registry, select_device(device or config.train.device))
    out.mkdir(parents=True, exist_ok=True)
    save_classifier(out / "classifier.safetensors", run, config, registry)
    atomic_write(
        out / "auroc.json", dumps({"n_train": run.n_train, "n_test": run.n_test, **auroc_record(run.test_auroc)})
    )
    table = Table(title=f"held-out AUROC ({run.n_test} test / {run.n_train} training images)")
    table.add_column("finding")
    table.add_column("AUROC", justify="right")
    for name, value in run.test_auroc.items():
        table.add_row(name, f"{value:.3f}")
    table.add_row("[bold]mean[/]", f"[bold]{mean_auroc(run.test_auroc):.3f}[/]")
    stdout().print(table)
    console.print(f"wrote {out / 'classifier.safetensors'} (label names in its metadata) and {out / 'auroc.json'}")
