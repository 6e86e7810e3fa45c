"""``ganforge build``: assemble and train (through torchrun for ``--nproc``), thin over :func:`ganforge.api.train`."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path

import click

from .. import api
from ..distributed import check_batches_split
from ..errors import GanforgeError, Interrupted
from ..interrupts import stop_with_parent
from .group import console, main, memory_option, stdout


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
    help="override train.precision (auto: fp32 or bf16, whichever is faster here, measured and cached)",
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
@memory_option
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
    if steps is not None and epochs is not None:
        raise click.UsageError("give --steps or --epochs, not both")
    if resume is not None and overwrite:
        raise click.UsageError("give --resume or --overwrite, not both")
    sets = _overrides(overrides, seed=seed, precision=precision, compile_=compile_, threads=threads)
    config, registry = api.load_experiment(config_path, sets, resume)
    if dry_run:
        _print_architecture(config, registry)
        return
    stop_with_parent()  # a row run by hand as a sweep's is stopped with its sweep
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        try:  # here, not in every rank after torchrun started
            check_batches_split(config, registry, nproc)
        except GanforgeError as exc:
            raise GanforgeError(f"--nproc {nproc}: {exc}") from exc
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
        where = out or resume or Path("runs") / config.name
        sys.exit(_interrupted(exc, config_path, where, sets, steps, epochs, no_eval, device))
    if os.environ.get("RANK", "0") == "0":
        console.print(
            f"[green]done[/]: step {result.step}; weights in {result.out}/ (generator_ema.safetensors for sampling)"
        )


def _overrides(sets, *, seed, precision, compile_, threads) -> list[str]:
    """``--set`` items, then the options that are shorthands for config keys."""
    items = list(sets) + ([f"seed={seed}"] if seed is not None else [])
    items += [f"train.precision={precision}"] if precision else []
    items += ["train.compile=true"] if compile_ else []
    return items + ([f"train.threads={threads}"] if threads else [])


def _print_architecture(config, registry) -> None:
    """``--dry-run``: the assembled networks' tables, nothing trained."""
    from ..assembly import build_gan
    from ..summary import architecture_tables

    for table in architecture_tables(build_gan(config.model, registry), config.model.latent_dim):
        stdout().print(table)


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
