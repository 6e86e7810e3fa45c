"""SIGINT/SIGTERM during training: finish the step, write a checkpoint, then stop.

Pre-empted GPU jobs get SIGTERM (and SIGKILL a little later); people press Ctrl-C. While a
:class:`GracefulStop` is active the first signal only sets a flag that the training loop reads
after each step, so no step and no checkpoint is cut in half. A second signal aborts at once, and
so does the first one inside :meth:`GracefulStop.immediately` (work that may be lost, such as the
evaluation after the final checkpoint).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from .errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """A context manager that turns SIGINT/SIGTERM into a request the caller polls with :attr:`signum`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._immediate = False
        self._previous: dict[int, Any] = {}  # what signal.signal returned: a handler, SIG_DFL or None

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None or self._immediate:
            self.signum = self.signum or signum
            raise Interrupted(signum)
        self.signum = signum

    @contextmanager
    def immediately(self) -> Iterator[None]:
        """Inside this block a signal aborts at once (raising :class:`Interrupted`)."""
        if self.signum is not None:
            raise Interrupted(self.signum)
        self._immediate = True
        try:
            yield
        finally:
            self._immediate = False


PARENT_ENV = "GANFORGE_PARENT_PID"
"""Set by ``ganforge sweep`` for its rows: the PID whose end must end the row too."""


def stop_with_parent(poll_seconds: float = 0.5) -> None:
    """When ``$GANFORGE_PARENT_PID`` is set, SIGTERM this process once that parent is gone.

    A sweep's rows run in their own session (so one Ctrl-C is passed on once, not twice), so they
    would outlive a sweep killed with SIGKILL and train beside the rerun's copy of the row. A
    daemon thread watches the parent; SIGTERM makes the row write a checkpoint and stop as usual.
    """
    raw = os.environ.pop(PARENT_ENV, "")  # this process's parent only: not inherited by torchrun's ranks
    if not raw.isdigit():
        return
    parent = int(raw)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()
