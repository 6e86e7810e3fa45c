"""Progress bars on long work, only where someone watches: a terminal on stderr.

Under SLURM, nohup or CI a transient rich bar leaves blank lines in the log and nothing useful;
there the iterable is returned as it is (training prints its own plain lines instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import track

T = TypeVar("T")

_console = Console(stderr=True)


def progress(items: Iterable[T], description: str, total: float | None = None, show: bool = True) -> Iterator[T]:
    """``items``, with a transient bar on a terminal (``show=False``: never, e.g. on other ranks)."""
    if not (show and _console.is_terminal):
        yield from items
        return
    yield from track(items, description, total=total, console=_console, transient=True)
