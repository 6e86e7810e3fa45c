"""Where ganforge caches what it can compute again: feature statistics, decoded datasets, FID weights."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GANFORGE_CACHE"


def cache_root() -> Path:
    """``$GANFORGE_CACHE``, or ``~/.cache/ganforge``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "ganforge"))
