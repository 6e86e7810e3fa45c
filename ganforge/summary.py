"""The ``--dry-run`` architecture table: module, output shape, parameters, supplying plugin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from rich.table import Table
from torch import nn

from .assembly import GAN


@dataclass
class Row:
    module: str
    component: str
    plugin: str
    shapes: list[tuple[int, ...]]
    parameters: int


def _shape(output) -> tuple[int, ...]:
    if isinstance(output, (list, tuple)):
        return tuple(output[-1].shape)
    return tuple(output.shape)


def trace(network: nn.Module, *inputs: Any) -> tuple[list[Row], Any]:
    """Run ``network`` once and record every module a registered component supplied."""
    rows: dict[str, Row] = {}
    hooks = []
    for name, module in network.named_modules():
        component = getattr(module, "ganforge_component", None)
        if component is None or any(name.startswith(f"{outer}.") for outer in rows):
            continue  # untagged glue, or a part of a component already listed (its pixel norms)
        rows[name] = Row(
            name,
            f"{component.kind}:{component.name}",
            component.plugin,
            [],
            sum(p.numel() for p in module.parameters()),
        )

        def hook(mod, args, output, name=name):
            rows[name].shapes.append(_shape(output))

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            output = network(*inputs)
    finally:
        for handle in hooks:
            handle.remove()
    return list(rows.values()), output


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _shapes_text(shapes: list[tuple[int, ...]]) -> str:
    unique = list(dict.fromkeys(shapes))
    text = lambda s: "×".join(map(str, s[1:])) or "scalar"  # noqa: E731 - batch dimension dropped
    if len(unique) <= 2:
        return ", ".join(text(s) for s in unique)
    return f"{text(unique[0])} … {text(unique[-1])} ({len(unique)} scales)"


def architecture_tables(gan: GAN, latent_dim: int, batch: int = 2) -> list[Table]:
    """One rich table per network, with totals that match ``count``."""
    gan.set_growth(max((int(r) for r in gan.generator.stages), default=4), 1.0)  # a growing model, fully grown
    z = torch.randn(batch, latent_dim)
    g_rows, images = trace(gan.generator, z)
    d_rows, _ = trace(gan.discriminator, images)
    tables = []
    for title, rows, network in (("generator", g_rows, gan.generator), ("discriminator", d_rows, gan.discriminator)):
        table = Table(title=f"{title}: {count(network):,} parameters", title_justify="left")
        for column in ("module", "component", "output (C×H×W)", "parameters", "plugin"):
            table.add_column(column, justify="right" if column == "parameters" else "left")
        for row in rows:
            table.add_row(row.module, row.component, _shapes_text(row.shapes), f"{row.parameters:,}", row.plugin)
        tables.append(table)
    return tables
