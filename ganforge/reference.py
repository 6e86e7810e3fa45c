"""The component reference, generated from the registry (``ganforge plugins --markdown``, docs/reference.md).

Every kind, component, parameter, type, default and description comes from the registered
pydantic models, so the reference cannot drift from the code.
"""

from __future__ import annotations

from importlib import metadata

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .config import ClassifierConfig, ComponentRef, Config
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


def _config_rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    """One table row per config key, nested tables flattened to dotted keys."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        model_type = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        is_model = model_type is not None
        if model_type is not None and not issubclass(model_type, ComponentRef):
            rows += _config_rows(model_type, f"{key}.")
            continue
        text = str(annotation)
        if "ComponentRef" in text or is_model:
            kind = "list of components" if text.startswith("list") else "component"
        else:
            kind = _type(field)
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | `{kind.replace('|', 'or')}` | {_default(field)} | {description} |")
        if model_type is not None and model_type is not ComponentRef:  # a component with keys of the core's own
            core = {k: f for k, f in model_type.model_fields.items() if k not in ComponentRef.model_fields}
            for name, core_field in core.items():
                text = (core_field.description or "").replace("|", "\\|")
                rows.append(f"| `{key}.{name}` | `{_type(core_field)}` | {_default(core_field)} | {text} |")
    return rows


def markdown(registry: Registry) -> str:
    """The config file's keys, then one section per kind with a table of parameters per component."""
    lines = [
        "# Reference",
        "",
        "Generated from the config schema and the registry by `ganforge plugins --markdown`; every",
        "key and parameter below is validated when a config is loaded.",
        "",
        "## Config file keys",
        "",
        'A `component` is `"name"` or `{ name = "name", parameter = value, … }`; its parameters',
        "are listed under its kind below.",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
        *_config_rows(Config),
        "",
        "## Classifier config keys",
        "",
        "The file `ganforge classify train` and `ganforge tstr` read.",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
        *_config_rows(ClassifierConfig),
        "",
    ]
    for kind, spec in KINDS.items():
        components = [c for c in registry if c.kind == kind]
        if not components:
            continue
        lines += [f"## {kind}", "", f"{spec.description[:1].upper()}{spec.description[1:]}.", ""]
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
