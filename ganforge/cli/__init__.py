"""The ``ganforge`` command line: one module per command (group); each parses, calls :mod:`ganforge.api`
or the library, and prints."""

from __future__ import annotations

from ..reader_study.cli import reader_study
from . import (  # noqa: F401 (each registers its command)
    audit,
    build,
    cache,
    classify,
    data,
    evaluate,
    inception,
    lco,
    plugins,
    runs,
    sample,
    tstr,
)
from .group import DEBUG_ENV, GanforgeGroup, main

main.add_command(reader_study)

__all__ = ["DEBUG_ENV", "GanforgeGroup", "main"]
