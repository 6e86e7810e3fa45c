"""The sweep file: a base experiment and named rows of ``--set`` overrides, or a grid of them.

.. code-block:: toml

    base = "samgan.toml"                 # relative to the sweep file

    [rows.SAMGAN6]                       # one named row per configuration
    set = ["optim.lr=0.0003"]
    paper = { FID = 243.0, MR = 0.50, MG = 0.47 }   # published figures shown beside ours

    [grid]                               # every combination, for each row (or of the base alone)
    "optim.lr" = [0.0001, 0.0003]
    "model.generator.attention" = ["self_attention", "cbam"]

A row is exactly ``ganforge build BASE --set …`` with its overrides, then the sweep's own ``--set``.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..config import parse_override, read_toml, validated
from ..errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]*$")


class RowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: list[str] = Field(default_factory=list, description="--set overrides of the base, in order")
    paper: dict[str, Any] = Field(default_factory=dict, description="published columns and figures of this row")


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str = Field(description="the base experiment config, relative to the sweep file")
    rows: dict[str, RowSpec] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key → values; all combinations")


@dataclass
class Row:
    name: str
    overrides: list[str]
    paper: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sweep:
    path: Path
    base: Path
    rows: list[Row]

    def select(self, only: list[str]) -> list[Row]:
        """The rows named in ``only`` (all when empty), in the file's order; unknown names are an error."""
        if not only:
            return self.rows
        names = [row.name for row in self.rows]
        unknown = [name for name in only if name not in names]
        if unknown:
            raise ConfigError(f"only: no row {', '.join(map(repr, unknown))}; rows are {', '.join(names)}")
        return [row for row in self.rows if row.name in only]


def _value(value: Any, quoted: bool = False) -> str:
    """A TOML value on one line as ``--set`` takes it (a top-level string bare: ``x`` for ``"x"``)."""
    if isinstance(value, str):
        return json.dumps(value) if quoted else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v, True) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_value(v, True)}" for k, v in value.items()) + " }"
    return repr(value)


def _grid_points(grid: dict[str, list[Any]]) -> list[tuple[str, list[str]]]:
    """(suffix, overrides) of every combination: ``lr=0.0001,attention=cbam``-style names."""
    if not grid:
        return [("", [])]
    keys = list(grid)
    points = []
    for values in itertools.product(*(grid[key] for key in keys)):
        overrides = [f"{key}={_value(value)}" for key, value in zip(keys, values)]
        suffix = ",".join(f"{key.split('.')[-1]}={_value(value)}" for key, value in zip(keys, values))
        points.append((re.sub(r"[^A-Za-z0-9._=,+-]", "", suffix), overrides))
    return points


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file: every row name usable as a directory, every override parseable."""
    path = Path(path)
    spec = validated(SweepSpec, read_toml(path, "sweep file"), str(path))  # as every config: ganforge.config
    base = (path.parent / spec.base).resolve()
    if not base.is_file():
        raise ConfigError(f"base config {base} not found", file=str(path), key="base")
    for key, values in spec.grid.items():
        if not values:
            raise ConfigError("a grid key needs at least one value", file=str(path), key=f"grid.{key}")
    rows: list[Row] = []
    for row_name, row in (spec.rows or {"": RowSpec()}).items():
        for suffix, overrides in _grid_points(spec.grid):
            name = ",".join(part for part in (row_name, suffix) if part) or "base"
            if not NAME.match(name):
                raise ConfigError(
                    "a row name is a directory name: letters, digits, . _ - = , +", file=str(path), key=f"rows.{name}"
                )
            for item in [*row.set, *overrides]:
                try:
                    parse_override(item)
                except ConfigError as exc:
                    raise ConfigError(str(exc), file=str(path), key=f"rows.{name}.set") from exc
            if name in [r.name for r in rows]:
                raise ConfigError(f"two rows are both named {name!r}", file=str(path), key="grid")
            rows.append(Row(name, [*row.set, *overrides], dict(row.paper)))
    return Sweep(path, base, rows)
