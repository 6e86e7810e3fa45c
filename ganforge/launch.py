"""The ``ganforge`` command's entry point: SIGINT and SIGTERM are handled from its first line.

Loading the command (PyTorch, pydantic, rich) takes seconds. Without this, Ctrl-C in that time
printed a ``KeyboardInterrupt`` traceback and SIGTERM ended the process without a word. Once the
command runs, :class:`ganforge.cli.GanforgeGroup` and the training loop's own handlers take over.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from .errors import Interrupted


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        from .cli import main as command

        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as the command expects it
        command()
    except (Interrupted, KeyboardInterrupt) as exc:  # before the command's own handling began
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        sys.stderr.write(f"error: interrupted by {signal.Signals(signum).name} while starting; nothing was done\n")
        sys.exit(128 + signum)
