"""``ganforge evaluate``: image metrics, the privacy audit (``--audit``), train-on-synthetic (``--tstr``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .. import api
from ..inception import WEIGHTS_ENV
from .group import console, main, memory_option, plugin_option, stdout


@main.command()
@click.option(
    "--weights", type=click.Path(dir_okay=False, path_type=Path), help="generator .safetensors to sample from"
)
@click.option("--fake", type=click.Path(file_okay=False, path_type=Path), help="or: a folder of generated images")
@click.option("--real", type=click.Path(path_type=Path), help="a config (its dataset) or a folder of images")
@click.option(
    "--audit",
    "audit_run",
    metavar="RUN",
    type=click.Path(file_okay=False, path_type=Path),
    help="privacy audit of RUN: its generator vs its training and held-out images (see docs/privacy.md)",
)
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="images per set (0 = the whole real set; with --audit, as many as the training images)",
)
@click.option(
    "--metrics", "metric_names", default="", help="comma-separated, e.g. fid,kid,ms_ssim [config's eval.metrics]"
)
@click.option(
    "--inception-weights",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"safetensors FID Inception weights [${WEIGHTS_ENV}, then the cache]",
)
@click.option("--resolution", type=int, help="image size when neither --weights nor a config gives one")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="write every figure here")
@click.option("--pairs", type=click.IntRange(min=1), default=16, show_default=True, help="--audit: pairs drawn")
@click.option("--space", "spaces", multiple=True, help="--audit: feature space, repeatable [pixels and inception]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="--audit: output folder [RUN/audit]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--no-cache", is_flag=True, help="recompute the real set's features")
@click.option(
    "--tstr",
    is_flag=True,
    help="train-on-synthetic/test-on-real: --real is a classifier config, "
    "--fake a labelled synthetic set (e.g. from `sample --archive`)",
)
@memory_option
@plugin_option
def evaluate(
    weights,
    fake,
    real,
    audit_run,
    count,
    metric_names,
    inception_weights,
    resolution,
    json_out,
    pairs,
    spaces,
    out,
    seed,
    device,
    no_cache,
    tstr,
    max_memory,
    plugin_modules,
) -> None:
    """Score generated images against real ones: FID, KID, precision/recall, MS-SSIM; or --tstr, or --audit."""
    import json

    if tstr:
        _evaluate_tstr(real, fake, json_out, device)
        return
    if (real is None) == (audit_run is None):
        raise click.UsageError("give exactly one of --real and --audit")
    if weights is not None and fake is not None or audit_run is None and weights is None and fake is None:
        raise click.UsageError("give exactly one of --weights and --fake (--audit RUN: at most one)")

    from ..checkpoint import atomic_write

    names = [name.strip() for name in metric_names.split(",") if name.strip()]
    if audit_run is not None:
        audit = api.audit(
            audit_run,
            weights=weights,
            fake=fake,
            n=count,
            metrics=names,
            spaces=spaces,
            pairs=pairs,
            out=out,
            seed=seed,
            device=device,
            inception_weights=inception_weights,
            cache=not no_cache,
            plugins=plugin_modules,
        )
        _print_audit(audit, json_out)
        return
    if real is not None and real.suffix != ".toml" and weights is None and resolution is None:
        raise click.UsageError("--real DIR needs --weights (or --resolution) to know the image size")
    done = api.evaluate(
        real,
        weights=weights,
        fake=fake,
        n=count,
        metrics=names,
        inception_weights=inception_weights,
        resolution=resolution,
        seed=seed,
        device=device,
        cache=not no_cache,
        max_memory=max_memory,
        plugins=plugin_modules,
    )
    side = f"{done.resolution}×{done.resolution}"
    stdout().print(results_table(done.results, f"{done.n_fake} generated vs {done.n_real} real, {side}"))
    cached = " (features from cache)" if done.record["real_features_cached"] else ""
    console.print(f"real: {done.record['real']}{cached}")
    if json_out is not None:
        atomic_write(json_out, json.dumps(done.record, indent=2) + "\n")


def results_table(results, title: str) -> Table:
    table = Table(title=title)
    for column in ("metric", "figure", "value", "protocol"):
        table.add_column(column)
    for result in results:
        for n, (key, value) in enumerate(result.values.items()):  # name and protocol once per metric
            name, protocol = (escape(result.name), escape(result.protocol)) if n == 0 else ("", "")
            table.add_row(name, key, f"{value:.6g}", protocol)  # escaped: "near_copies[space=pixels]" is no markup
        table.add_section()
    return table


def _print_audit(result, json_out: Path | None) -> None:
    """Print and save what the privacy audit found."""
    import json

    from ..checkpoint import atomic_write

    record = result.record
    title = (
        f"privacy audit: {record['n_fake']} generated vs {record['n_real']} training, {record['n_holdout']} held out"
    )
    stdout().print(results_table(result.results, title))
    path = json_out or result.out / "audit.json"
    atomic_write(path, json.dumps(record, indent=2) + "\n")
    console.print(f"figures: {path}; closest pairs: {', '.join(str(p) for p in result.pairs)}")
    if result.flagged:
        flagged = escape(", ".join(result.flagged))
        console.print(f"[red]flagged[/]: {flagged}: look at the pairs (docs/privacy.md says how to read them)")
    else:
        console.print("no metric flagged copying; a passing audit is not a privacy guarantee (docs/privacy.md)")


def _evaluate_tstr(config_path: Path, synthetic_dir: Path | None, json_out: Path | None, device: str) -> None:
    import json

    from ..checkpoint import atomic_write
    from ..classification import auroc_record, mean_auroc

    if synthetic_dir is None or config_path is None or config_path.suffix != ".toml":
        raise click.UsageError("--tstr needs --real CLASSIFIER_CONFIG.toml and --fake SYNTHETIC_DIR (with labels.csv)")
    done = api.tstr(config_path, synthetic_dir, device=device)
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
        atomic_write(json_out, json.dumps(record, indent=2) + "\n")
