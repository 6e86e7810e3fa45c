"""Where ganforge caches what it can compute again: feature statistics, decoded datasets, FID weights.

Decoded datasets (``datasets/*.npy``) and feature sets (``features/*.safetensors``) are keyed by
their content, so an edited dataset leaves its old array behind; at 1024² every touched file cost
another full copy. The cache therefore keeps at most ``$GANFORGE_CACHE_LIMIT`` bytes of them
(default :data:`DEFAULT_LIMIT`) and removes the least recently used first, whenever it writes a
new entry (never the one just written or read). Each use refreshes an entry's modification time:
access times are unreliable (``noatime`` mounts). The FID Inception weights are not counted and
never removed: offline they cannot be fetched again. ``ganforge cache list|prune`` shows and trims.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "GANFORGE_CACHE"
LIMIT_ENV = "GANFORGE_CACHE_LIMIT"
DEFAULT_LIMIT = "50G"
KINDS = {"datasets": "*.npy", "features": "*.safetensors"}  # what may be removed and computed again


def cache_root() -> Path:
    """``$GANFORGE_CACHE``, or ``~/.cache/ganforge``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "ganforge"))


@dataclass(frozen=True)
class Entry:
    """One cached file that ganforge can compute again."""

    path: Path
    kind: str
    size: int
    last_used: float  # seconds since the epoch


def limit() -> int:
    """The cache's size cap in bytes: ``$GANFORGE_CACHE_LIMIT`` (e.g. ``20G``) or :data:`DEFAULT_LIMIT`."""
    from .memory import parse_size

    return parse_size(os.environ.get(LIMIT_ENV, DEFAULT_LIMIT), f"${LIMIT_ENV}")


def entries(root: Path | None = None) -> list[Entry]:
    """The removable entries, least recently used first."""
    root = root or cache_root()
    found = []
    for kind, pattern in KINDS.items():
        for path in (root / kind).glob(pattern) if (root / kind).is_dir() else ():
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed by another process meanwhile
                continue
            found.append(Entry(path, kind, stat.st_size, stat.st_mtime))
    return sorted(found, key=lambda entry: entry.last_used)


def used(path: Path) -> None:
    """Mark ``path`` as just used (so that pruning removes others first)."""
    try:
        os.utime(path)
    except OSError:  # a read-only cache is still a cache
        pass


def prune(max_bytes: int, keep: Iterable[Path] = (), root: Path | None = None) -> list[Entry]:
    """Remove least recently used entries until the rest fit in ``max_bytes``; never those in ``keep``.

    Removing an array another process has memory-mapped is safe: the data stays until it is closed.
    """
    kept = {Path(p).resolve() for p in keep}
    present = entries(root)
    total, removed = sum(entry.size for entry in present), []
    for entry in present:
        if total <= max_bytes:
            break
        if entry.path.resolve() in kept:
            continue
        entry.path.unlink(missing_ok=True)
        total -= entry.size
        removed.append(entry)
    return removed


def store(path: Path) -> list[Entry]:
    """After writing (or reading) the entry ``path``: mark it used and keep the cache within :func:`limit`."""
    used(path)
    return prune(limit(), keep=[path], root=path.parent.parent)
