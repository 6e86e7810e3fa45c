"""One sweep row in a process of its own: :func:`ganforge.api.train` with the row's settings.

``python -m ganforge.sweep.row SETTINGS_JSON``. A process per row keeps rows apart (memory, CUDA
state, a crash) and lets the sweep stop one with a signal: SIGINT or SIGTERM ends the current
step, writes a checkpoint and exits with 128 + the signal, as ``ganforge build`` does. A row also
stops when its sweep is gone (:func:`~ganforge.interrupts.stop_with_parent`). Errors are one
``error: …`` line, which the sweep reports as the row's message.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict, dataclass
from typing import Any

from .. import jsontext


@dataclass(frozen=True)
class RowSettings:
    """What one row trains: the base experiment with overrides, into ``out`` (resumed when it holds a run)."""

    config: str
    out: str
    overrides: list[str]
    steps: int | None
    resume: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RowSettings:
        data: dict[str, Any] = jsontext.loads(text)
        return cls(**data)


def _interrupt(signum: int, frame: object) -> None:
    from ..errors import Interrupted

    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    """Train the row; its exit code (0, 1 stopped by divergence, 2 a user error, 128 + signal)."""
    from .. import api
    from ..errors import GanforgeError, Interrupted
    from ..interrupts import stop_with_parent

    row = RowSettings.from_json((argv if argv is not None else sys.argv[1:])[0])
    signal.signal(signal.SIGTERM, _interrupt)  # before training starts too (loading the data can take minutes)
    stop_with_parent()
    try:
        result = api.train(
            row.config,
            row.out,
            overrides=row.overrides,
            steps=row.steps,
            resume=row.out if row.resume else None,
            overwrite=not row.resume,
        )
    except GanforgeError as exc:
        print(f"error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return exc.exit_code
    except (Interrupted, KeyboardInterrupt) as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT
        print(f"interrupted ({exc}); the sweep resumes this row next time", file=sys.stderr)
        return code
    except OSError as exc:
        print(f"error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"done: step {result.step}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
