"""The component registry: every swappable piece of a GAN is registered here under (kind, name).

A component is a factory plus a pydantic model of its parameters. The config names a component
and gives its parameters; the registry validates them against the component's own model and calls
``factory(**params, **context)``, where ``context`` is what the assembly knows (channels, the layer
factory, ...). Plugins never write to the registry directly: their hook receives a
:class:`PluginRegistrar` that stamps every registration with the plugin's name, so duplicates can
name both plugins.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import RegistryError
from .kinds import KINDS


class NoParams(BaseModel):
    """Parameter model of a component that takes no parameters."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Component:
    """One registered component: what the config can name."""

    kind: str
    name: str
    factory: Callable[..., Any]
    params: type[BaseModel]
    description: str
    plugin: str

    def validate(self, params: Mapping[str, Any] | BaseModel) -> BaseModel:
        """Validate raw parameters against this component's model (raises pydantic's error)."""
        if isinstance(params, self.params):
            return params
        return self.params.model_validate(dict(params))

    def build(self, params: Mapping[str, Any] | BaseModel | None = None, **context: Any) -> Any:
        """Instantiate: ``factory(**validated_params, **context)``; modules are tagged with ``self``."""
        values = self.validate(params or {})
        return tag(self.factory(**dict(values), **context), self)


def tag(obj: Any, component: Component | None) -> Any:
    """Record which component (and so which plugin) supplied ``obj``; the architecture summary reads it."""
    if component is not None:
        try:
            obj.ganforge_component = component
        except AttributeError:  # builtins and slotted objects cannot carry the tag
            pass
    return obj


class Registry:
    """All components known to this process, keyed by (kind, name)."""

    def __init__(self) -> None:
        self._components: dict[tuple[str, str], Component] = {}

    def add(self, component: Component) -> None:
        if component.kind not in KINDS:
            raise RegistryError(
                f"plugin {component.plugin!r} registers {component.name!r} under unknown kind "
                f"{component.kind!r}; kinds are: {', '.join(KINDS)}"
            )
        key = (component.kind, component.name)
        if key in self._components:
            other = self._components[key]
            raise RegistryError(
                f"{component.kind} {component.name!r} is registered twice: by plugin "
                f"{other.plugin!r} and by plugin {component.plugin!r}"
            )
        self._components[key] = component

    def for_plugin(self, plugin: str) -> PluginRegistrar:
        """The object a plugin's ``ganforge_register`` hook receives."""
        return PluginRegistrar(self, plugin)

    def get(self, kind: str, name: str) -> Component:
        """Look a component up; an unknown name raises an error listing the closest names."""
        try:
            return self._components[(kind, name)]
        except KeyError:
            raise RegistryError(self.unknown_message(kind, name)) from None

    def unknown_message(self, kind: str, name: str) -> str:
        names = self.names(kind)
        if not names:
            return f"unknown {kind} {name!r}: no {kind} component is registered"
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"available: {', '.join(names)}"
        return f"unknown {kind} {name!r}; {hint}"

    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self._components if k == kind)

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._components.values(), key=lambda c: (c.kind, c.name)))

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._components

    def build(self, kind: str, name: str, params: Mapping[str, Any] | None = None, **context: Any) -> Any:
        return self.get(kind, name).build(params, **context)


@dataclass(frozen=True)
class PluginRegistrar:
    """A registry view bound to one plugin: ``register`` records who supplied each component."""

    registry: Registry
    plugin: str

    def register(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        params: type[BaseModel] = NoParams,
        description: str | None = None,
    ) -> None:
        """Register ``factory`` as ``kind``/``name``; ``description`` defaults to its docstring's first line."""
        if description is None:
            description = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        self.registry.add(Component(kind, name, factory, params, description, self.plugin))
