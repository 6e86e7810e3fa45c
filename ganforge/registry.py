"""The component registry: every swappable piece of a GAN is registered here under (kind, name).

A component is a factory plus a pydantic model of its parameters. The config names a component
and gives its parameters; the registry validates them against the component's own model and calls
``factory(**params, **context)``, where ``context`` is what the assembly knows (channels, the layer
factory, ...). Plugins never write to the registry directly: their hook receives a
:class:`PluginRegistrar` that stamps every registration with the plugin's name, so duplicates can
name both plugins.

A plugin's mistakes surface where they are made, naming the plugin: at registration a factory
whose signature does not fit its kind's context (:data:`ganforge.kinds.KINDS`) or its parameter
model; at build an exception of the component's own (one line; ``--debug`` shows the chained
cause) or an object that is not what its kind must return.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import GanforgeError, RegistryError
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

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r} (plugin {self.plugin!r})"

    def build(self, params: Mapping[str, Any] | BaseModel | None = None, **context: Any) -> Any:
        """Instantiate: ``factory(**validated_params, **context)``; modules are tagged with ``self``.

        The component's own errors become one :class:`RegistryError` naming it and its parameters
        (ganforge's errors, OS errors and out-of-memory pass unchanged), and what it returns is
        checked against its kind.
        """
        values = dict(self.validate(params or {}))
        try:
            built = self.factory(**values, **context)
        except (GanforgeError, OSError, MemoryError):
            raise
        except Exception as exc:
            if type(exc).__name__ == "OutOfMemoryError":  # torch's (a RuntimeError): not the component's fault
                raise
            text = str(exc).strip().splitlines()
            detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
            raise RegistryError(f"{self.label} with {values}: {detail}") from exc
        expected = KINDS[self.kind].returns
        if expected is not None and not isinstance(built, expected):
            raise RegistryError(
                f"{self.label} returned {type(built).__name__}, but every {self.kind} must be a "
                f"{expected.__name__} (ganforge.kinds)"
            )
        return tag(built, self)

    def check_signature(self) -> None:
        """Refuse a factory that cannot be called as ``factory(**params, **context)``, naming the plugin."""
        try:
            parameters = inspect.signature(self.factory).parameters
        except (TypeError, ValueError):  # a builtin without a signature: nothing to check
            return
        context, fields = KINDS[self.kind].context, set(self.params.model_fields)
        call = f"factory(**{self.params.__name__}, {', '.join(context) or 'no context'})"
        clash = sorted(fields & set(context))
        if clash:
            raise RegistryError(
                f"{self.label}: parameter(s) {', '.join(clash)} are named like what ganforge passes every "
                f"{self.kind} ({', '.join(context)}); rename them"
            )
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return
        keyword = {name for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        required = {name for name in keyword if parameters[name].default is inspect.Parameter.empty}
        problems = [f"does not take {name}" for name in context if name not in keyword]
        problems += [f"does not take parameter {name}" for name in sorted(fields - keyword)]
        problems += [f"requires {name}, which nothing passes" for name in sorted(required - fields - set(context))]
        problems += [f"takes {name} positionally only" for name, p in parameters.items() if p.kind is p.POSITIONAL_ONLY]
        if problems:
            raise RegistryError(f"{self.label}: its factory {'; '.join(problems)}; ganforge calls {call}")


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
        component.check_signature()
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
        except KeyError as exc:
            raise RegistryError(self.unknown_message(kind, name)) from exc

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
