"""SIGINT/SIGTERM during training: finish the step, write a checkpoint, then stop.

Pre-empted GPU jobs get SIGTERM (and SIGKILL a little later); people press Ctrl-C. While a
:class:`GracefulStop` is active the first signal only sets a flag that the training loop reads
after each step, so no step and no checkpoint is cut in half. A second signal aborts at once, and
so does the first one inside :meth:`GracefulStop.immediately` (work that may be lost, such as the
evaluation after the final checkpoint).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """A context manager that turns SIGINT/SIGTERM into a request the caller polls with :attr:`signum`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._immediate = False
        self._previous: dict[int, object] = {}

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
