"""``ganforge cache``: the cache of decoded datasets and feature sets."""

from __future__ import annotations

import click
from rich.table import Table

from .group import console, main, stdout


@main.group()
def cache() -> None:
    """The cache of decoded datasets and feature sets ($GANFORGE_CACHE; capped by $GANFORGE_CACHE_LIMIT)."""


@cache.command("list")
def cache_list() -> None:
    """Every removable entry, least recently used first, with the total and the cap."""
    import datetime

    from ..cache import cache_root, entries, limit
    from ..memory import size_text

    found = entries()
    table = Table(title=f"{cache_root()}: {size_text(sum(e.size for e in found))} of {size_text(limit())} allowed")
    for column in ("kind", "file", "size", "last used"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for entry in found:
        when = datetime.datetime.fromtimestamp(entry.last_used).strftime("%Y-%m-%d %H:%M")
        table.add_row(entry.kind, entry.path.name, size_text(entry.size), when)
    stdout().print(table)


@cache.command("prune")
@click.option("--max-size", metavar="SIZE", help="keep at most this much, e.g. 10G (0: empty it)  [default: the cap]")
def cache_prune(max_size) -> None:
    """Remove the least recently used entries until the cache fits (they are computed again when needed)."""
    from ..cache import limit, prune
    from ..memory import parse_size, size_text

    removed = prune(parse_size(max_size, "--max-size") if max_size is not None else limit())
    freed = size_text(sum(entry.size for entry in removed))
    console.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} ({freed})")
