"""``ganforge plugins``: every registered component."""

from __future__ import annotations

import click
from rich.table import Table

from ..plugins import load_registry
from .group import main, stdout


@main.command()
@click.option("--plugin", "modules", multiple=True, metavar="MODULE", help="also load this plugin module")
@click.option("--markdown", is_flag=True, help="print the component reference as Markdown (docs/reference.md)")
@click.option("--bundled", is_flag=True, help="only ganforge's own plugins")
def plugins(modules, markdown, bundled) -> None:
    """List every registered component: kind, name, plugin, description, parameters."""
    from ..reference import bundled_registry
    from ..reference import markdown as reference

    registry = bundled_registry() if bundled else load_registry(modules)
    if markdown:
        click.echo(reference(registry), nl=False)
        return
    table = Table(title="ganforge components")
    for column in ("kind", "name", "plugin", "description", "parameters (default)"):
        table.add_column(column)
    for component in registry:
        params = ", ".join(
            f"{name}={field.get_default(call_default_factory=True)!r}"
            if not field.is_required()
            else f"{name} (required)"
            for name, field in component.params.model_fields.items()
        )
        table.add_row(component.kind, component.name, component.plugin, component.description, params)
    stdout().print(table)
