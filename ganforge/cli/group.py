"""The ``ganforge`` command group: one-line errors and exit codes, and options several commands share."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import GanforgeError, Interrupted, MissingPlugins, NothingAccepted, ResumeRefused, RunExists

if TYPE_CHECKING:
    from ..evaluation import MetricResult

console = Console(stderr=True)


def stdout() -> Console:
    """Tables go to stdout, at least 120 columns wide even when piped."""
    out = Console()
    return out if out.is_terminal else Console(width=max(out.width, 120))


DEBUG_ENV = "GANFORGE_DEBUG"


def _one_line(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code of an error a user can act on (anything else is a bug: traceback)."""
    if isinstance(exc, RunExists):  # the library's advice, in options
        where = exc.path
        return (
            f"--out {where}: already holds a run; continue it with --resume {where}, or replace it with --overwrite",
            2,
        )
    if isinstance(exc, ResumeRefused):
        where, backup = exc.path, exc.checkpoints
        advice = f"restore a checkpoint from a backup into {backup}, or start again with --out {where} --overwrite"
        return f"--resume {where}: {exc.reason}; nothing was changed; {advice}", exc.exit_code
    if isinstance(exc, MissingPlugins):
        missing = ", ".join(exc.missing)
        advice = "install them, or pass --plugin MODULE for a module you trust"
        return f"{exc.problem}; it was written with plugin(s) not loaded here: {missing} ({advice})", exc.exit_code
    if isinstance(exc, NothingAccepted):
        options = "try more --steps, a higher --max-tries or --pool, a lower --threshold, fewer --views"
        return f"no latent was accepted ({exc.tried}); {options}, {exc.BETTER}", exc.exit_code
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


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A size option checked as it is parsed, so a bad one is named as the option, before any work."""
    from ..memory import parse_size

    if value is not None:
        parse_size(value, f"--{param.name.replace('_', '-')}" if param.name else "size")
    return value


def memory_option(command):
    return click.option(
        "--max-memory",
        metavar="SIZE",
        callback=_size,
        help="memory this command may plan for, e.g. 8G  [default: 80 % of what is available]",
    )(command)


def plugin_option(command):
    return click.option(
        "--plugin",
        "plugin_modules",
        multiple=True,
        metavar="MODULE",
        help="also load this plugin module (weights files never import modules themselves)",
    )(command)


def write_json(path: Path, record: object) -> None:
    """``record`` as indented JSON at ``path``, written atomically (what ``--json`` options write)."""
    import json

    from ..checkpoint import atomic_write

    atomic_write(path, json.dumps(record, indent=2) + "\n")


def comma_list(text: str) -> list[str]:
    """``"fid, kid"`` → ``["fid", "kid"]`` (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def deprecated(old: str, new: str) -> None:
    """One line saying that ``old`` goes in the next release, and what replaces it."""
    console.print(
        f"[yellow]warning[/]: `ganforge {old}` is deprecated (gone in the next release); use `ganforge {new}`"
    )


def results_table(results: Sequence[MetricResult], title: str) -> Table:
    """Metric figures with their protocols, a section per metric."""
    table = Table(title=title)
    for column in ("metric", "figure", "value", "protocol"):
        table.add_column(column)
    for result in results:
        for n, (key, value) in enumerate(result.values.items()):  # name and protocol once per metric
            name, protocol = (escape(result.name), escape(result.protocol)) if n == 0 else ("", "")
            table.add_row(name, key, f"{value:.6g}", protocol)  # escaped: "near_copies[space=pixels]" is no markup
        table.add_section()
    return table


def generator_options(what: str):
    """The options of every command that writes images of a generator: ``--weights``, ``-n``, ``--out``,
    ``--seed``, ``--batch-size``, ``--grid``, ``--device`` (``what`` says what ``--out`` receives)."""
    options = [
        click.option(
            "--weights", required=True, type=click.Path(dir_okay=False, path_type=Path), help="generator .safetensors"
        ),
        click.option("-n", "count", type=click.IntRange(min=1), default=16, show_default=True, help="images"),
        click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help=what),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True),
        click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), help="also write a grid PNG here"),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True),
    ]

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply
