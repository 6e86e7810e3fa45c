"""Plugin discovery: entry points of the ``ganforge`` group plus module paths the user named."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import GanforgeError
from .registry import Registry

ALLOWLIST_ENV = "GANFORGE_PLUGINS"
"""Comma-separated entry-point names to load; unset loads every installed plugin."""


def _entry_points(only: Iterable[str] | None = None) -> list[metadata.EntryPoint]:
    points = list(metadata.entry_points(group=hookspecs.PROJECT))
    allow = os.environ.get(ALLOWLIST_ENV)
    if only is None and allow is not None:
        only = [name.strip() for name in allow.split(",") if name.strip()]
    if only is not None:
        wanted = set(only)
        points = [ep for ep in points if ep.name in wanted]
    return sorted(points, key=lambda ep: ep.name)


def plugin_manager(modules: Iterable[str] = (), only: Iterable[str] | None = None) -> pluggy.PluginManager:
    """Load entry-point plugins (all, or the names in ``only`` / ``$GANFORGE_PLUGINS``) and ``modules``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    loaded: dict[str, metadata.EntryPoint] = {}
    for ep in _entry_points(only):
        if ep.name in loaded and loaded[ep.name].value == ep.value:
            continue  # one distribution seen twice on sys.path
        if ep.name in loaded:
            raise GanforgeError(
                f"two installed plugins use the entry-point name {ep.name!r}: {_origin(loaded[ep.name])} and "
                f"{_origin(ep)}; entry-point names in the 'ganforge' group must be unique (rename one)"
            )
        try:
            module = ep.load()
        except (Exception, SystemExit) as exc:  # a broken third-party plugin must name itself
            raise GanforgeError(f"plugin {ep.name!r} ({ep.value}) failed to import: {_describe(exc)}") from exc
        loaded[ep.name] = ep
        if not pm.is_registered(module):  # two entry points naming one module register it once
            pm.register(module, name=ep.name)
    for path in modules:
        if pm.has_plugin(path):
            continue
        try:
            module = importlib.import_module(path)
        except (Exception, SystemExit) as exc:  # ImportError, but also whatever the module raises while it runs
            raise GanforgeError(f"plugin module {path!r} cannot be imported: {_describe(exc)}") from exc
        if any(module is plugin for plugin in pm.get_plugins()):
            continue
        pm.register(module, name=path)
    _check_hooks(pm)
    return pm


def _check_hooks(pm: pluggy.PluginManager) -> None:
    """A misspelled hook (``@hookimpl def ganforge_registr``) would be ignored silently: name it instead."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        unknown = str(exc).split(" in plugin ")[0]  # "unknown hook 'ganforge_registr'"
        raise GanforgeError(f"plugin {name!r}: {unknown}; ganforge's one hook is ganforge_register") from exc


def _origin(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{ep.value} (from {dist.name} {dist.version})" if dist is not None else ep.value


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):  # sys.exit() at import must not end ganforge with the plugin's code
        return f"it called sys.exit({exc.code!r}) while being imported"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_registry(modules: Iterable[str] = (), only: Iterable[str] | None = None) -> Registry:
    """A registry filled by the installed plugins (all, or those in ``only``) plus ``modules`` (dotted paths)."""
    registry = Registry()
    pm = plugin_manager(modules, only)
    for impl in pm.hook.ganforge_register.get_hookimpls():
        impl.function(registry=registry.for_plugin(impl.plugin_name))
    return registry


def plugin_versions(registry: Registry) -> dict[str, str]:
    """Plugin name → distribution version (or 'local'), recorded in checkpoint metadata."""
    versions: dict[str, str] = {}
    by_name = {ep.name: ep for ep in metadata.entry_points(group=hookspecs.PROJECT)}
    for component in registry:
        ep = by_name.get(component.plugin)
        dist = getattr(ep, "dist", None) if ep else None
        versions[component.plugin] = dist.version if dist is not None else "local"
    return versions
