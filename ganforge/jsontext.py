"""JSON that someone else wrote (weights metadata, run files, web requests).

``json.loads`` raises :class:`RecursionError` on text nested a few thousand levels deep, which
escapes every ``except ValueError`` around it as a traceback (or an HTTP 500). Here it is one
more kind of malformed text.
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes) -> Any:
    """``json.loads(text)``; nesting too deep to parse raises :class:`ValueError` like any other bad JSON."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
