"""The component reference, generated from the registry (``ganforge plugins --markdown``, docs/reference.md).

Every kind, component, parameter, type, default and description comes from the registered
pydantic models, so the reference cannot drift from the code.
"""

from __future__ import annotations

from importlib import metadata

from pydantic.fields import FieldInfo

from .kinds import KINDS
from .plugins import load_registry
from .registry import Registry


def _type(field: FieldInfo) -> str:
    annotation = field.annotation
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    return text or str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    return f"`{field.get_default(call_default_factory=True)!r}`"


def markdown(registry: Registry) -> str:
    """One section per kind, one table of parameters per component."""
    lines = ["# Component reference", "",
             "Generated from the registry by `ganforge plugins --markdown`; every parameter below is",
             "validated when a config is loaded.", ""]
    for kind, summary in KINDS.items():
        components = [c for c in registry if c.kind == kind]
        if not components:
            continue
        lines += [f"## {kind}", "", f"{summary.capitalize()}.", ""]
        for component in components:
            lines += [f"### `{component.name}`", "", f"{component.description} *(plugin: `{component.plugin}`)*", ""]
            fields = component.params.model_fields
            if not fields:
                lines += ["No parameters.", ""]
                continue
            lines += ["| parameter | type | default | description |", "|---|---|---|---|"]
            for name, field in fields.items():
                description = (field.description or "").replace("|", "\\|")
                lines.append(f"| `{name}` | `{_type(field)}` | {_default(field)} | {description} |")
            lines.append("")
    return "\n".join(lines)


def bundled_registry() -> Registry:
    """A registry of ganforge's own plugins only (third-party installs left out), for the docs."""
    names = [ep.name for ep in metadata.distribution("ganforge").entry_points if ep.group == "ganforge"]
    return load_registry(only=names)
