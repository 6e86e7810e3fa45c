"""``ganforge reader-study create | add-reader | serve | report``: thin commands over this package."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import GanforgeError, Interrupted

console = Console(stderr=True)
STUDY = click.Path(file_okay=False, path_type=Path)


@click.group("reader-study")
def reader_study() -> None:
    """Visual Turing tests: readers tell real from generated images in a browser (docs/reader-study.md)."""


@reader_study.command()
@click.option("--real", "real_dir", required=True, type=STUDY, help="folder of real images (labels.csv optional)")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), help="generator weights, or…")
@click.option("--fake", "fake_dir", type=STUDY, help="…a folder of generated images (e.g. LCO output)")
@click.option("-n", "count", required=True, type=click.IntRange(min=2), help="images in the study")
@click.option("--out", required=True, type=STUDY, help="the study folder to create")
@click.option("--seed", type=int, default=0, show_default=True, help="draws images, latents and the order")
@click.option(
    "--generated-fraction", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="share generated"
)
@click.option("--resolution", type=click.IntRange(min=8), help="image side [the generator's, or the --fake images']")
@click.option("--title", default="Real or generated?", show_default=True, help="shown to readers")
@click.option("--ask-finding", is_flag=True, help="also ask readers for the main finding (needs labels)")
@click.option("--allow-changes", is_flag=True, help="let readers go back and change answers")
@click.option("--confidence-levels", type=click.IntRange(2, 9), default=5, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--plugin", "plugin_modules", multiple=True, metavar="MODULE", help="also load this plugin module")
def create(
    real_dir,
    weights,
    fake_dir,
    count,
    out,
    seed,
    generated_fraction,
    resolution,
    title,
    ask_finding,
    allow_changes,
    confidence_levels,
    device,
    plugin_modules,
) -> None:
    """Draw a shuffled set of real and generated images, encoded identically, with the key kept apart."""
    from ..plugins import load_registry
    from ..training import select_device
    from .sources import create_from_sources
    from .study import Settings, source_counts

    if (weights is None) == (fake_dir is None):
        raise click.UsageError("give either --weights (a generator) or --fake (a folder of generated images)")
    settings = Settings(allow_changes=allow_changes, ask_finding=ask_finding, confidence_levels=confidence_levels)
    study = create_from_sources(
        out,
        real_dir,
        count,
        weights=weights,
        fake_dir=fake_dir,
        generated_fraction=generated_fraction,
        resolution=resolution,
        seed=seed,
        title=title,
        settings=settings,
        registry=load_registry(plugin_modules),
        device=select_device(device),
    )
    counts = source_counts(study.key())
    console.print(
        f"created {out}: {counts['real']} real + {counts['generated']} generated "
        f"{study.manifest.resolution}×{study.manifest.resolution} images (key in {out / 'key.json'}: keep it from "
        f"readers)\nnext: ganforge reader-study add-reader {out} NAME"
    )


@reader_study.command("add-reader")
@click.argument("study_dir", metavar="STUDY", type=STUDY)
@click.argument("name")
def add_reader(study_dir, name) -> None:
    """Register a reader; prints their session code (stored hashed: it cannot be shown again)."""
    from .store import Store
    from .study import Study

    study = Study.open(study_dir, verify_images=False)
    code = Store(study.answers_path).add_reader(name, study.item_ids, study.manifest.seed)
    click.echo(code)
    console.print(f"reader {escape(name)!r} added; give them this code and the address of `reader-study serve`")


@reader_study.command()
@click.argument("study_dir", metavar="STUDY", type=STUDY)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0: every one)")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--ssl-certfile", type=click.Path(dir_okay=False, path_type=Path), help="serve HTTPS with this cert")
@click.option("--ssl-keyfile", type=click.Path(dir_okay=False, path_type=Path), help="…and this key")
def serve(study_dir, host, port, ssl_certfile, ssl_keyfile) -> None:
    """Serve the study to readers until Ctrl-C (answers are saved as they are given)."""
    import uvicorn

    from .server import check_address, create_app, is_loopback
    from .store import Store
    from .study import Study

    study = Study.open(study_dir)
    if not Store(study.answers_path).readers():
        raise GanforgeError(f"{study_dir}: no readers yet; add one: ganforge reader-study add-reader {study_dir} NAME")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    check_address(host, port)
    if not is_loopback(host):
        console.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach it and has a code can read"
            + ("" if ssl_certfile else "; without --ssl-certfile, codes and images travel unencrypted")
        )
    scheme = "https" if ssl_certfile else "http"
    console.print(f"serving {study_dir} at {scheme}://{host}:{port}/ (Ctrl-C stops)")
    app = create_app(study)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    except (Interrupted, KeyboardInterrupt):  # uvicorn shut down cleanly, then re-raised the signal
        pass
    console.print("stopped; every answer given is saved")


@reader_study.command()
@click.argument("study_dir", metavar="STUDY", type=STUDY)
@click.option("--out", type=STUDY, help="folder for the report [STUDY/report]")
def report(study_dir, out) -> None:
    """Accuracy, sensitivity/specificity, binomial test, AUC and κ per reader and pooled: JSON, Markdown, PNG."""
    from .report import write_report
    from .study import Study

    report, folder = write_report(Study.open(study_dir, verify_images=False), out)
    table = Table(
        title=f"{report['study']}: {report['images']['real']} real, {report['images']['generated']} generated"
    )
    for column in ("reader", "reads", "accuracy", "sensitivity", "specificity", "gen. called real", "p", "AUC"):
        table.add_column(column, justify="left" if column == "reader" else "right")
    for row in [*report["readers"], {"reader": "pooled", **report["pooled"]}]:
        cells = [row[k] for k in ("accuracy", "sensitivity", "specificity", "generated_called_real")]
        table.add_row(
            escape(row["reader"]),
            str(row["reads"]),
            *("–" if v is None else f"{v:.3f}" for v in cells),
            "–" if row["binomial_p"] is None else f"{row['binomial_p']:.2g}",
            "–" if row["auc"] is None else f"{row['auc']:.3f}",
        )
    Console(width=120).print(table)
    fleiss = report["agreement"]["fleiss"]
    if fleiss and fleiss["kappa"] is not None:
        console.print(f"Fleiss' κ {fleiss['kappa']:.3f} over {fleiss['images']} images")
    console.print(f"wrote report.json, report.md, answers.csv and report.png to {folder}/")
